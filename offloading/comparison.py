"""Comparing offloaders on the test split (Tables III-IV, Figs. 3 and 5): rows, curves and their metrics.

A candidate model, a QBC-vs-random pair or a filter each become one frozen row; `Curve` is a
filter's cooperative accuracy against its offload rate. `rate_to_reach` reads off a curve the
smallest offload rate at which cooperation reaches an accuracy (the teacher's, in every table).
`choose_candidate` picks the shipped model on validation by the operating point's own objective.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from offloading.operating_point import Rule
from offloading.scoring import Estimator, offloader_scores


@dataclass(frozen=True)
class CandidateRow:
    """One row of Tables III-IV: how well a model predicts "student wrong" on test, its size and cost."""

    name: str
    test_accuracy: float
    """its own 0/1 decision (trained on the balanced QBC set, so it flags "wrong" generously)"""
    test_balanced_accuracy: float
    test_auc: float
    """ROC AUC of its score for "student wrong": how well it ranks, whatever the threshold"""
    size_kb: float
    fit_seconds: float
    decision_us: float
    """scoring time per sample on the test split (features included), best of 3 runs"""
    test_rate_to_teacher: float | None
    """the smallest test offload rate at which cooperation reaches the teacher's test accuracy"""
    val_auc: float
    val_offload_rate: float
    """at its own validation operating point (the configured rule)"""
    val_accuracy: float
    val_target_reached: bool


def choose_candidate(rows: list[CandidateRow], rule: str) -> str:
    """The candidate with the best validation operating point under `rule`.

    Rule "target": the lowest validation offload rate that reaches the target (those that reach it
    first), then the higher validation accuracy; the other rules: the higher validation accuracy,
    then the lower rate. Validation AUC, then the candidates' order, break the remaining ties. This
    is what the operating point itself optimises, measured on the same split, so test stays unseen.
    """
    if not rows:
        raise ValueError("no candidate to choose from")

    def key(item: tuple[int, CandidateRow]) -> tuple[float, ...]:
        i, row = item
        auc = 0.0 if np.isnan(row.val_auc) else row.val_auc
        if rule == Rule.TARGET:
            return (float(not row.val_target_reached), row.val_offload_rate, -row.val_accuracy, -auc, i)
        return (-row.val_accuracy, row.val_offload_rate, -auc, i)

    return min(enumerate(rows), key=key)[1].name


@dataclass(frozen=True)
class SelectionRow:
    """One row of Fig. 3: the same model trained on QBC vs random normal samples (same counts)."""

    name: str
    qbc_accuracy: float
    random_accuracy: float
    qbc_balanced_accuracy: float
    random_balanced_accuracy: float
    qbc_auc: float
    random_auc: float


@dataclass(frozen=True)
class FilterRow:
    """A filter cut at its own validation operating point (same rule, budget / target), measured on test."""

    name: str
    threshold: float | None
    val_offload_rate: float
    val_accuracy: float
    test_offload_rate: float
    test_accuracy: float
    test_rate_to_teacher: float | None
    """the smallest test offload rate at which this filter's cooperation reaches the teacher's test accuracy"""


@dataclass(frozen=True)
class Curve:
    """Cooperative test accuracy against offload rate, rates ascending."""

    rates: np.ndarray
    accs: np.ndarray


def accuracies(model: Estimator, x: np.ndarray, wrong: np.ndarray) -> tuple[float, float]:
    """(accuracy, balanced accuracy) of predicting "student wrong"; balanced = mean per-class recall."""
    pred = np.asarray(model.predict(x)).astype(bool)
    recalls = [float((pred[wrong == c] == c).mean()) for c in (False, True) if (wrong == c).any()]
    return float((pred == wrong).mean()), float(np.mean(recalls))


def auc(scores: np.ndarray, wrong: np.ndarray) -> float:
    """ROC AUC of `scores` for the wrong class (ties count half); NaN when one class is absent."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(wrong, scores)) if 0 < wrong.sum() < len(wrong) else float("nan")


def decision_us(model: Estimator, logits: np.ndarray) -> float:
    """Per-sample scoring time of `model` on `logits` in µs, the best of three runs (least disturbed)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        offloader_scores(model, logits)
        best = min(best, time.perf_counter() - start)
    return 1e6 * best / max(len(logits), 1)


def rate_to_reach(curve: Curve, accuracy: float) -> float | None:
    """The smallest offload rate on `curve` whose cooperative accuracy reaches `accuracy`, or None."""
    reaching = np.flatnonzero(curve.accs >= accuracy - 1e-12)
    return float(curve.rates[reaching[0]]) if len(reaching) else None


