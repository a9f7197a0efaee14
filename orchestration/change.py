"""Change detection on a reward stream: when the network or the load shifts, exploration comes back.

A Page-Hinkley test (Page 1954; Hinkley 1971) on the rewards a learner receives: it accumulates
how far each reward falls below (or rises above) the running mean, less a tolerance `delta`, and
signals a change when that sum drifts more than `threshold` from its extreme. A drop in reward (a
bandwidth drop, users joining) and a rise (a server freed) both count: after either the learned
values are stale, so the learner raises exploration again (orchestration.learners).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PageHinkley:
    """Two-sided Page-Hinkley detector over a scalar stream."""

    delta: float = 0.05
    """tolerated drift per step, in reward units (rewards are -response/100 ms: 5 ms)."""
    threshold: float = 3.0
    """cumulative drift that signals a change (300 ms of summed excess)."""
    min_samples: int = 30
    """observations before any change is signalled, and after each one."""

    def __post_init__(self) -> None:
        if self.delta < 0 or self.threshold <= 0 or self.min_samples < 1:
            raise ValueError(f"need delta >= 0, threshold > 0, min_samples >= 1; got {self.delta}, "
                             f"{self.threshold}, {self.min_samples}")
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.mean = 0.0
        self._down = 0.0  # cumulative (mean - x - delta): grows when rewards fall
        self._down_min = 0.0
        self._up = 0.0    # cumulative (x - mean - delta): grows when rewards rise
        self._up_min = 0.0

    def update(self, x: float) -> bool:
        """Add one reward; True (and a reset) when the stream has changed."""
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self._down += self.mean - x - self.delta
        self._down_min = min(self._down_min, self._down)
        self._up += x - self.mean - self.delta
        self._up_min = min(self._up_min, self._up)
        if self.n < self.min_samples:
            return False
        if self._down - self._down_min > self.threshold or self._up - self._up_min > self.threshold:
            self.reset()
            return True
        return False
