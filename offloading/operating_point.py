"""Choosing where a filter cuts, on the validation split (Zhang et al. §VI-C, Fig. 5).

A sample that is offloaded takes the teacher's answer, otherwise the student's, so the
cooperative accuracy at a threshold is mean(where(score > t, teacher_correct, student_correct)).
Sweeping t from high to low traces an accuracy-against-offload-rate curve; the user picks a point
on it by an offload budget (largest fraction offloaded) or by a target accuracy.

The SL offloader also has a cut of its own: its decision boundary (decision_function 0, or
probability 0.5). That is the paper's rule (§V: the SVM labels a sample complex and it goes to the
cloud), and on MNIST it generalises better than the budget rule's argmax: validation accuracy is
flat over a wide range of rates, so the lowest-rate maximum can sit on a one-sample ridge (1.4%
offload on val, cooperation below the teacher on test), while the boundary offloads 4.8% and
matches the teacher. The budget still caps the boundary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from shared.bundle import OperatingPoint

log = logging.getLogger(__name__)


def _check_correct(name: str, values: np.ndarray, n: int) -> np.ndarray:
    v = np.asarray(values)
    if v.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {v.shape}")
    if v.dtype != np.bool_:
        raise ValueError(f"{name} must be a bool mask, got dtype {v.dtype}")
    return v


def cooperative_accuracy(offload: np.ndarray, student_correct: np.ndarray, teacher_correct: np.ndarray) -> float:
    """Accuracy when offloaded samples take the teacher's answer and the rest the student's."""
    off = np.asarray(offload)
    if off.ndim != 1 or len(off) == 0:
        raise ValueError(f"offload must be a non-empty 1-D mask, got shape {off.shape}")
    off = _check_correct("offload", off, len(off))
    s_ok = _check_correct("student_correct", student_correct, len(off))
    t_ok = _check_correct("teacher_correct", teacher_correct, len(off))
    return float(np.where(off, t_ok, s_ok).mean())


def threshold_curve(
    scores: np.ndarray, student_correct: np.ndarray, teacher_correct: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, rates, accs), one entry per achievable offload set, from offload-none to offload-all.

    Samples with tied scores fall on the same side of any threshold, so only cuts between distinct
    scores are achievable. Thresholds sit midway between neighbouring distinct scores; the two ends
    sit half the score range (or 0.5 if all scores tie) beyond the extremes.
    """
    curve = paired_curve(scores, student_correct, teacher_correct)
    return curve.thresholds, curve.rates, curve.accs


@dataclass(frozen=True)
class PairedCurve:
    """Every achievable cut, with cooperation compared to the teacher sample by sample."""

    thresholds: np.ndarray
    rates: np.ndarray
    accs: np.ndarray
    """cooperative accuracy: offloaded samples take the teacher's answer, the rest the student's"""
    wins: np.ndarray
    """samples cooperation gets right and the teacher wrong (b of McNemar's test): kept on the edge,
    the student right and the teacher wrong"""
    losses: np.ndarray
    """samples cooperation gets wrong and the teacher right (c): kept, the student wrong, the teacher right"""

    def confident(self, z: float) -> np.ndarray:
        """Cuts at which cooperation is at least the teacher with confidence z: b − c ≥ z·√(b + c).

        b − c is how many more samples cooperation gets right than the teacher; under "cooperation
        is no better than the teacher" it has mean ≤ 0 and variance ≤ b + c (McNemar), so z = 0 asks
        only cooperation ≥ teacher on validation, and z = 1 one standard error more.
        """
        return self.wins - self.losses >= z * np.sqrt(self.wins + self.losses) - 1e-9


