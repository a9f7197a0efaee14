"""SVHN "format 2" cropped digits: train_32x32.mat / test_32x32.mat (MATLAB v5).

Each file holds X (32, 32, 3, N) uint8 and y (N, 1) with labels 1-10, where 10 stands for digit 0.
scipy is imported lazily so the rest of `shared` works where scipy is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shared.data.base import DatasetError, Split
from shared.data.files import require_file

TRAIN_MAT = "train_32x32.mat"
TEST_MAT = "test_32x32.mat"
CLASSES = [str(d) for d in range(10)]
_EXPECTED = "a MATLAB v5 .mat file with X (32, 32, 3, N) uint8 and y (N, 1) labels 1-10"
_ZERO_LABEL = 10


def _loadmat(path: Path) -> dict[str, Any]:
    """scipy.io.loadmat with its many failure modes folded into one DatasetError naming the file."""
    require_file(path, expected=_EXPECTED)
    try:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
    except ImportError as exc:
        raise DatasetError(f"{path}: reading {_EXPECTED} needs scipy, which is not installed") from exc
    try:
        return loadmat(path)
    except (MatReadError, OSError, ValueError, TypeError, EOFError, KeyError, IndexError,
            NotImplementedError) as exc:
        # NotImplementedError is what scipy raises for MATLAB v7.3 (HDF5) files.
        raise DatasetError(f"{path}: expected {_EXPECTED}; scipy could not read it ({exc})") from exc


def read_mat(path: Path) -> Split:
    """One .mat file as a (N, 3, 32, 32) uint8 / (N,) int64 split with digit 0 labelled 0."""
    mat = _loadmat(path)
    x, y = mat.get("X"), mat.get("y")
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        got = f"{x.shape} {x.dtype}" if isinstance(x, np.ndarray) else "no X"
        raise DatasetError(f"{path}: expected {_EXPECTED}, got X {got}")
    if not isinstance(y, np.ndarray) or y.size != x.shape[3] or not np.issubdtype(y.dtype, np.integer):
        got = f"{y.shape} {y.dtype}" if isinstance(y, np.ndarray) else "no y"
        raise DatasetError(f"{path}: expected {_EXPECTED}, got y {got} for {x.shape[3]} images")
    labels = y.reshape(-1).astype(np.int64)
    if labels.size and (labels.min() < 1 or labels.max() > _ZERO_LABEL):
        raise DatasetError(f"{path}: expected {_EXPECTED}, labels span {labels.min()}..{labels.max()}")
    labels[labels == _ZERO_LABEL] = 0
    # (H, W, C, N) -> (N, C, H, W); contiguous so later fancy indexing is fast.
    return Split(x=np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y=labels)


def load_svhn(data_dir: Path) -> tuple[Split, Split]:
    """The official (train, test) splits of SVHN (the `extra` set is not used)."""
    return read_mat(data_dir / TRAIN_MAT), read_mat(data_dir / TEST_MAT)
