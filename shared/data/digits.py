"""scikit-learn's bundled 8x8 digits (1797 images, grey levels 0-16): the no-download default."""

from __future__ import annotations

import numpy as np

from shared.data.base import DatasetError, Split

CLASSES = [str(d) for d in range(10)]
_MAX_LEVEL = 16


def load_digits_split() -> Split:
    """All 1797 digits as one (N, 1, 8, 8) uint8 split; the caller carves test/val from it."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DatasetError("digits: needs scikit-learn (it ships the data), which is not installed") from exc
    bunch = load_digits()
    images = np.asarray(bunch.images)  # (N, 8, 8) float64 holding integer grey levels
    if images.min() < 0 or images.max() > _MAX_LEVEL or not np.array_equal(images, np.round(images)):
        raise DatasetError(f"digits: expected integer grey levels 0-{_MAX_LEVEL} from scikit-learn")
    return Split(x=images.astype(np.uint8)[:, None, :, :], y=np.asarray(bunch.target, dtype=np.int64))
