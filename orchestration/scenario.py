"""What the simulated users do: who is present when, when they send, what each request requires (numpy only).

Shahhosseini et al. orchestrate requests that each carry an accuracy requirement, from users that
come and go. Ours:

- **Presence**: `Phase`s say how many users are active from when (users 0..n-1; the rest are
  away), and how much of its rate each access link keeps. `steady`, `change` (half the users,
  all join at 1/3, the bandwidth drops at 2/3) and `churn` (users join and leave in steps).
- **Arrivals**: Poisson, or bursty (on/off with exponential periods at the same mean rate).
- **Requirements** (`RequirementMix`): each user runs an application whose requirement is one of a
  few levels; at exponential times (mean `switch_s`) the user switches application and draws its
  level again from the mix's weights: a Markov switch per user, so the mix a learner sees drifts.
- **Deadline**: every request's answer is due `deadline_ms` after it is sent; the device gives up an
  offload when only its own fallback is left (orchestration/simulator.py).

`arrival_times` and `requirement_schedules` draw from their own random streams of the scenario's
seed, so the simulator, the bound and the live run see the very same requests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Self

import numpy as np
from pydantic import ConfigDict, model_validator

from shared.run_config import ConfigModel

Arrivals = Literal["poisson", "bursty"]
ARRIVALS: tuple[str, ...] = ("poisson", "bursty")
REQUIREMENT_STREAM = 7
"""Second word of the requirement draws' seed: their own stream, independent of arrivals and noise."""


@dataclass(frozen=True)
class Phase:
    """From `start_s` on: this many users are active, and the access rate is scaled by this much."""

    start_s: float
    users: int
    bandwidth_scale: float = 1.0


class RequirementMix(ConfigModel):
    """The accuracy requirements requests carry: a few levels, per user a Markov switch between them."""

    model_config = ConfigDict(frozen=True)

    levels: tuple[float, ...] = (0.0,)
    """accuracy requirements in [0, 1], e.g. a low, a middle and a high one."""
    weights: tuple[float, ...] | None = None
    """how often an application needs each level (normalised; None: equally often)."""
    switch_s: float = 20.0
    """mean time a user keeps an application (and its level) before drawing again (inf: never)."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.levels or any(not 0.0 <= level <= 1.0 for level in self.levels):
            raise ValueError(f"requirement levels must be in [0, 1], got {self.levels}")
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"requirement levels must differ, got {self.levels}")
        if self.weights is not None and (len(self.weights) != len(self.levels) or min(self.weights) < 0
                                         or sum(self.weights) <= 0):
            raise ValueError(f"need one weight >= 0 per level (not all 0), got {self.weights} for {self.levels}")
        if not self.switch_s > 0:
            raise ValueError(f"switch_s must be > 0, got {self.switch_s}")
        return self

    @property
    def probabilities(self) -> np.ndarray:
        w = np.ones(len(self.levels)) if self.weights is None else np.asarray(self.weights, dtype=float)
        return w / w.sum()


@dataclass(frozen=True)
class RequirementSchedule:
    """One user's requirement over time: `levels[i]` from `times_s[i]` (times_s[0] = 0)."""

    times_s: np.ndarray  # (K,) increasing, starting at 0
    levels: np.ndarray   # (K,)

    def at(self, t: float) -> float:
        return float(self.levels[int(np.searchsorted(self.times_s, t, side="right")) - 1])


@dataclass
class Scenario:
    """One simulated run: who sends what, when, and what changes."""

    users: int = 8
    """devices (the most active at once)."""
    duration_s: float = 60.0
    """arrivals stop here; requests in flight are still answered."""
    rate_per_user: float = 4.0
    """mean requests per second per active device."""
    arrivals: Arrivals = "poisson"
    """poisson, or bursty: on/off (exponential periods, mean `burst_s`) at the same mean rate."""
    burst_s: float = 2.0
    """mean length of a bursty device's on and off periods."""
    burst_duty: float = 0.25
    """fraction of time a bursty device is on (its rate then is rate_per_user / duty)."""
    accuracy_req: float = 0.0
    """every request's accuracy requirement in [0, 1] when `requirements` is None."""
    requirements: RequirementMix | None = None
    """levels that requests require, switching per user over time (None: every request `accuracy_req`)."""
    deadline_ms: float | None = 1000.0
    """each request's deadline (None: none). 1000 ms is the live agent's default offload budget
    (`--orchestrator-timeout-ms`), and an interactive answer is worth little after a second."""
    phases: list[Phase] = field(default_factory=list)
    """changes over time; empty: all users active at full bandwidth throughout."""
    max_batch: int = 8
    """largest batch a server computes at once."""
    service_cv: float = 0.1
    """coefficient of variation of compute times around the profile (lognormal)."""
    seed: int = 0
    """seeds arrivals, trace offsets, requirements, service noise and the samples drawn."""

    def __post_init__(self) -> None:
        if self.users < 1 or self.duration_s <= 0 or self.rate_per_user <= 0:
            raise ValueError(f"need users >= 1, duration_s > 0, rate_per_user > 0; got {self.users}, "
                             f"{self.duration_s}, {self.rate_per_user}")
        if self.arrivals not in ARRIVALS:
            raise ValueError(f"arrivals must be one of {ARRIVALS}, got {self.arrivals!r}")
        if not 0.0 < self.burst_duty <= 1.0 or self.burst_s <= 0:
            raise ValueError(f"need burst_duty in (0, 1] and burst_s > 0, got {self.burst_duty}, {self.burst_s}")
        if not 0.0 <= self.accuracy_req <= 1.0:
            raise ValueError(f"accuracy_req must be in [0, 1], got {self.accuracy_req}")
        if self.deadline_ms is not None and not self.deadline_ms > 0:
            raise ValueError(f"deadline_ms must be > 0 (or None), got {self.deadline_ms}")
        for phase in self.phases:
            if not 0 <= phase.users <= self.users or phase.bandwidth_scale <= 0:
                raise ValueError(f"phase {phase}: users must be in [0, {self.users}], bandwidth_scale > 0")

    @property
    def mix(self) -> RequirementMix:
        """The requirement mix in force: `requirements`, or the one level `accuracy_req`."""
        return self.requirements if self.requirements is not None else RequirementMix(levels=(self.accuracy_req,))

    def phase_at(self, t: float) -> Phase:
        current = Phase(start_s=0.0, users=self.users)
        for phase in sorted(self.phases, key=lambda p: p.start_s):
            if phase.start_s <= t:
                current = phase
        return current

    @property
    def change_times(self) -> list[float]:
        return sorted(p.start_s for p in self.phases if p.start_s > 0)


