"""Batches of normalised image tensors from a raw uint8 ``shared.datasets.Split``.

The raw uint8 array is kept as is and each batch is gathered, cast and normalised in one vectorised
step, so a 60k-image dataset costs its raw bytes in memory (not 4x as float32) and no per-sample
Python runs. The normalisation is ``shared.preprocess``'s one multiply-add, x = (raw - mean) / std per
channel, so the edge and the cloud (numpy) and training (torch) see bit-identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from shared.preprocess import affine

if TYPE_CHECKING:
    from shared.datasets import Split

AUGMENT_PAD = 2  # "pad 2 + random crop": shifts of at most 2 pixels, label-preserving for digits too

AUGMENTS: dict[str, tuple[int, bool]] = {
    "none": (0, False),
    # Digits and MNIST: small shifts only; a mirrored digit is another symbol (or none).
    "shift": (AUGMENT_PAD, False),
    # Natural images: the standard CIFAR recipe (He et al. 2016, §4.2): pad 4, random 32x32 crop,
    # horizontal flip with probability 1/2.
    "crop-flip": (4, True),
}
"""Training-time augmentation by name: (padding of the random crop, horizontal flip)."""


def augment_name(augment: bool | str) -> str:
    """The AUGMENTS name for a setting; ``True``/``False`` are the older boolean ("shift"/"none")."""
    if isinstance(augment, bool):
        return "shift" if augment else "none"
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {sorted(AUGMENTS)} (or true/false), got {augment!r}")
    return augment


class _BatchDataset(torch.utils.data.Dataset[tuple[Tensor, Tensor]]):
    """Indexed by a whole list of sample indices, returning one ready batch."""

    def __init__(self, x_raw: np.ndarray, y: np.ndarray, mean: Sequence[float], std: Sequence[float], *,
                 augment: str, generator: torch.Generator) -> None:
        self.x = torch.from_numpy(np.ascontiguousarray(x_raw))  # (N, C, H, W) raw
        self.y = torch.from_numpy(np.ascontiguousarray(y)).long()  # (N,)
        scale, shift = affine(mean, std)  # the one normalisation (shared/preprocess.py), as torch tensors
        self.scale = torch.from_numpy(scale)  # (1, C, 1, 1)
        self.shift = torch.from_numpy(shift)
        self.pad, self.flip = AUGMENTS[augment]
        self.generator = generator

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, idx: list[int]) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(idx, dtype=torch.long)
        x = self.x[index].float() * self.scale + self.shift  # (B, C, H, W), = (raw - mean) / std
        if self.pad:
            # Pad with raw pixel 0 normalised, as padding the raw image (torchvision's RandomCrop)
            # would: a normalised 0 would be mid-grey, not background.
            x = _random_shift(x, fill=self.shift, pad=self.pad, generator=self.generator)
        if self.flip:
            mirror = torch.rand(len(index), generator=self.generator) < 0.5  # (B,)
            x = torch.where(mirror.view(-1, 1, 1, 1), x.flip(3), x)
        return x, self.y[index]


def _random_shift(x: Tensor, *, fill: Tensor, pad: int, generator: torch.Generator) -> Tensor:
    """Pad every image by ``pad`` with ``fill`` (1, C, 1, 1) and crop back at a random offset."""
    b, c, h, w = x.shape
    p = pad
    padded = fill.expand(b, c, h + 2 * p, w + 2 * p).clone()
    padded[:, :, p:p + h, p:p + w] = x
    dy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * p + 1, (b,), generator=generator)
    rows = (dy.view(b, 1) + torch.arange(h)).view(b, 1, h, 1)  # (B, 1, H, 1)
    cols = (dx.view(b, 1) + torch.arange(w)).view(b, 1, 1, w)  # (B, 1, 1, W)
    batch = torch.arange(b).view(b, 1, 1, 1)
    chan = torch.arange(c).view(1, c, 1, 1)
    return padded[batch, chan, rows, cols]  # (B, C, H, W)


def make_loader(
    split: Split,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    augment: bool | str = False,
) -> DataLoader:
    """Yield (x float32 (B, C, H, W) normalised, y int64 (B,)).

    ``shuffle`` and ``augment`` (an AUGMENTS name; True is "shift", pad 2 + random crop) draw from one
    generator seeded by ``seed`` (``loader_generator(loader)``), so a loader replays the same epochs;
    successive epochs of one loader differ.
    """
    x, y = split.x, split.y
    if x.ndim != 4:
        raise ValueError(f"split.x must be (N, C, H, W), got shape {x.shape}")
    if len(x) != len(y):
        raise ValueError(f"split.x has {len(x)} samples but split.y has {len(y)}")
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} need one value per channel ({x.shape[1]})")
    if any(s <= 0 for s in std):
        raise ValueError(f"std must be positive per channel, got {tuple(std)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    dataset = _BatchDataset(x, y, mean, std, augment=augment_name(augment), generator=generator)
    order = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    # batch_size=None: the sampler already groups indices, and the dataset returns whole batches.
    return DataLoader(dataset, sampler=BatchSampler(order, batch_size, drop_last=False), batch_size=None)


def loader_generator(loader: DataLoader) -> torch.Generator:
    """The one generator behind a ``make_loader`` loader's order and augmentation (saved to resume a run)."""
    return loader.dataset.generator
