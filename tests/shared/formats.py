"""Writers for tiny files in each on-disk dataset format, so loaders are tested on real bytes."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

from shared.data import cifar, idx, svhn


def idx_bytes(array: np.ndarray, *, magic: int) -> bytes:
    """Uncompressed IDX bytes: big-endian magic, one uint32 per dimension, then the uint8 payload."""
    dims = np.asarray(array.shape, dtype=">u4").tobytes()
    return magic.to_bytes(4, "big") + dims + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_gz(path: Path, array: np.ndarray, *, magic: int) -> Path:
    """One gzip'd IDX file as MNIST publishes them."""
    path.write_bytes(gzip.compress(idx_bytes(array, magic=magic)))
    return path


def make_idx_dir(root: Path, *, n_train: int = 50, n_test: int = 20, side: int = 6,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """The four MNIST-format files with random pixels and balanced labels; returns what was written."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {
        idx.TRAIN_IMAGES: rng.integers(0, 256, size=(n_train, side, side), dtype=np.uint8),
        idx.TRAIN_LABELS: (np.arange(n_train) % 10).astype(np.uint8),
        idx.TEST_IMAGES: rng.integers(0, 256, size=(n_test, side, side), dtype=np.uint8),
        idx.TEST_LABELS: (np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, array in arrays.items():
        magic = idx.IMAGES_MAGIC if array.ndim == 3 else idx.LABELS_MAGIC
        write_idx_gz(root / name, array, magic=magic)
    return arrays


def make_cifar_dir(root: Path, *, per_batch: int = 20, seed: int = 0, protocol: int = 2,
                   str_keys: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """Five train batches, a test batch and batches.meta in the CIFAR-10 python format.

    Protocol 2 with bytes keys mirrors the original Python 2 files; returns each batch's data/labels.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)

    def key(name: str) -> str | bytes:
        return name if str_keys else name.encode()

    written: dict[str, dict[str, np.ndarray]] = {}
    for name in (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = (np.arange(per_batch) % 10).astype(np.int64)
        batch = {key("batch_label"): b"tiny", key("data"): data, key("labels"): [int(v) for v in labels]}
        (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        written[name] = {"data": data, "labels": labels}
    meta = {key("label_names"): [n.encode() for n in cifar.CLASSES], key("num_vis"): 3072}
    (root / cifar.META).write_bytes(pickle.dumps(meta, protocol=protocol))
    return written


def write_svhn_mat(path: Path, x_hwcn: np.ndarray, y: np.ndarray) -> Path:
    """A MATLAB v5 file shaped like SVHN's: X (32, 32, 3, N) uint8, y (N, 1)."""
    from scipy.io import savemat

    savemat(path, {"X": x_hwcn, "y": y.reshape(-1, 1)})
    return path


def make_svhn_dir(root: Path, *, n_train: int = 40, n_test: int = 20,
                  seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """train_32x32.mat and test_32x32.mat with labels 1-10 (10 meaning digit 0)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, n in ((svhn.TRAIN_MAT, n_train), (svhn.TEST_MAT, n_test)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8)  # 1..10, as SVHN stores them
        write_svhn_mat(root / name, x, y)
        written[name] = (x, y)
    return written
