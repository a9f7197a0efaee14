"""Run-time scoring with a trained offloader (Zhang et al. §V): what the edge does with offloader.pkl.

numpy only. The edge unpickles the bundle's offloader and scores the student's logits through this
module; fitting (offloading.models, offloading.calibration, offloading.train) is training code the
online half never imports (tests/serving/test_online_imports.py). `PlattCalibrated` lives here
because the shipped offloader *is* one: unpickling it must not pull in the training modules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from offloading.features import check_logits

Estimator = Any  # a fitted scikit-learn-compatible classifier: decision_function or predict_proba


def offloader_scores(model: Estimator, features: np.ndarray) -> np.ndarray:
    """(N, F) features -> (N,) float64, higher = more likely the student is wrong.

    Uses decision_function where the model has one (SVM, GBDT), else predict_proba[:, 1]
    (RF, KNN, XGB, ET). Both rank samples by the positive ("complex") class, classes_[1].
    """
    x = check_logits(features)  # same shape and finiteness rules as logits
    classes = getattr(model, "classes_", None)
    if classes is not None and len(classes) != 2:
        raise ValueError(f"offloader must be a binary classifier, got classes {list(classes)}")
    if len(x) == 0:
        return np.zeros(0, dtype=np.float64)
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(x), dtype=np.float64).reshape(-1)
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(x), dtype=np.float64)[:, 1]
    raise ValueError(f"offloader {type(model).__name__} has neither decision_function nor predict_proba")


def sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so that exp never overflows: σ(x) = 1/(1+e^-x) = e^x/(1+e^x).
    out = np.empty_like(x, dtype=np.float64)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


class PlattCalibrated:
    """A fitted offloader whose score is mapped to P(student wrong) = σ(a·score + b), a > 0.

    Module-level and numpy-only, so the pickled offloader unpickles on the edge. It answers
    predict_proba (and predict at 0.5) like a scikit-learn classifier; `boundary` is the base
    model's own decision boundary on the calibrated scale, so the paper's rule stays exact.
    """

    def __init__(self, base: Any, *, a: float, b: float, base_boundary: float) -> None:
        if not (np.isfinite(a) and a > 0 and np.isfinite(b)):
            raise ValueError(f"Platt scaling needs a finite slope a > 0 and a finite b, got a={a}, b={b}")
        self.base = base
        self.a = float(a)
        self.b = float(b)
        self.base_boundary = float(base_boundary)
        self.classes_ = np.array([0, 1])

    def base_scores(self, x: np.ndarray) -> np.ndarray:
        return offloader_scores(self.base, x)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, F) -> (N, 2): columns P(student right), P(student wrong)."""
        p = sigmoid(self.a * self.base_scores(x) + self.b)
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (self.predict_proba(x)[:, 1] > 0.5).astype(np.int64)

    @property
    def boundary(self) -> float:
        """σ(a·boundary + b): where the base model's own predict() flips, on the calibrated scale."""
        return float(sigmoid(np.array([self.a * self.base_boundary + self.b]))[0])

    def __repr__(self) -> str:
        return f"PlattCalibrated({self.base!r}, a={self.a:.4g}, b={self.b:.4g})"