def paired_curve(scores: np.ndarray, student_correct: np.ndarray, teacher_correct: np.ndarray) -> PairedCurve:
    """The curve of `threshold_curve`, with cooperation counted against the teacher sample by sample."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) == 0:
        raise ValueError(f"scores must be a non-empty 1-D array, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or Inf")
    n = len(s)
    s_ok = _check_correct("student_correct", student_correct, n)
    t_ok = _check_correct("teacher_correct", teacher_correct, n)

    order = np.argsort(-s, kind="stable")  # hardest first
    s_sorted = s[order]
    s_o, t_o = s_ok[order], t_ok[order]

    def kept(mask: np.ndarray) -> np.ndarray:
        """(N + 1,) count of `mask` over the samples kept on the edge when the top k are offloaded."""
        return mask.sum() - np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])

    # An offloaded sample takes the teacher's answer, so it can neither win nor lose against the teacher.
    wins, losses = kept(s_o & ~t_o), kept(~s_o & t_o)
    correct = t_o.sum() + wins - losses  # offloading the top k
    # k is achievable iff the k-th and (k+1)-th scores differ (k = 0 and k = N always are).
    k = np.concatenate([[0], np.flatnonzero(s_sorted[:-1] > s_sorted[1:]) + 1, [n]])
    margin = 0.5 * (s_sorted[0] - s_sorted[-1]) or 0.5
    padded = np.concatenate([[s_sorted[0] + 2 * margin], s_sorted, [s_sorted[-1] - 2 * margin]])
    thresholds = 0.5 * (padded[k] + padded[k + 1])  # between the last offloaded and the first kept
    # Offloading none: the top score itself (the cut is strict: score > threshold), so that a
    # probability score (a calibrated offloader's, up to 1.0) keeps a threshold that is a probability.
    thresholds[0] = s_sorted[0]
    return PairedCurve(thresholds, k / n, correct[k] / n, wins[k], losses[k])


def accuracy_offload_curve(
    scores: np.ndarray, student_correct: np.ndarray, teacher_correct: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(rates, accs): cooperative accuracy at every achievable offload rate, rates ascending."""
    _, rates, accs = threshold_curve(scores, student_correct, teacher_correct)
    return rates, accs


class Rule(StrEnum):
    """How a filter's threshold is chosen on validation (the manifest's `OperatingPoint.rule`)."""

    TARGET = "target"
    """the lowest offload rate at which cooperation reaches a target accuracy (default: the
    teacher's own validation accuracy), capped by the budget"""
    BOUNDARY = "boundary"
    """the classifier's own decision boundary, the paper's rule (§V), capped by the budget"""
    BUDGET = "budget"
    """the best cooperative accuracy within the budget (ties: the lower rate)"""


