"""The offloader's input: the student's logits (Zhang et al. §V-A), checked before anything reads them.

Every filter and the SL offloader go through `check_logits`, so a malformed batch raises here with
the problem named, instead of scoring as "easy" and staying on the edge unnoticed.
"""

from __future__ import annotations

import numpy as np


def check_logits(logits: np.ndarray) -> np.ndarray:
    """Return `logits` as a float64 (N, K) array, or raise ValueError naming what is wrong.

    An empty batch (N = 0) is allowed; callers then return empty results.
    """
    try:
        z = np.asarray(logits, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"logits must be numeric, got dtype {np.asarray(logits).dtype}") from exc
    if z.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, K), got shape {z.shape}")
    if z.shape[1] < 2:
        raise ValueError(f"logits need at least 2 classes (K >= 2), got K={z.shape[1]}")
    bad = ~np.isfinite(z)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        kind = "NaN" if np.isnan(z[row]).any() else "Inf"
        raise ValueError(f"logits contain {kind} (first at row {row})")
    return z


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N, K) logits -> (N, K) log-probabilities of softmax(logits / temperature), computed stably."""
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    z = check_logits(logits) / temperature
    shifted = z - z.max(axis=1, keepdims=True)  # the row max shifts to 0: exp cannot overflow
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def logit_features(logits: np.ndarray) -> np.ndarray:
    """(N, K) logits -> (N, K) float64 features.

    The paper feeds the raw logits to the offloader (§V-A): they carry the student's full
    confidence profile, which softmax summaries (max prob, entropy) compress to one number.
    """
    return check_logits(logits).copy()  # (N, K)


FEATURE_KINDS: tuple[str, ...] = ("confidence", "sorted", "raw")


def sorted_logits(logits: np.ndarray) -> np.ndarray:
    """(N, K) logits -> (N, K) float64, each row in descending order.

    Still the student's logits (§V-A), but in a class-independent order: "confident 3" and
    "confident 7" become the same feature vector, so an offloader trained on a few hundred wrong
    samples need not learn confidence separately for every class. Measured on MNIST (docs/results.md).
    Module-level so that a pickled offloader refers to it by name, importable on the edge.
    """
    z = check_logits(logits)
    return -np.sort(-z, axis=1)


def _confidence(z: np.ndarray) -> np.ndarray:
    """(N, K) logits already divided by T -> (N, 3): the confidence filters' scores, on a log scale.

    Columns: log(1 − p₁) (max softmax), log(1 − p₁ + p₂) (margin), log H (entropy), where p₁ ≥ p₂
    are the top two probabilities. Each is a monotone function of one filter's score, so a threshold
    on one column reproduces that filter; the log keeps a confident student's scores, which differ
    only in the far decimals near p₁ = 1, apart for a scaled model (SVM, KNN, logistic regression).
    Computed from log-probabilities so that nothing rounds to log 0 in float64.
    """
    shifted = z - z.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (N, K)
    order = np.argsort(-log_p, axis=1, kind="stable")
    rows = np.arange(len(z))
    log_p2 = log_p[rows, order[:, 1]]
    others = log_p.copy()
    others[rows, order[:, 0]] = -np.inf
    log_rest = np.logaddexp.reduce(others, axis=1)  # log(1 − p₁) = log Σ_{j≠1} p_j
    p = np.exp(log_p)
    entropy = -(p * log_p).sum(axis=1)
    return np.stack([log_rest, np.logaddexp(log_rest, log_p2), np.log(np.maximum(entropy, _TINY))], axis=1)


_TINY = 1e-300  # the entropy of a one-hot float64 softmax can be exactly 0; log needs a floor


def confidence_features(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N, K) logits -> (N, K + 6) float64: sorted logits, then what the confidence filters read.

    Columns: the K sorted logits (§V-A's input, class-independent), then the max-softmax, margin and
    entropy scores (see `_confidence`) of softmax(z) and of softmax(z / T). The filters (filters.py)
    threshold exactly one of these numbers each; giving all of them to the offloader lets it do at
    least as well as the best of them. T is the student's calibration temperature
    (calibration.fit_temperature): it changes how the K probabilities share the mass, so the scaled
    scores rank samples differently from the unscaled ones.
    Module-level so that a pickled offloader refers to it by name, importable on the edge.
    """
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    z = check_logits(logits)
    if len(z) == 0:
        return np.zeros((0, z.shape[1] + 6))
    return np.concatenate([-np.sort(-z, axis=1), _confidence(z), _confidence(z / temperature)], axis=1)


def feature_matrix(logits: np.ndarray, kind: str, *, temperature: float = 1.0) -> np.ndarray:
    """The offloader's input for `kind` in FEATURE_KINDS: what its fitted pipeline computes first."""
    if kind == "confidence":
        return confidence_features(logits, temperature)
    if kind == "sorted":
        return sorted_logits(logits)
    if kind == "raw":
        return logit_features(logits)
    raise ValueError(f"unknown offloader features {kind!r}; choose one of {FEATURE_KINDS}")
