"""CIFAR-10 "python version" batches, read with an unpickler that cannot run arbitrary code.

Each batch is a pickled dict: b"data" (N, 3072) uint8 laid out as 1024 red, 1024 green, 1024 blue
values of a 32x32 row-major image, and b"labels" a list of N ints in 0-9. `batches.meta` holds
b"label_names". The files were written by Python 2, so they are read with encoding="bytes".
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from shared.data.base import DatasetError, Split
from shared.data.files import require_file

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
SUBDIR = "cifar-10-batches-py"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_SIDE = 32
_EXPECTED = "a CIFAR-10 python pickle: a dict with b'data' (N, 3072) uint8 and b'labels' (N ints 0-9)"
_EXPECTED_META = "a CIFAR-10 python pickle: a dict with b'label_names' (10 names)"

# Take numpy's array-rebuilding callables from numpy itself rather than by dotted name: their module
# moved (numpy.core -> numpy._core) between releases, and old and new pickles name either one.
_RECONSTRUCT = np.ndarray((0,), dtype=np.uint8).__reduce__()[0]
_FROMBUFFER = np.ndarray((0,), dtype=np.uint8).__reduce_ex__(5)[0]
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(str, "latin1").
    ("_codecs", "encode"): codecs.encode,
}


class SafeUnpickler(pickle.Unpickler):
    """Resolves only the handful of globals a numpy array needs; anything else is refused.

    Everything a pickle can *call* goes through `find_class`, so refusing unknown globals means a
    hostile `__reduce__` (os.system, open, ...) never runs. Object-dtype elements go through this
    same gate, and the loaders reject any array that is not uint8 afterwards anyway.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}") from None


def safe_unpickle(path: Path, *, expected: str) -> Any:
    """Unpickle `path` with `SafeUnpickler`; every failure becomes a DatasetError naming the file."""
    require_file(path, expected=expected)
    try:
        with path.open("rb") as handle:
            return SafeUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, RecursionError) as exc:
        # A corrupt pickle can fail in any of these ways; none of them is the caller's bug.
        raise DatasetError(f"{path}: expected {expected}; unpickling failed ({exc})") from exc


def _field(batch: dict[Any, Any], key: str) -> Any:
    """A batch key, whether the writer used bytes keys (the original Python 2 files) or str keys."""
    if key.encode() in batch:
        return batch[key.encode()]
    return batch.get(key)


def read_batch(path: Path) -> Split:
    """One data/test batch as a (N, 3, 32, 32) uint8 / (N,) int64 split."""
    batch = safe_unpickle(path, expected=_EXPECTED)
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected {_EXPECTED}, got a {type(batch).__name__}")
    data, labels = _field(batch, "data"), _field(batch, "labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * _SIDE * _SIDE:
        got = f"{data.shape} {data.dtype}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: expected {_EXPECTED}, got data {got}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: expected {_EXPECTED}, labels are not integers ({exc})") from exc
    if y.shape != (len(data),):
        raise DatasetError(f"{path}: expected {_EXPECTED}, got {y.shape} labels for {len(data)} images")
    if y.size and (y.min() < 0 or y.max() >= len(CLASSES)):
        raise DatasetError(f"{path}: expected {_EXPECTED}, labels span {y.min()}..{y.max()}")
    # Channel-major rows reshape straight to (N, C, H, W): no transpose needed.
    return Split(x=data.reshape(-1, 3, _SIDE, _SIDE), y=y)


def read_classes(path: Path) -> list[str]:
    """Class names from batches.meta, or the standard ten if the file is absent."""
    if not path.is_file():
        return list(CLASSES)
    meta = safe_unpickle(path, expected=_EXPECTED_META)
    names = _field(meta, "label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != len(CLASSES):
        raise DatasetError(f"{path}: expected {_EXPECTED_META}")
    try:
        return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: expected {_EXPECTED_META}; a name is not UTF-8 ({exc})") from exc


def batches_dir(data_dir: Path) -> Path:
    """`data_dir` itself, or its `cifar-10-batches-py` folder as the official tarball unpacks."""
    nested = data_dir / SUBDIR
    if not (data_dir / TEST_BATCH).is_file() and nested.is_dir():
        return nested
    return data_dir


def load_cifar10(data_dir: Path) -> tuple[Split, Split, list[str]]:
    """The official (train, test) splits and class names of CIFAR-10."""
    root = batches_dir(data_dir)
    parts = [read_batch(root / name) for name in TRAIN_BATCHES]
    train = Split(x=np.concatenate([p.x for p in parts]), y=np.concatenate([p.y for p in parts]))
    return train, read_batch(root / TEST_BATCH), read_classes(root / META)
