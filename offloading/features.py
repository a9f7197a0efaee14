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


def logit_features(logits: np.ndarray) -> np.ndarray:
    """(N, K) logits -> (N, K) float64 features.

    The paper feeds the raw logits to the offloader (§V-A): they carry the student's full
    confidence profile, which softmax summaries (max prob, entropy) compress to one number.
    """
    return check_logits(logits).copy()  # (N, K)


FEATURE_KINDS: tuple[str, ...] = ("sorted", "raw")


def sorted_logits(logits: np.ndarray) -> np.ndarray:
    """(N, K) logits -> (N, K) float64, each row in descending order.

    Still the student's logits (§V-A), but in a class-independent order: "confident 3" and
    "confident 7" become the same feature vector, so an offloader trained on a few hundred wrong
    samples need not learn confidence separately for every class. Measured on MNIST (docs/results.md).
    Module-level so that a pickled offloader refers to it by name, importable on the edge.
    """
    z = check_logits(logits)
    return -np.sort(-z, axis=1)
