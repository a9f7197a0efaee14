"""How sure the offloader-against-filters verdict is: a paired bootstrap over the test split.

"The shipped offloader needs no more offload than the best confidence filter to reach the teacher"
is decided at the very top of each ranking: on MNIST the two rates are 51 and 57 samples of 10,000,
and one sample either way moves the first point where cooperation reaches the teacher. Resampling
the test split with replacement (the same draw for every score, so the comparison is paired) shows
how often the verdict would hold on another test set from the same distribution.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from offloading.comparison import Curve, rate_to_reach
from offloading.operating_point import accuracy_offload_curve


@dataclass(frozen=True)
class ReachSpread:
    """One score's offload rate to reach the teacher over bootstrap draws of the test split."""

    name: str
    median: float
    low: float
    high: float
    """the central `level` interval of the rate, low to high"""


@dataclass(frozen=True)
class ReachBootstrap:
    """The shipped offloader's rate to reach the teacher against the best rival's, draw by draw."""

    shipped: str
    rivals: tuple[str, ...]
    draws: int
    level: float
    spreads: tuple[ReachSpread, ...]
    """the shipped score first, then each rival"""
    share_no_more: float
    """share of draws in which the shipped score reaches the teacher at no more offload than the
    best rival in that draw (the issue's criterion, re-asked on each draw)"""
    share_no_more_each: tuple[float, ...]
    """the same against each rival alone, in the order of `rivals`"""
    diff_median: float
    diff_low: float
    diff_high: float
    """shipped rate minus the best rival's rate in the same draw (positive: the shipped needs more)"""
    at_rate: float | None = None
    """the shipped offloader's test offload rate at its operating point, where the curves are compared"""
    accuracy_at_rate: tuple[float, ...] = ()
    """each score's curve at `at_rate` on the whole test split, in the order of `spreads`"""
    share_on_or_above: float | None = None
    """share of draws in which the shipped curve at `at_rate` is on or above every rival's curve there"""


def rate_to_reach_teacher(scores: np.ndarray, student_ok: np.ndarray, teacher_ok: np.ndarray) -> float:
    """The smallest achievable offload rate at which cooperation reaches the teacher's accuracy.

    Always defined: offloading everything gives the teacher's accuracy exactly.
    """
    reached = rate_to_reach(Curve(*accuracy_offload_curve(scores, student_ok, teacher_ok)), float(np.mean(teacher_ok)))
    assert reached is not None  # offloading everything is the teacher
    return reached


def accuracy_at(scores: np.ndarray, student_ok: np.ndarray, teacher_ok: np.ndarray, rate: float) -> float:
    """Cooperative accuracy on the curve at the largest achievable offload rate not above `rate`."""
    rates, accs = accuracy_offload_curve(scores, student_ok, teacher_ok)
    return float(accs[np.searchsorted(rates, rate + 1e-12, side="right") - 1])


def bootstrap_reach(
    scores: Mapping[str, np.ndarray],
    student_ok: np.ndarray,
    teacher_ok: np.ndarray,
    *,
    shipped: str,
    draws: int = 500,
    level: float = 0.9,
    seed: int = 0,
    at_rate: float | None = None,
) -> ReachBootstrap:
    """Paired bootstrap of `rate_to_reach_teacher` for `shipped` against every other score in `scores`.

    Each draw resamples the test indices with replacement once and scores every filter on that
    same draw; a sample drawn twice counts twice, and its copies tie, so they go to the cloud
    together, as one threshold would send them. With `at_rate` (the shipped operating point's
    offload rate), each draw also compares the curves' accuracies there (`accuracy_at`).
    """
    if shipped not in scores:
        raise ValueError(f"shipped score {shipped!r} is not among the scores {sorted(scores)}")
    rivals = tuple(name for name in scores if name != shipped)
    if not rivals:
        raise ValueError("bootstrap_reach needs at least one rival score besides the shipped one")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if at_rate is not None and not 0.0 <= at_rate <= 1.0:
        raise ValueError(f"at_rate must be in [0, 1], got {at_rate}")
    s_ok, t_ok = np.asarray(student_ok, dtype=bool), np.asarray(teacher_ok, dtype=bool)
    n = len(s_ok)
    for name, values in scores.items():
        if np.shape(values) != (n,):
            raise ValueError(f"scores[{name!r}] has shape {np.shape(values)}, expected ({n},)")
    names = (shipped, *rivals)
    by_name = [np.asarray(scores[name], dtype=np.float64) for name in names]
    rng = np.random.default_rng(seed)
    rates = np.empty((draws, len(names)))  # (draws, scores)
    accs = np.empty((draws, len(names)))
    for d in range(draws):
        idx = rng.integers(0, n, n)
        s_draw, t_draw = s_ok[idx], t_ok[idx]
        rates[d] = [rate_to_reach_teacher(v[idx], s_draw, t_draw) for v in by_name]
        if at_rate is not None:
            accs[d] = [accuracy_at(v[idx], s_draw, t_draw, at_rate) for v in by_name]
    tail = 100 * (1 - level) / 2
    spreads = tuple(ReachSpread(name, float(np.median(rates[:, j])), float(np.percentile(rates[:, j], tail)),
                                float(np.percentile(rates[:, j], 100 - tail))) for j, name in enumerate(names))
    diff = rates[:, 0] - rates[:, 1:].min(axis=1)
    return ReachBootstrap(shipped=shipped, rivals=rivals, draws=draws, level=level, spreads=spreads,
                          share_no_more=float(np.mean(diff <= 1e-12)),
                          share_no_more_each=tuple(float(np.mean(rates[:, 0] <= rates[:, j] + 1e-12))
                                                   for j in range(1, len(names))),
                          diff_median=float(np.median(diff)),
                          diff_low=float(np.percentile(diff, tail)), diff_high=float(np.percentile(diff, 100 - tail)),
                          at_rate=at_rate,
                          accuracy_at_rate=() if at_rate is None else tuple(
                              accuracy_at(v, s_ok, t_ok, at_rate) for v in by_name),
                          share_on_or_above=None if at_rate is None else
                          float(np.mean(accs[:, 0] >= accs[:, 1:].max(axis=1) - 1e-12)))
