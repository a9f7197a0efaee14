"""What an end device knows when it picks (tier, variant), and how the tabular learner discretises it.

Shahhosseini et al. describe the state as the network conditions to each tier, the edge server's
load and the request's accuracy requirement; their exact discretisation is not public. Ours
(docs/orchestration.md):

- **Network** (the paper's): one estimate per remote tier of the time a request spends on the
  wire, learnt from this device's own responses: response time minus the time the server says the
  request spent inside it (`X-Edgecloud-Load`'s `server_ms`), an EWMA. Discretised on a log scale.
- **Edge server load** (the paper's): the queue depth and recent per-sample service time the edge
  server last reported; their product is the wait a new request should expect. Log-scale bins.
- **Accuracy requirement** (the paper's): not a state feature here but an action mask: only the
  variants meeting it are actions, and the reward penalises a miss. The mask is a function of the
  requirement, so the Q-table keeps one row set per requirement level (ours).
- **Local backlog** (ours): whether this device is still computing an earlier request, since a busy
  device makes "run it here" slower without any network sign.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from shared.names import Tier

EWMA_ALPHA = 0.3
"""Weight of the newest observation in the device's network estimates: a few requests to forget a drop."""


@dataclass(frozen=True)
class ServerLoad:
    """One server's load as its last response reported it (`X-Edgecloud-Load`)."""

    queue_depth: int = 0
    """samples waiting for compute at the server when it answered."""
    service_ms: float = 0.0
    """the server's moving average of compute time per sample for that model."""
    server_ms: float = 0.0
    """time this request spent in the server (arrival to answer)."""

    @property
    def expected_wait_ms(self) -> float:
        """The wait a new sample should expect behind the reported queue."""
        return self.queue_depth * self.service_ms


@dataclass
class Observation:
    """The device's latest measurements, updated from each response (no oracle knowledge)."""

    net_ms: dict[Tier, float] = field(default_factory=lambda: {Tier.EDGE: 0.0, Tier.CLOUD: 0.0})
    """EWMA of round-trip wire time (response minus server time) per remote tier; 0 before the first."""
    load: dict[Tier, ServerLoad] = field(default_factory=lambda: {Tier.EDGE: ServerLoad(), Tier.CLOUD: ServerLoad()})
    """last load each remote tier reported."""
    local_busy_ms: float = 0.0
    """how long this device's own queue still needs before it can start a new request."""
    accuracy_req: float = 0.0
    """the current request's accuracy requirement in [0, 1]."""

    def record(self, tier: Tier, *, response_ms: float, load: ServerLoad | None) -> None:
        """Fold one answered request from `tier` into the estimates."""
        if tier is Tier.END:
            return
        if load is not None:
            self.load[tier] = load
        wire = max(0.0, response_ms - (load.server_ms if load is not None else 0.0))
        previous = self.net_ms[tier]
        self.net_ms[tier] = wire if previous == 0.0 else EWMA_ALPHA * wire + (1 - EWMA_ALPHA) * previous


def log_bin(value_ms: float, edges_ms: tuple[float, ...]) -> int:
    """Index of the first edge above `value_ms` (len(edges) if none): bins on a log-like scale."""
    if not math.isfinite(value_ms):
        raise ValueError(f"cannot bin a non-finite time {value_ms}")
    return bisect.bisect_right(edges_ms, value_ms)


@dataclass(frozen=True)
class StateSpace:
    """The discretisation of Observation for the tabular learner (ours; see the module docstring)."""

    net_edges_ms: tuple[float, ...] = (15.0, 40.0, 100.0, 250.0, 600.0)
    """bin edges of the wire time to the edge server and to the cloud."""
    wait_edges_ms: tuple[float, ...] = (2.0, 10.0, 40.0)
    """bin edges of the edge server's expected queue wait (depth x service time)."""
    busy_edges_ms: tuple[float, ...] = (1.0, 50.0, 150.0)
    """bin edges of this device's own backlog: idle or busy."""
    accuracy_levels: tuple[float, ...] = ()
    """accuracy requirements that change the set of feasible variants (from the profile)."""

    def encode(self, obs: Observation) -> tuple[int, ...]:
        """The discrete state of an observation: a hashable tuple indexing the Q-table."""
        return (log_bin(obs.net_ms[Tier.EDGE], self.net_edges_ms),
                log_bin(obs.net_ms[Tier.CLOUD], self.net_edges_ms),
                log_bin(obs.load[Tier.EDGE].expected_wait_ms, self.wait_edges_ms),
                log_bin(obs.local_busy_ms, self.busy_edges_ms),
                bisect.bisect_left(self.accuracy_levels, obs.accuracy_req))

    def features(self, obs: Observation) -> np.ndarray:
        """Continuous context for the bandit: a bias, then times in units of 100 ms (so weights are O(1))."""
        return np.array([1.0,
                         obs.net_ms[Tier.EDGE] / 100.0,
                         obs.net_ms[Tier.CLOUD] / 100.0,
                         obs.load[Tier.EDGE].expected_wait_ms / 100.0,
                         obs.load[Tier.CLOUD].expected_wait_ms / 100.0,
                         obs.local_busy_ms / 100.0])


FEATURES = 6
"""Length of StateSpace.features."""