def steady(users: int, *, duration_s: float = 60.0, **kwargs: object) -> Scenario:
    """All users, full bandwidth, throughout."""
    return Scenario(users=users, duration_s=duration_s, **kwargs)  # type: ignore[arg-type]


def changing(users: int, *, duration_s: float = 90.0, drop: float = 0.1, **kwargs: object) -> Scenario:
    """Conditions change mid-run: half the users, then all join (1/3), then the bandwidth drops (2/3)."""
    third = duration_s / 3
    phases = [Phase(0.0, max(1, users // 2)), Phase(third, users), Phase(2 * third, users, bandwidth_scale=drop)]
    return Scenario(users=users, duration_s=duration_s, phases=phases, **kwargs)  # type: ignore[arg-type]


def churn(users: int, *, duration_s: float = 90.0, **kwargs: object) -> Scenario:
    """Users join and leave: half, all (1/4), a quarter (1/2: most leave), all again (3/4)."""
    q = duration_s / 4
    phases = [Phase(0.0, max(1, users // 2)), Phase(q, users), Phase(2 * q, max(1, users // 4)), Phase(3 * q, users)]
    return Scenario(users=users, duration_s=duration_s, phases=phases, **kwargs)  # type: ignore[arg-type]


SCENARIOS: dict[str, Callable[..., Scenario]] = {"steady": steady, "change": changing, "churn": churn}


def arrival_times(sc: Scenario, rng: np.random.Generator) -> list[np.ndarray]:
    """Per device, its request times over the whole run (inactive ones are dropped as they come).

    The live run draws its users' times here too, so simulated and live users send alike.
    """
    out = []
    for _ in range(sc.users):
        if sc.arrivals == "poisson":
            n = rng.poisson(sc.rate_per_user * sc.duration_s * 1.2) + 10
            times = np.cumsum(rng.exponential(1.0 / sc.rate_per_user, n))
        else:
            times_list: list[float] = []
            t, on = 0.0, bool(rng.random() < sc.burst_duty)
            on_rate = sc.rate_per_user / sc.burst_duty
            off_mean = sc.burst_s * (1 - sc.burst_duty) / sc.burst_duty if sc.burst_duty < 1 else 0.0
            while t < sc.duration_s:
                span = rng.exponential(sc.burst_s if on else max(off_mean, 1e-9))
                if on:
                    k = rng.poisson(on_rate * span)
                    times_list.extend(sorted(t + rng.uniform(0, span, k)))
                t += span
                on = not on
            times = np.asarray(times_list)
        out.append(times[times < sc.duration_s])
    return out


def requirement_schedules(sc: Scenario) -> list[RequirementSchedule]:
    """Per device, the accuracy requirement of its requests over time (its own random stream)."""
    mix = sc.mix
    rng = np.random.default_rng([sc.seed, REQUIREMENT_STREAM])
    p = mix.probabilities
    levels = np.asarray(mix.levels, dtype=float)
    out = []
    for _ in range(sc.users):
        times = [0.0]
        if math.isfinite(mix.switch_s) and len(levels) > 1:
            while times[-1] < sc.duration_s:
                times.append(times[-1] + float(rng.exponential(mix.switch_s)))
            times.pop()
        out.append(RequirementSchedule(times_s=np.asarray(times), levels=levels[rng.choice(len(levels), len(times),
                                                                                            p=p)]))
    return out


def resolve_levels(values: Sequence[float], teacher_accuracy: float) -> tuple[float, ...]:
    """Requirement levels as fractions: a negative value is an offset from the teacher's accuracy
    (-0.009: 0.9 points below it), a value above 1 a percentage (92.5), anything else a fraction."""
    out = []
    for value in values:
        level = teacher_accuracy + value if value < 0 else value / 100.0 if value > 1.0 else value
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"requirement level {value:g} is {level:g}, outside [0, 1] "
                             f"(the teacher's accuracy is {teacher_accuracy:g})")
        out.append(round(level, 6))
    return tuple(out)
