"""A circuit breaker for the cloud link: stop calling a dead cloud for a while, then probe it.

closed --(N consecutive failures)--> open --(reset_s elapsed)--> half-open (one probe in flight)
half-open --(probe succeeds)--> closed;  half-open --(probe fails)--> open again.

While open, offloads fail at once with `circuit_open` and make no network call, so a dead cloud
costs the edge nothing but the fallback. Single-threaded use from one asyncio loop; the clock is
injectable so tests need not sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, kw_only=True)
class BreakerPolicy:
    """When a client's breaker opens and for how long; checked when its CircuitBreaker is built."""

    failures: int
    """Consecutive failed calls that open the breaker (>= 1)."""
    reset_s: float
    """How long an open breaker refuses before it lets one probe through (> 0)."""


class CircuitBreaker:
    def __init__(self, *, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1:
            raise ValueError(f"breaker failures must be >= 1, got {failures}")
        if not reset_s > 0:
            raise ValueError(f"breaker reset_s must be > 0, got {reset_s}")
        self.failures_to_open = failures
        self.reset_s = reset_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @classmethod
    def from_policy(cls, policy: BreakerPolicy, *, clock: Callable[[], float] = time.monotonic) -> CircuitBreaker:
        return cls(failures=policy.failures, reset_s=policy.reset_s, clock=clock)

    @property
    def state(self) -> BreakerState:
        """The state now; an open breaker whose reset time has passed reads as half-open."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_s:
            return BreakerState.HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """May a request go out now? In half-open, only one (the probe) until it reports back."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self._probe_in_flight:
            return False
        self._state = BreakerState.HALF_OPEN
        self._probe_in_flight = True
        return True

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._consecutive += 1
        if self._state is BreakerState.HALF_OPEN or self._consecutive >= self.failures_to_open:
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()
        self._probe_in_flight = False

    def abandon(self) -> None:
        """A request that was allowed will never report (it was cancelled): free the probe slot."""
        self._probe_in_flight = False

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state}, consecutive_failures={self._consecutive})"
