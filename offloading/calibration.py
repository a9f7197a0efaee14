"""Calibration: temperature scaling of logits and Platt scaling of the offloader's score (numpy only).

Temperature scaling (Guo et al., ICML 2017) divides a network's logits by one T > 0 chosen to
minimise the negative log-likelihood on held-out labels; it changes the softmax probabilities but
never the argmax. The offloader's features (features.confidence_features) and the edge-cloud fusion
(fusion.py) both read temperature-scaled probabilities.

Platt scaling (Platt 1999) maps the offloader's raw score s to P(student wrong) = σ(a·s + b) with
a > 0. It is monotone, so it never reorders samples: every accuracy-against-offload curve and every
operating point is the same before and after it; only the threshold becomes a probability.

Training code (fitting). What the edge runs with the fitted values lives in offloading.scoring
(PlattCalibrated) and offloading.features (log_softmax).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from offloading.features import check_logits, log_softmax
from offloading.scoring import PlattCalibrated, offloader_scores

log = logging.getLogger(__name__)

# Temperatures searched, as log T: 0.02 to 50 covers over- and under-confident networks alike.
_LOG_T_RANGE = (float(np.log(0.02)), float(np.log(50.0)))
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


class CalibrationError(ValueError):
    """The offloader's score cannot be Platt-scaled: one class is missing, or the score ranks right
    samples above wrong ones (a fitted slope a <= 0)."""


def _check_labels(labels: np.ndarray, n: int, k: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {y.shape}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer class ids, got dtype {y.dtype}")
    if n and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must lie in [0, {k}), got range [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `labels` under softmax(logits / temperature), in nats."""
    log_p = log_softmax(logits, temperature)
    y = _check_labels(labels, *log_p.shape)
    if len(y) == 0:
        raise ValueError("nll needs at least one sample")
    return float(-log_p[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, iterations: int = 60) -> float:
    """The T > 0 minimising nll(logits, labels, T), by golden-section search over log T.

    The NLL of temperature-scaled logits is unimodal in T in practice (Guo et al. §4.2); 60
    golden-section steps narrow log T's bracket by 0.618^60, far below any meaningful digit.
    """
    z = check_logits(logits)
    _check_labels(labels, *z.shape)
    if len(z) == 0:
        raise ValueError("fit_temperature needs at least one sample")
    lo, hi = _LOG_T_RANGE
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = nll(z, labels, float(np.exp(a))), nll(z, labels, float(np.exp(b)))
    for _ in range(iterations):
        if fa <= fb:  # the minimum lies in [lo, b]
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(z, labels, float(np.exp(a)))
        else:  # in [a, hi]
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(z, labels, float(np.exp(b)))
    return float(np.exp(0.5 * (lo + hi)))


def platt_calibrate(base: Any, features: np.ndarray, wrong: np.ndarray, *, base_boundary: float) -> PlattCalibrated:
    """Fit σ(a·s + b) to the 0/1 `wrong` labels of `features` scored by the fitted `base` model.

    Raises CalibrationError when `wrong` lacks one class, or when the fitted slope is not positive
    (the score would then rank right samples above wrong ones: no calibration can repair that).
    """
    from sklearn.linear_model import LogisticRegression

    w = np.asarray(wrong)
    if w.dtype != np.bool_ or w.ndim != 1:
        raise ValueError(f"wrong must be a 1-D bool mask, got dtype {w.dtype} and shape {w.shape}")
    if w.all() or not w.any():
        raise CalibrationError(f"Platt scaling needs right and wrong samples, got {int(w.sum())} wrong of {len(w)}")
    s = offloader_scores(base, features)
    # Nearly unregularised: two parameters, and the fit should follow the data, not shrink a towards 0.
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(s.reshape(-1, 1), w.astype(np.int64))
    a, b = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    if a <= 0:
        raise CalibrationError(f"the offloader's score does not rank wrong samples higher (Platt slope {a:.4g})")
    log.debug("Platt scaling: a=%.4g, b=%.4g on %d samples (%d wrong)", a, b, len(w), int(w.sum()))
    return PlattCalibrated(base, a=a, b=b, base_boundary=base_boundary)
