"""A lower bound on every request's response time, for any policy: how much orchestration could gain at most.

Per request, the least response any policy could get for it in the simulator: the best feasible
action with the device and both servers idle. For a remote action that is

    up(t) + compute  ->  the earliest the server can finish, f = t + up(t) + compute(tier, variant)
    then the answer's way down, started no earlier than f:  min over s >= f of  s + down(s)

and the response is that minus t. Why each part can only be beaten by nothing:

- the request leaves at its arrival t (run() sends it then), so the up leg is timed at t;
- waiting in a queue, sharing a batch (a batch of b costs at least one sample's time) and the
  connection's first set-up only add to `f`;
- the down leg is sent when the server finishes, never before `f`. On a trace with stalls, a
  later start can finish sooner than an earlier one only across a phase change of the access rate
  (within a phase a link is first-in first-out: bytes sent later never arrive earlier), so the
  minimum is over `f` and the phase starts after it. (The first version timed the down leg at the
  request's *arrival*: on a trace with 0 Mbit/s stretches a request whose arrival fell in a stall
  got a "bound" of the whole stall while its answer, sent seconds later, crossed a working link: 67
  of 208 all-edge requests finished below it, and its mean was above the realised one.)
- a fallback answers with a variant meeting the requirement on the device, after waiting: at least
  that variant's device time, which the minimum over feasible actions already includes.

Compute noise is drawn after the choice with mean 1, so with `service_cv` 0 no request is ever
below its entry; with noise a lucky draw can dip below by the noise, and the mean holds up to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from shared.names import Tier

if TYPE_CHECKING:
    from orchestration.links import UserLink
    from orchestration.simulator import Simulator


def _down_end_s(sim: Simulator, link: UserLink, tier: Tier, finish_s: float) -> float:
    """The earliest the answer can reach the device when the server finishes no earlier than finish_s."""
    n_bytes = sim.network.response_bytes
    starts = [finish_s, *(p.start_s for p in sim.scenario.phases if p.start_s > finish_s)]
    return min(s + link.down_ms(tier, n_bytes, s) / 1000.0 for s in starts)


def idle_response_ms(sim: Simulator, link: UserLink, action: tuple[Tier, str], t: float) -> float:
    """The least response of `action` for a request sent at t: every queue empty, every device idle."""
    tier, variant = action
    profile = sim.profiles.variants[variant]
    if tier is Tier.END:
        return profile.compute_ms(Tier.END) + sim.network.end_overhead_ms
    finish = t + (link.up_ms(tier, sim.profiles.request_bytes, t) + profile.compute_ms(tier)) / 1000.0
    return (_down_end_s(sim, link, tier, finish) - t) * 1000.0 + sim.network.overhead_ms(tier)


def lower_bound_ms(sim: Simulator) -> np.ndarray:
    """Per request of `sim`'s scenario, in arrival order (run()'s requests exactly), its lower bound (ms)."""
    links, requests = sim.requests()
    return np.array([min(idle_response_ms(sim, links[u], a, t) for a in sim.actions(req))
                     for t, u, req in requests], dtype=float)
