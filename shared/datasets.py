"""Dataset loading for both halves: numpy only, never torch, never a download.

    from shared.datasets import load_dataset, normalize
    ds = load_dataset("mnist", data_dir=Path("../shared/data/mnist"), seed=0)
    x = normalize(ds.test.x, ds.mean, ds.std)   # float32 (N, C, H, W)

Splits are deterministic given `seed`: `val` (and, for digits, `test`) are stratified carves.
Every missing or malformed file raises `DatasetError` naming the file and the format expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shared.data import cifar, digits, idx, imagefolder, svhn
from shared.data.base import Dataset, DatasetError, Encoded, Split
from shared.data.splits import channel_stats, stratified_split
from shared.image_codec import as_bytes_tensor
from shared.preprocess import normalize  # re-exported: datasets are normalised by the one shared function

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetError",
    "Split",
    "channel_stats",
    "input_spec",
    "load_dataset",
    "load_for_bundle",
    "normalize",
    "request_inputs",
]

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "svhn", "imagefolder")

IMAGEFOLDER_SIZE: tuple[int, int] = (32, 32)
"""What `imagefolder` resizes a user's images to unless told otherwise: the CIFAR-style networks' input."""

DIGITS_TEST_FRACTION = 0.2
"""digits ships no test split, so this share is carved off (stratified, seeded) before val."""

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

# The files each on-disk dataset needs, for the error shown when --data-dir is missing.
_EXPECTED_FILES: dict[str, tuple[str, ...]] = {
    "mnist": idx.IDX_FILES,
    "fashion-mnist": idx.IDX_FILES,
    "cifar10": ("cifar10-jpeg.tar.gz (train/<class>/*.jpg, test/<class>/*.jpg), those folders unpacked, or "
                "the python batches",),
    "imagefolder": ("train/<class>/<image> and test/<class>/<image>, unpacked or in one .tar/.tar.gz",),
    "svhn": (svhn.TRAIN_MAT, svhn.TEST_MAT),
}


def _require_dir(name: str, data_dir: Path | None) -> Path:
    """The data directory of an on-disk dataset; it must be given explicitly since we never download."""
    files = ", ".join(_EXPECTED_FILES[name])
    if data_dir is None:
        raise DatasetError(
            f"{name} is read from local files and never downloaded: pass --data-dir (data_dir=) "
            f"pointing at a directory holding {files}"
        )
    path = Path(data_dir)
    if not path.is_dir():
        raise DatasetError(f"{path}: not a directory; expected a {name} directory holding {files}")
    return path


def _official(name: str, data_dir: Path | None, rng: np.random.Generator,
              image_size: tuple[int, int] | None) -> tuple[Split, Split, list[str], Encoded | None]:
    """(full train, test, classes, the test files where there are any) for `name`; digits' test split is
    carved here with `rng`."""
    if name == "digits":
        full, test = stratified_split(digits.load_digits_split(), fraction=DIGITS_TEST_FRACTION, rng=rng)
        return full, test, list(digits.CLASSES), None
    if name == "imagefolder":
        if data_dir is None:
            raise DatasetError("imagefolder reads your own images: pass --data-dir (data_dir=) pointing at "
                               f"{_EXPECTED_FILES[name][0]}")
        folder = imagefolder.load_image_folder(Path(data_dir), size=image_size or IMAGEFOLDER_SIZE)
        return folder.train, folder.test, folder.classes, _encoded(folder)
    root = _require_dir(name, data_dir)
    if name == "cifar10":
        if (cifar.batches_dir(root) / cifar.TEST_BATCH).is_file():
            return (*cifar.load_cifar10(root), None)
        # The JPEG image folders (../shared/data/cifar10), unpacked or as the archive.
        folder = imagefolder.load_image_folder(root, size=image_size)
        if folder.classes != cifar.CLASSES:
            raise DatasetError(f"{root}: class folders {folder.classes} are not CIFAR-10's {cifar.CLASSES}")
        return folder.train, folder.test, folder.classes, _encoded(folder)
    if name == "svhn":
        return (*svhn.load_svhn(root), list(svhn.CLASSES), None)
    train, test = idx.load_idx_dataset(root)
    classes = FASHION_CLASSES if name == "fashion-mnist" else [str(d) for d in range(10)]
    return train, test, list(classes), None


def _encoded(folder: imagefolder.ImageFolder) -> Encoded:
    return Encoded(test_bytes=folder.test_bytes, test_files=folder.test_files, source=f"{folder.source}: test/")


def load_dataset(name: str, *, data_dir: Path | None = None, seed: int = 0,
                 val_fraction: float = 0.1, image_size: int | tuple[int, int] | None = None) -> Dataset:
    """Load `name` with deterministic train/val/test splits and train-set channel statistics.

    `val_fraction` of the official train split (after digits' test carve) becomes `val`,
    stratified by class. The same `seed` always gives the same splits. `image_size` (H, W) or one
    side resizes image-folder datasets (`imagefolder`: 32x32 by default; `cifar10`'s JPEGs: native).
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be in [0, 1), got {val_fraction}")
    # One generator, drawn in a fixed order (digits' test carve, then val), keeps splits reproducible.
    rng = np.random.default_rng(seed)
    full, test, classes, encoded = _official(name, data_dir, rng, _image_size(image_size))
    train, val = stratified_split(full, fraction=val_fraction, rng=rng)
    mean, std = channel_stats(train.x)
    return Dataset(name=name, train=train, val=val, test=test, classes=classes, mean=mean, std=std, encoded=encoded)


def _image_size(size: int | tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
        raise DatasetError(f"image_size must be a positive int or (height, width), got {size!r}")
    return (int(pair[0]), int(pair[1]))


def load_for_bundle(manifest: Any, *, data_dir: Path | None = None, seed: int = 0) -> Dataset:
    """The dataset a bundle was built on (its manifest's `dataset`), images sized as its models take them."""
    shape = list(manifest.input.shape)
    return load_dataset(manifest.dataset, data_dir=data_dir, seed=seed,
                        image_size=(shape[1], shape[2]) if manifest.dataset == "imagefolder" else None)


def input_spec(ds: Dataset) -> dict[str, Any]:
    """The bundle manifest's `input` block for models trained on `ds` (see shared.bundle.InputSpec)."""
    return {
        "shape": [int(d) for d in ds.train.x.shape[1:]],
        "dtype": "uint8",
        "mean": [float(v) for v in ds.mean],
        "std": [float(v) for v in ds.std],
    }


def request_inputs(dataset: Dataset, payload: str = "auto") -> np.ndarray:
    """What each test request carries: (N,) encoded files (BYTES) or the (N, C, H, W) raw pixels.

    `payload` is files, pixels or auto (files where the dataset has them; `edgecloud eval --payload`).
    A device holds a photo as its file, so files are the fair payload for anything that uploads it
    (cloud-only, an offload, split inference's server-only).
    """
    if payload not in ("auto", "files", "pixels"):
        raise ValueError(f"payload must be auto, files or pixels, got {payload!r}")
    if payload == "pixels" or (payload == "auto" and dataset.encoded is None):
        return dataset.test.x
    if dataset.encoded is None:
        raise ValueError(f"dataset {dataset.name!r} has no image files to send; use --payload pixels")
    return as_bytes_tensor(dataset.encoded.test_files)
