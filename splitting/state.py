"""The planner's state, built the same way in the environment and on the live device (numpy only).

The paper's state is not public; this one is ours (docs/split_inference.md). What the device can
know before it acts:

- the last `history` throughput samples it measured on its own transfers, log10(Mbit/s), newest
  first (a sample is the request's and response's bytes over the time they took on the link: the
  round trip less the server's compute and the base RTT, as BBR estimates bottleneck bandwidth);
  slots with no sample yet hold `prior_mbit_s`;
- how old the newest sample is (s, capped): a device that stopped offloading knows its estimate is stale;
- the base RTT (ms): the smallest network time seen over the last `rtt_window` transfers, and never
  more than the link's configured RTT (the regime's, `initial_rtt_ms`). Every transfer carries a
  request of ~1.3 KB, so even the fastest one's network time includes its own time on the link: as the
  base alone it made that transfer's on-link time 0 and its throughput sample absurd (tens of Mbit/s
  on a 1 Mbit/s uplink), and every other sample too high; the environment, which knows the RTT,
  never saw such samples, and a live planner reading them chose as if the state were out of range;
- the request's deadline (ms);
- device load: recent device compute over the profiled compute (1 = as profiled, 2 = twice as slow);
- with `stall` (the default since the cellular regime; planners trained before it lack both):
  how long ago a transfer last completed (s, capped), and the share of the last `history` transfers
  the device abandoned at the deadline. On a link with stalls an abandoned offload leaves only an
  upper bound (its bytes over the time it waited, e.g. 0.2 Mbit/s), which the throughput history
  cannot tell from a slow transfer that did finish; these two can, and a stall in progress shows as
  a fresh transfer (small age) with no recent completion;
- with `hint_actions` (`edgecloud split train --greedy-hint`; off by default): greedy's choice for
  this request, one-hot over the actions (splitting/hint.py). The tracker does not compute it (it
  needs the cost model); the environment and the live device append it to `observe()`'s vector.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from splitting.regime import DEFAULT_PRIOR_MBIT_S

MBIT_FLOOR = 1e-3


@dataclass(frozen=True)
class StateConfig:
    """Shape and scaling of the observation vector."""

    history: int = 4
    """throughput samples kept"""
    prior_mbit_s: float = DEFAULT_PRIOR_MBIT_S
    """stands in for a sample not yet measured (PlannerSpec sets it from its regime's bandwidth prior)"""
    max_age_s: float = 10.0
    """ages are capped here (and scaled by it)"""
    rtt_window: int = 20
    """transfers over which the base RTT is the minimum"""
    rtt_scale_ms: float = 100.0
    """RTT is divided by this"""
    deadline_scale_ms: float = 100.0
    """deadline is divided by this"""
    load_alpha: float = 0.3
    """EWMA weight of a new load sample"""
    stall: bool = True
    """add the two stall features (time since a transfer last completed, share of abandoned transfers)"""
    hint_actions: int = 0
    """greedy's choice as a one-hot over this many actions, after the rest (0: none; training sets it to
    the action space's size)"""
    hint_acc_weight: float | None = None
    """greedy's accuracy weight in the hint (None: the planners' own reward weight)"""

    @property
    def dim(self) -> int:
        return self.history + 4 + (2 if self.stall else 0) + self.hint_actions

    @property
    def names(self) -> list[str]:
        """One name per observation entry, in order (docs/split_inference.md's state table)."""
        names = [f"log10_mbit_s[{i}]" for i in range(self.history)] + ["age", "base_rtt", "deadline", "load"]
        names += ["since_completed", "abandoned_share"] if self.stall else []
        return names + [f"greedy[{i}]" for i in range(self.hint_actions)]


class StateTracker:
    """What the device measured so far; `observe` turns it into the planner's input vector."""

    def __init__(self, cfg: StateConfig | None = None, *, initial_rtt_ms: float = 50.0) -> None:
        self.cfg = cfg or StateConfig()
        self.samples: deque[float] = deque(maxlen=self.cfg.history)  # Mbit/s, newest last
        self.sample_times: deque[float] = deque(maxlen=self.cfg.history)
        self.network_ms: deque[float] = deque(maxlen=self.cfg.rtt_window)
        self.abandoned: deque[bool] = deque(maxlen=self.cfg.history)  # per transfer, newest last
        self.completed_at: float | None = None  # when a transfer last completed
        self.initial_rtt_ms = initial_rtt_ms
        self.load = 1.0

    @property
    def rtt_ms(self) -> float:
        """Base RTT: the smallest network time in the window, capped by the configured RTT (module docstring)."""
        return min(self.initial_rtt_ms, *self.network_ms) if self.network_ms else self.initial_rtt_ms

    @property
    def last_mbit_s(self) -> float | None:
        return self.samples[-1] if self.samples else None

    def record_transfer(self, *, wire_bytes: int, network_ms: float, now_s: float, completed: bool = True) -> float:
        """One transfer's bytes and network time (round trip less server compute); returns its Mbit/s sample.

        `completed=False`: the device gave up waiting (the sample is an upper bound on the rate)."""
        self.network_ms.append(network_ms)
        on_link_ms = max(network_ms - self.rtt_ms, 0.2)  # never faster than 0.2 ms: a floor for timer noise
        mbit_s = max(8.0 * wire_bytes / (on_link_ms * 1000.0), MBIT_FLOOR)
        self.record_throughput(mbit_s, now_s=now_s, completed=completed)
        return mbit_s

    def record_throughput(self, mbit_s: float, *, now_s: float, completed: bool = True) -> None:
        self.samples.append(max(float(mbit_s), MBIT_FLOOR))
        self.sample_times.append(now_s)
        self.abandoned.append(not completed)
        if completed:
            self.completed_at = now_s

    def record_load(self, measured_ms: float, profiled_ms: float) -> None:
        """Device compute took `measured_ms` where the profile says `profiled_ms`."""
        if profiled_ms > 0 and math.isfinite(measured_ms):
            a = self.cfg.load_alpha
            self.load = (1 - a) * self.load + a * max(measured_ms / profiled_ms, 0.1)

    def observe(self, *, now_s: float, deadline_ms: float) -> np.ndarray:
        """(dim,) float32: log10 throughput samples (newest first), age, base RTT, deadline, load
        [, time since a transfer completed, share of abandoned transfers] (`StateConfig.names`), without
        the greedy hint, which splitting/hint.py appends."""
        c = self.cfg
        newest_first = list(reversed(self.samples))
        padded = newest_first + [c.prior_mbit_s] * (c.history - len(newest_first))
        # max(0, .): a measurement that lands after the next request's start (latency > period) is not in the future
        age = min(max(now_s - self.sample_times[-1], 0.0), c.max_age_s) if self.sample_times else c.max_age_s
        obs = [math.log10(v) for v in padded]
        obs += [age / c.max_age_s, self.rtt_ms / c.rtt_scale_ms, deadline_ms / c.deadline_scale_ms, self.load]
        if c.stall:
            since = c.max_age_s if self.completed_at is None else min(max(now_s - self.completed_at, 0.0), c.max_age_s)
            obs += [since / c.max_age_s, float(np.mean(self.abandoned)) if self.abandoned else 0.0]
        return np.asarray(obs, dtype=np.float32)
