"""Build presets: one typed config per `edgecloud build` run, derived from a preset and a dataset.

`fast` is sized for a 2-core CPU: a width-16 ResNet-18 teacher, a short RL search and a few epochs
of distillation. `paper` uses the paper's scale (ResNet-18 at width 64, long search and
distillation) and is meant for a GPU (`--device cuda`), though it runs anywhere.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

PRESETS: tuple[str, ...] = ("fast", "paper")
# Below this many training samples a dataset is "small" (digits has ~1.3k): epochs are scaled up
# so that each stage still takes a sensible number of optimiser steps.
_SMALL_DATASET = 10_000


@dataclass
class TeacherSpec:
    depth: int = 18
    """ResNet depth: 18 or 34 (paper §VI uses both)."""
    width: int = 16
    """base width w of the stages (w, 2w, 4w, 8w); 64 is the paper's ResNet-18."""
    epochs: int = 4
    """teacher training epochs."""
    batch_size: int = 128
    """teacher training batch size."""
    lr: float = 0.1
    """peak learning rate (SGD + one-cycle)."""
    augment: bool = False
    """pad-and-crop augmentation while training the teacher."""


@dataclass
class SearchSpec:
    episodes: int = 10
    """policy updates of Algorithm 1."""
    rollouts: int = 4
    """N students sampled per update (eq. 8)."""
    lr: float = 1e-2
    """policy learning rate; the paper's 1e-4 barely moves the policy in a short CPU search."""
    episode_steps: int = 50
    """SP-KD steps each sampled student gets before its accuracy A is measured (eq. 7)."""
    episode_subset: int = 2048
    """training samples those short runs draw from."""
    alpha: float = 20.0
    """α of eq. (7)."""
    beta: float = 15.0
    """β of eq. (7)."""
    c0: float = 0.9
    """C0 of eq. (7)."""
    a0: float = 0.9
    """A0 of eq. (7)."""
    inherit: bool = True
    """students start from the teacher's largest-L1 filters (measured better than random init)."""
    size_budget: float | None = None
    """largest student size as a fraction of the teacher's bytes (None: only the reward pushes C)."""


@dataclass
class DistillSpec:
    method: Literal["sp", "hinton", "none"] = "sp"
    """KD loss for the best student's full distillation."""
    epochs: int = 6
    """epochs of the final distillation."""
    lr: float = 0.05
    """peak learning rate (SGD, cosine)."""
    gamma: float = 3000.0
    """SP-KD weight γ (Tung & Mori)."""
    augment: bool = False
    """pad-and-crop augmentation during the final distillation."""


@dataclass
class OffloadSpec:
    model: str = "svm"
    """offloader model; the paper recommends the SVM."""
    budget: float | None = 0.2
    """largest fraction offloaded at the operating point (None when target_accuracy is set)."""
    target_accuracy: float | None = None
    """or: the smallest offload rate reaching this validation accuracy."""
    use_boundary: bool = True
    """cut the SVM at its own decision boundary (the paper's rule) unless that exceeds the budget."""
    r: float = 0.5
    """QBC: fraction of normal samples drawn at random (Algorithm 2)."""
    committee_size: int = 3
    """QBC: L committee classifiers (eq. 11)."""
    features: str = "sorted"
    """offloader input: each row of logits sorted (class-independent) or "raw"."""


@dataclass
class BuildConfig:
    dataset: str = "digits"
    """dataset name (shared.datasets.DATASETS)."""
    preset: str = "fast"
    """the preset these settings came from."""
    seed: int = 0
    """seeds splits, training, search and QBC."""
    device: str = "auto"
    """torch device: auto, cpu or cuda."""
    teacher: TeacherSpec = field(default_factory=TeacherSpec)
    search: SearchSpec = field(default_factory=SearchSpec)
    distill: DistillSpec = field(default_factory=DistillSpec)
    offload: OffloadSpec = field(default_factory=OffloadSpec)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BuildConfig:
        return cls(
            **{k: v for k, v in raw.items() if k not in ("teacher", "search", "distill", "offload")},
            teacher=TeacherSpec(**raw.get("teacher", {})),
            search=SearchSpec(**raw.get("search", {})),
            distill=DistillSpec(**raw.get("distill", {})),
            offload=OffloadSpec(**raw.get("offload", {})),
        )


def apply_overrides(cfg: BuildConfig, overrides: dict[str, Any]) -> BuildConfig:
    """`cfg` with `overrides` (a partial BuildConfig dict, as in reports/build.json) merged in.

    Unknown keys are an error that names them, so a typo in a config file cannot be silently ignored.
    """
    merged = cfg.to_dict()
    for key, value in overrides.items():
        if key not in merged:
            raise ValueError(f"unknown build setting {key!r}; known: {', '.join(sorted(merged))}")
        if isinstance(merged[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"build setting {key!r} must be an object, got {value!r}")
            unknown = sorted(set(value) - set(merged[key]))
            if unknown:
                known = ", ".join(sorted(merged[key]))
                raise ValueError(f"unknown {key} setting(s) {', '.join(unknown)}; known: {known}")
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return BuildConfig.from_dict(merged)


def make_config(preset: str, *, dataset: str, train_size: int, seed: int = 0, device: str = "auto") -> BuildConfig:
    """The preset's settings, with epochs scaled for small datasets."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = BuildConfig(dataset=dataset, preset=preset, seed=seed, device=device)
    if preset == "fast" and train_size >= _SMALL_DATASET:
        # MNIST-sized: a width-32 teacher leaves a 2%-sized student enough channels to stay accurate.
        cfg.teacher = TeacherSpec(width=32, epochs=3)
        # The 2% budget is the paper's MNIST scale (407 KB from 43.7 MB is 0.93%); a 20-episode CPU
        # search does not reach it from the reward alone (digits: best C 0.92 after 30 episodes).
        cfg.search = SearchSpec(episodes=20, episode_steps=40, size_budget=0.02)
    elif preset == "fast":
        cfg.search = SearchSpec(episodes=30)
    if preset == "paper":
        cfg.teacher = TeacherSpec(width=64, epochs=30, augment=True)
        cfg.search = SearchSpec(episodes=100, rollouts=4, lr=1e-4, episode_steps=200, episode_subset=8192)
        cfg.distill = DistillSpec(epochs=60, augment=True)
    if train_size < _SMALL_DATASET:
        # Keep roughly the optimiser steps a large dataset gets: digits has ~10 batches an epoch.
        scale = min(10, math.ceil(_SMALL_DATASET / max(train_size, 1)))
        cfg.teacher.epochs *= scale
        cfg.distill.epochs *= scale
    return cfg
