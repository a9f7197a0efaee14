"""Change detection on a reward stream: when the network or the load shifts, exploration comes back.

A Page-Hinkley test (Page 1954; Hinkley 1971) on the rewards a learner receives: it accumulates
how far each reward falls below (or rises above) the running mean, in standard deviations, less a
tolerance `delta`, and signals a change when that sum drifts more than `threshold` from its
extreme. A drop in reward (a bandwidth drop, users joining) and a rise (a server freed) both count:
after either the learned values are stale, so the learner raises exploration again
(orchestration.learners).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PageHinkley:
    """Two-sided Page-Hinkley detector over a scalar stream, in units of the stream's own spread.

    Each reward is standardised by the running mean and standard deviation since the last reset
    (ours): response times on a slow device swing by a hundred milliseconds from request to
    request, on a fast one by a few, so a tolerance fixed in milliseconds either fires on noise or
    misses a real step.
    """

    delta: float = 0.25
    """tolerated drift per step, in standard deviations of the stream."""
    threshold: float = 25.0
    """cumulative standardised drift that signals a change."""
    min_samples: int = 30
    """observations before any change is signalled, and after each one."""
    min_std: float = 1e-3
    """floor of the standard deviation (reward units: 0.1 ms), so a constant stream does not divide by 0."""

    def __post_init__(self) -> None:
        if self.delta < 0 or self.threshold <= 0 or self.min_samples < 1 or self.min_std <= 0:
            raise ValueError(f"need delta >= 0, threshold > 0, min_samples >= 1, min_std > 0; got {self.delta}, "
                             f"{self.threshold}, {self.min_samples}, {self.min_std}")
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.mean = 0.0
        self._m2 = 0.0    # sum of squared deviations (Welford)
        self._down = 0.0  # cumulative (mean - x) / std - delta: grows when rewards fall
        self._down_min = 0.0
        self._up = 0.0    # cumulative (x - mean) / std - delta: grows when rewards rise
        self._up_min = 0.0

    def update(self, x: float) -> bool:
        """Add one reward; True (and a reset) when the stream has changed."""
        self.n += 1
        previous = self.mean
        self.mean += (x - self.mean) / self.n
        self._m2 += (x - previous) * (x - self.mean)
        if self.n < 2:
            return False
        z = (x - self.mean) / max(self.min_std, (self._m2 / (self.n - 1)) ** 0.5)
        self._down += -z - self.delta
        self._down_min = min(self._down_min, self._down)
        self._up += z - self.delta
        self._up_min = min(self._up_min, self._up)
        if self.n < self.min_samples:
            return False
        if self._down - self._down_min > self.threshold or self._up - self._up_min > self.threshold:
            self.reset()
            return True
        return False
