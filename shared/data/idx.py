"""MNIST-style IDX files (gzip'd), as published for MNIST and Fashion-MNIST.

Format (big-endian): two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions,
then one uint32 per dimension, then the data in C order. Hence the magic numbers
2049 (0x00000801, 1-D labels) and 2051 (0x00000803, 3-D images).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from shared.data.base import DatasetError, Split
from shared.data.files import require_file, verify_md5sums

LABELS_MAGIC = 2049
IMAGES_MAGIC = 2051
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
IDX_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

_UBYTE = 0x08
_NUM_CLASSES = 10


def _describe(magic: int) -> str:
    ndim = magic & 0xFF
    return f"a gzip'd IDX{ndim} file of unsigned bytes (magic {magic})"


def _decompress(path: Path, *, expected: str) -> bytes:
    """Whole decompressed file; gzip/zlib/truncation errors become a DatasetError naming the file."""
    require_file(path, expected=expected)
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError; a truncated stream is an EOFError.
        raise DatasetError(f"{path}: expected {expected}, but it does not decompress ({exc})") from exc


def read_idx(path: Path, *, magic: int) -> np.ndarray:
    """Read one gzip'd IDX file of unsigned bytes whose header must carry `magic`.

    Returns a uint8 array shaped by the header's dimensions. The header's byte count must match
    the payload exactly, so a truncated or padded file is rejected rather than silently reshaped.
    """
    expected = _describe(magic)
    raw = _decompress(path, expected=expected)
    if len(raw) < 4:
        raise DatasetError(f"{path}: expected {expected}, got only {len(raw)} bytes")
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise DatasetError(f"{path}: expected {expected}, got magic {got}")
    if raw[2] != _UBYTE:
        raise DatasetError(f"{path}: expected {expected}, got type code 0x{raw[2]:02x}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: expected {expected}, header cut short at {len(raw)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    payload = len(raw) - header
    if payload != int(np.prod(dims, dtype=np.int64)):
        raise DatasetError(
            f"{path}: expected {expected}; header dims {dims} need {int(np.prod(dims))} bytes "
            f"but the file holds {payload}"
        )
    # frombuffer is a view on the immutable bytes; copy so callers get a writable array.
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_split(images_path: Path, labels_path: Path) -> Split:
    """One images/labels pair as a (N, 1, H, W) uint8 / (N,) int64 split, cross-checked."""
    images = read_idx(images_path, magic=IMAGES_MAGIC)
    labels = read_idx(labels_path, magic=LABELS_MAGIC)
    if len(images) != len(labels):
        raise DatasetError(
            f"{labels_path}: holds {len(labels)} labels but {images_path.name} holds {len(images)} images"
        )
    if labels.size and int(labels.max()) >= _NUM_CLASSES:
        raise DatasetError(f"{labels_path}: expected labels 0-{_NUM_CLASSES - 1}, found {int(labels.max())}")
    return Split(x=images[:, None, :, :], y=labels.astype(np.int64))


def load_idx_dataset(data_dir: Path) -> tuple[Split, Split]:
    """The official (train, test) splits of an MNIST-format directory, MD5-checked if it has MD5SUMS."""
    verify_md5sums(data_dir, [name for name in IDX_FILES if (data_dir / name).is_file()])
    train = read_split(data_dir / TRAIN_IMAGES, data_dir / TRAIN_LABELS)
    test = read_split(data_dir / TEST_IMAGES, data_dir / TEST_LABELS)
    if train.x.shape[1:] != test.x.shape[1:]:
        raise DatasetError(
            f"{data_dir / TEST_IMAGES}: images are {test.x.shape[2:]} "
            f"but {TRAIN_IMAGES} has {train.x.shape[2:]}"
        )
    return train, test
