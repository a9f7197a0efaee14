"""Deterministic stratified splitting and per-channel statistics."""

from __future__ import annotations

import numpy as np

from shared.data.base import DatasetError, Split

_STATS_CHUNK = 4096


def _per_class_quota(counts: np.ndarray, n_take: int) -> np.ndarray:
    """How many of each class to take so the total is exactly `n_take`, proportional to `counts`.

    Largest-remainder rounding: floor every class's share, then hand the leftover slots to the
    classes with the biggest fractional parts (ties to the lower class index, for determinism).
    """
    share = counts * (n_take / counts.sum())
    quota = np.floor(share).astype(np.int64)
    leftover = n_take - int(quota.sum())
    order = np.argsort(-(share - quota), kind="stable")
    quota[order[:leftover]] += 1
    return quota


def stratified_split(split: Split, *, fraction: float, rng: np.random.Generator) -> tuple[Split, Split]:
    """Split into (rest, held_out) with round(fraction * N) samples held out, class-balanced.

    Both parts keep the original sample order, so the result depends only on the seed of `rng`.
    """
    if not 0.0 <= fraction < 1.0:
        raise DatasetError(f"split fraction must be in [0, 1), got {fraction}")
    n_take = round(fraction * len(split))
    classes, inverse, counts = np.unique(split.y, return_inverse=True, return_counts=True)
    quota = _per_class_quota(counts, n_take) if n_take else np.zeros(len(classes), dtype=np.int64)
    held = np.zeros(len(split), dtype=bool)
    for k in range(len(classes)):
        members = np.flatnonzero(inverse == k)
        held[rng.choice(members, size=int(quota[k]), replace=False)] = True
    rest_idx, held_idx = np.flatnonzero(~held), np.flatnonzero(held)
    return (Split(x=split.x[rest_idx], y=split.y[rest_idx]),
            Split(x=split.x[held_idx], y=split.y[held_idx]))


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of raw uint8 pixels (N, C, H, W).

    Works from a 256-bin histogram per channel, built a chunk of images at a time, so even
    CIFAR-10's 138M pixels never get a float64 copy and the result is exact.
    """
    if x.ndim != 4 or x.dtype != np.uint8 or len(x) == 0:
        raise DatasetError(f"channel_stats needs non-empty (N, C, H, W) uint8, got {x.shape} {x.dtype}")
    levels = np.arange(256, dtype=np.float64)
    means, stds = [], []
    for c in range(x.shape[1]):
        hist = np.zeros(256, dtype=np.int64)
        for start in range(0, len(x), _STATS_CHUNK):
            hist += np.bincount(x[start:start + _STATS_CHUNK, c].ravel(), minlength=256)
        total = hist.sum()
        mean = float(levels @ hist / total)
        var = float(((levels - mean) ** 2) @ hist / total)
        means.append(mean)
        stds.append(var ** 0.5)
    return tuple(means), tuple(stds)