def choose_operating_point(
    scores_val: np.ndarray,
    student_correct_val: np.ndarray,
    teacher_correct_val: np.ndarray,
    *,
    filter_name: str,
    rule: Rule | str,
    budget: float | None = None,
    target_accuracy: float | None = None,
    boundary: float | None = None,
    confidence_z: float = 0.0,
) -> dict[str, Any]:
    """Pick the threshold on validation scores by `rule`.

    Returns the fields of shared.bundle.OperatingPoint (validated by it) plus `target_reached`,
    `target_source` and `reason` (a sentence on why this threshold), as a plain dict, so that
    `OperatingPoint(**op)` builds the manifest entry and `make_filter(op)` the filter.

    target: the lowest rate whose cooperative accuracy reaches `target_accuracy` (None: the teacher's
    validation accuracy) within `budget` (None: no cap), with confidence `confidence_z`: against the
    teacher, b − c ≥ z·√(b + c) over the samples the two answer differently (`PairedCurve.confident`);
    against a user's accuracy, its one-sided binomial bound acc − z·√(acc(1 − acc)/n). z = 0 asks the
    validation estimate alone, which on a small split is decided by one or two samples. If no rate
    within the budget does, the best accuracy within it (lowest rate among ties), with a warning and
    `target_reached=False`.
    boundary: the classifier's own cut `boundary`, kept when its validation rate is within `budget`;
    otherwise the budget rule decides, and the result says rule "budget".
    budget: the highest cooperative accuracy among rates <= `budget` (needs a budget).
    """
    rule = Rule(rule)
    for label, value in (("budget", budget), ("target_accuracy", target_accuracy)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"{label} must be in [0, 1], got {value}")
    if rule is Rule.BUDGET and budget is None:
        raise ValueError("rule 'budget' needs a budget")
    if rule is Rule.BOUNDARY and boundary is None:
        raise ValueError("rule 'boundary' needs the classifier's decision boundary")
    if rule is not Rule.TARGET and target_accuracy is not None:
        raise ValueError(f"target_accuracy={target_accuracy} is only used by rule 'target', not {rule.value!r}")
    if boundary is not None and not np.isfinite(boundary):
        raise ValueError(f"boundary must be finite, got {boundary}")
    if not (np.isfinite(confidence_z) and confidence_z >= 0.0):
        raise ValueError(f"confidence_z must be finite and >= 0, got {confidence_z}")
    cap = 1.0 if budget is None else budget
    curve = paired_curve(scores_val, student_correct_val, teacher_correct_val)
    thresholds, rates, accs = curve.thresholds, curve.rates, curve.accs
    # A tolerance so that budget = 0.2 admits exactly 20 of 100 despite float division.
    allowed = np.flatnonzero(rates <= cap + 1e-12)  # never empty: rate 0 is always there
    within = f"within the budget {budget:.3g}" if budget is not None else "with no budget"

    def point(i: int, **extra: Any) -> dict[str, Any]:
        return {"threshold": float(thresholds[i]), "val_offload_rate": float(rates[i]),
                "val_accuracy": float(accs[i]), **extra}

    def best_within_budget() -> int:
        return int(allowed[np.argmax(accs[allowed])])  # argmax takes the first, i.e. lowest-rate, tie

    if rule is Rule.TARGET:
        source = "teacher" if target_accuracy is None else "user"
        target = float(np.mean(teacher_correct_val)) if target_accuracy is None else float(target_accuracy)
        whose = "the teacher's validation accuracy" if source == "teacher" else "the requested accuracy"
        if source == "teacher":
            reached = curve.confident(confidence_z)
        else:  # one-sided binomial lower bound of the cooperative accuracy
            n = len(np.asarray(scores_val))
            reached = accs - confidence_z * np.sqrt(accs * (1.0 - accs) / n) >= target - 1e-12
        reaching = allowed[reached[allowed]]
        sure = f" with confidence z = {confidence_z:g}" if confidence_z else ""
        if len(reaching):
            chosen = point(int(reaching[0]), target_reached=True,
                           reason=f"the lowest validation offload rate at which cooperation reaches {whose} "
                                  f"{target:.4f}{sure}, {within}")
        else:
            best = best_within_budget()
            log.warning("target accuracy %.4f unreachable with filter %r on validation %s; best is %.4f at rate "
                        "%.3f", target, filter_name, within, accs[best], rates[best])
            chosen = point(best, target_reached=False,
                           reason=f"{whose} {target:.4f} is not reached{sure} on validation {within}; the best "
                                  "cooperative accuracy within it instead")
        return OperatingPoint(filter=filter_name, rule=rule.value, budget=budget, target_accuracy=target,
                              target_source=source, confidence_z=confidence_z, **chosen).model_dump()
    if rule is Rule.BOUNDARY:
        assert boundary is not None
        at_boundary = _boundary_point(scores_val, student_correct_val, teacher_correct_val, boundary, cap)
        if at_boundary is not None:
            return OperatingPoint(filter=filter_name, rule="boundary", budget=budget, **at_boundary,
                                  target_reached=True,
                                  reason=f"the offloader's own decision boundary (the paper's rule), {within}"
                                  ).model_dump()
        log.info("filter %r: its decision boundary offloads more than the budget %.3f on validation; "
                 "choosing by budget instead", filter_name, cap)
        return OperatingPoint(filter=filter_name, rule="budget", budget=budget,
                              **point(best_within_budget(), target_reached=True,
                                      reason="the offloader's decision boundary offloads more than the budget "
                                             f"{cap:.3g} on validation; the best validation accuracy within "
                                             "the budget instead")).model_dump()
    return OperatingPoint(filter=filter_name, rule="budget", budget=budget,
                          **point(best_within_budget(), target_reached=True,
                                  reason=f"the best validation accuracy {within} (lowest rate among ties)")
                          ).model_dump()


def _boundary_point(
    scores: np.ndarray, student_ok: np.ndarray, teacher_ok: np.ndarray, boundary: float, budget: float
) -> dict[str, float] | None:
    """threshold / val rate / val accuracy at the classifier's boundary, or None when over budget."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) == 0 or not np.all(np.isfinite(s)):
        raise ValueError(f"scores must be a non-empty, finite 1-D array, got shape {s.shape}")
    offload = s > boundary  # the same comparison the filter makes: offload where score > threshold
    rate = float(offload.mean())
    if rate > budget + 1e-12:
        return None
    acc = cooperative_accuracy(offload, student_ok, teacher_ok)
    return {"threshold": float(boundary), "val_offload_rate": rate, "val_accuracy": acc}
