"""The value types every loader returns, and the one exception they raise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DatasetError(ValueError):
    """A dataset could not be loaded; the message names the file and the format it expected."""


@dataclass(frozen=True)
class Split:
    """One split of a dataset, raw pixels exactly as stored on disk."""

    x: np.ndarray
    """(N, C, H, W) uint8: 0-16 for digits, 0-255 for everything else."""
    y: np.ndarray
    """(N,) int64 class indices."""

    def __post_init__(self) -> None:
        # Checked once here so no consumer has to re-validate shapes or dtypes.
        if self.x.ndim != 4 or self.x.dtype != np.uint8:
            raise DatasetError(f"Split.x must be (N, C, H, W) uint8, got {self.x.shape} {self.x.dtype}")
        if self.y.ndim != 1 or self.y.dtype != np.int64:
            raise DatasetError(f"Split.y must be (N,) int64, got {self.y.shape} {self.y.dtype}")
        if len(self.x) != len(self.y):
            raise DatasetError(f"Split has {len(self.x)} images but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)


HEAD_FILES = 64
"""Test files in `Encoded.test_head`: enough to time a decoder, about 60 KB for CIFAR-10."""


@dataclass(frozen=True)
class Encoded:
    """The test split's files as a device holds them, where the dataset has files (image folders)."""

    test_bytes: np.ndarray
    """(N_test,) int64: size of each test sample's file (a JPEG for CIFAR-10), in the test split's order."""
    test_files: tuple[bytes, ...]
    """every test file, byte for byte, in the test split's order (what a device sends instead of pixels)"""
    source: str
    """where the files are, for reports"""

    @property
    def test_head(self) -> tuple[bytes, ...]:
        """The first `HEAD_FILES` test files (enough to time a decoder on real files)."""
        return self.test_files[:HEAD_FILES]


@dataclass(frozen=True)
class Dataset:
    """A dataset with deterministic train/val/test splits and its normalisation constants."""

    name: str
    """One of `shared.datasets.DATASETS`."""
    train: Split
    """What the models fit on (the official train split minus `val`)."""
    val: Split
    """Carved from the official train split, stratified, deterministic given the seed."""
    test: Split
    """The official test split where one exists (a seeded stratified carve for digits)."""
    classes: list[str]
    """Human-readable class names, indexed by label."""
    mean: tuple[float, ...]
    """Per-channel mean over the raw `train` pixels."""
    std: tuple[float, ...]
    """Per-channel population standard deviation over the raw `train` pixels."""
    encoded: Encoded | None = None
    """The test split's encoded files (image folders only: CIFAR-10's JPEGs, a user's images)."""
