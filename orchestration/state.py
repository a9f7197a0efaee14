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
- **Own uplink** (ours, for cellular links): what the device's radio reports about its own uplink:
  the mean rate over the last `LINK_WINDOW_S` (binned as the time this request's bytes would take
  at that rate) and whether nothing has got through lately (a stall). The wire-time estimate above
  only moves when the device offloads, and a device that fled a stall to its own core would never
  see the stall end; the radio's report is fresh at every request.
- **Age of the edge server's load report** (ours): the load is what the last answer reported; a
  device that stopped using the edge server keeps a stale report forever. A report older than
  `StateSpace.stale_after_s` is its own bin ("unknown"), so a learner can learn to try again.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from shared.names import Tier

EWMA_ALPHA = 0.3
"""Weight of the newest observation in the device's network estimates: a few requests to forget a drop."""
LINK_WINDOW_S = 1.0
"""How far back the device's uplink report averages: ten 100 ms trace samples, a few requests' worth."""


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
    """the current request's accuracy requirement in [0, 1] (each request carries its own)."""
    now_s: float = 0.0
    """the device's clock at the latest update (simulated time, or time.monotonic() live)."""
    load_at_s: dict[Tier, float | None] = field(default_factory=lambda: {Tier.EDGE: None, Tier.CLOUD: None})
    """when each remote tier's last load report arrived (None: never)."""
    uplink_mbit_s: float | None = None
    """mean rate of the device's own uplink over the last LINK_WINDOW_S, as its radio reports it
    (None: no report, e.g. a live device on a link that is not replayed)."""
    stalled_ms: float = 0.0
    """how long nothing has got through the device's uplink (shared.traces.STALL_MBIT_S); 0 when it flows."""

    def record(self, tier: Tier, *, response_ms: float, load: ServerLoad | None) -> None:
        """Fold one answered request from `tier` into the estimates (at `now_s`)."""
        if tier is Tier.END:
            return
        if load is not None:
            self.load[tier] = load
            self.load_at_s[tier] = self.now_s
        wire = max(0.0, response_ms - (load.server_ms if load is not None else 0.0))
        previous = self.net_ms[tier]
        self.net_ms[tier] = wire if previous == 0.0 else EWMA_ALPHA * wire + (1 - EWMA_ALPHA) * previous

    def load_age_s(self, tier: Tier) -> float:
        """Seconds since `tier` last reported its load (infinite if it never did)."""
        at = self.load_at_s.get(tier)
        return math.inf if at is None else max(0.0, self.now_s - at)

    def load_stale(self, tier: Tier, after_s: float) -> bool:
        """Whether `tier`'s last load report is older than `after_s` (one never received is not stale:
        it is the idle server a device assumes before its first answer)."""
        return self.load_at_s.get(tier) is not None and self.load_age_s(tier) > after_s

    def upload_ms(self, n_bytes: int) -> float | None:
        """How long `n_bytes` would take up the uplink at its reported recent rate (None: no report)."""
        if self.uplink_mbit_s is None:
            return None
        return n_bytes * 8 / (max(self.uplink_mbit_s, 1e-6) * 1e3)


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
    request_bytes: int = 264
    """bytes of one request on the wire: the uplink's rate is binned as the time these bytes would take."""
    upload_edges_ms: tuple[float, ...] = (10.0, 40.0, 160.0)
    """bin edges of the request's upload time at the uplink's recent rate (a 1.1 kB CIFAR-10 JPEG
    request: 1, 0.2 and 0.05 Mbit/s); one more bin when the device has no report."""
    stale_after_s: float = 2.0
    """an edge load report older than this is binned as unknown (its own bin past the wait edges)."""

    def __post_init__(self) -> None:
        if self.request_bytes < 1 or self.stale_after_s <= 0:
            raise ValueError(f"need request_bytes >= 1 and stale_after_s > 0, got {self.request_bytes}, "
                             f"{self.stale_after_s}")

    def encode(self, obs: Observation) -> tuple[int, ...]:
        """The discrete state of an observation: a hashable tuple indexing the Q-table."""
        stale = obs.load_stale(Tier.EDGE, self.stale_after_s)
        wait = len(self.wait_edges_ms) + 1 if stale else log_bin(obs.load[Tier.EDGE].expected_wait_ms,
                                                                  self.wait_edges_ms)
        upload = obs.upload_ms(self.request_bytes)
        return (log_bin(obs.net_ms[Tier.EDGE], self.net_edges_ms),
                log_bin(obs.net_ms[Tier.CLOUD], self.net_edges_ms),
                wait,
                log_bin(obs.local_busy_ms, self.busy_edges_ms),
                bisect.bisect_left(self.accuracy_levels, obs.accuracy_req),
                len(self.upload_edges_ms) + 1 if upload is None else log_bin(upload, self.upload_edges_ms),
                int(obs.stalled_ms > 0.0))

    def features(self, obs: Observation) -> np.ndarray:
        """Continuous context for the bandit: a bias, then times in units of 100 ms (so weights are O(1)).

        The upload time is capped at 1 s (10 units): in a stall it would otherwise read thousands of
        units and swamp the ridge regression; the stall flag says the rest.
        """
        upload = obs.upload_ms(self.request_bytes)
        stale = obs.load_stale(Tier.EDGE, self.stale_after_s)
        return np.array([1.0,
                         obs.net_ms[Tier.EDGE] / 100.0,
                         obs.net_ms[Tier.CLOUD] / 100.0,
                         0.0 if stale else obs.load[Tier.EDGE].expected_wait_ms / 100.0,
                         obs.load[Tier.CLOUD].expected_wait_ms / 100.0,
                         obs.local_busy_ms / 100.0,
                         0.0 if upload is None else min(upload, 1000.0) / 100.0,
                         float(obs.stalled_ms > 0.0),
                         float(stale)])


FEATURES = 9
"""Length of StateSpace.features."""
