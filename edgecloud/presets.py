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
# Natural images that a horizontal flip keeps in their class (SVHN's digits are not among them).
_FLIPPABLE = ("cifar10", "imagefolder")
FIT_SOURCES: tuple[str, ...] = ("crossfit", "holdout", "train")
# Below this many training samples a dataset is "small" (digits has ~1.3k): epochs are scaled up
# so that each stage still takes a sensible number of optimiser steps.
_SMALL_DATASET = 10_000


# Each family's knobs (networks/family.py: default_arch's options) per preset. ResNet: depth 18 or 34
# (paper §VI uses both) and base width w of the stages (w, 2w, 4w, 8w; 64 is the paper's ResNet-18).
# AlexNet and the mobile family: a multiplier of their reference widths.
# The fast mobile net strides its stem: MobileNetV2's 32x32 maps cost 2.5 min a CIFAR-10 epoch at width 0.5 on
# the 2-core CPU, a strided stem ~0.8 (docs/results.md, "Training speed").
_FAST_ARCH: dict[str, dict[str, Any]] = {"resnet": {"depth": 18, "width": 16}, "alexnet": {"width": 0.5},
                                         "mobilenet": {"width": 0.5, "stem_stride": 2}}
_PAPER_ARCH: dict[str, dict[str, Any]] = {"resnet": {"depth": 18, "width": 64}, "alexnet": {"width": 1.0},
                                          "mobilenet": {"width": 1.0}}


def default_teacher_arch(preset: str, family: str) -> dict[str, Any]:
    """The family knobs a preset gives a teacher of ``family`` (a copy: callers may change it)."""
    from networks.family import get_family

    get_family(family)  # an unknown family is an error that lists the known ones
    table = _PAPER_ARCH if preset == "paper" else _FAST_ARCH
    return dict(table.get(family, {}))


@dataclass
class TeacherSpec:
    family: str = "resnet"
    """model family of the teacher (networks/family.py): resnet, alexnet or mobilenet; the student is
    compressed from it, so it shares the family."""
    arch: dict[str, Any] = field(default_factory=lambda: dict(_FAST_ARCH["resnet"]))
    """the family's own knobs (resnet: depth, width; alexnet and mobilenet: width, mobilenet also depth
    multipliers); setting another family without these takes that family's preset knobs."""
    epochs: int = 4
    """teacher training epochs."""
    batch_size: int = 128
    """teacher training batch size."""
    lr: float = 0.1
    """peak learning rate (SGD + one-cycle)."""
    augment: bool | str = False
    """training-time augmentation (compression.data.AUGMENTS): "none", "shift" (true) or "crop-flip"."""


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
    gamma: float = 300.0
    """SP-KD weight γ of L = CE + γ·L_SP (Tung & Mori eq. 4). Their CIFAR value, 3000, makes γ·L_SP about
    30 times the cross-entropy on our inherited students; 300 gave higher validation accuracy on digits
    (5 seeds) and MNIST (docs/results.md, "SP-KD weight")."""
    augment: bool | str = False
    """augmentation during the final distillation (compression.data.AUGMENTS): "none", "shift" (true) or
    "crop-flip"."""


@dataclass
class OffloadSpec:
    model: str = "auto"
    """offloader model: a candidate name (the paper recommends "svm") or "auto", the candidate that ranks
    "student wrong" best out of fold on the fit set (offloading.comparison.choose_candidate)."""
    rule: str = "target"
    """operating point on validation: "target" (the lowest offload rate at which cooperation reaches
    target_accuracy, by default the teacher's), "boundary" (the SVM's own cut, the paper's rule) or
    "budget" (the best accuracy within the budget); the budget caps all three."""
    budget: float | None = 0.2
    """largest fraction offloaded at the operating point (None: no cap)."""
    target_accuracy: float | None = None
    """rule "target": the validation accuracy to reach; None means the teacher's validation accuracy."""
    confidence_z: float = 0.0
    """rule "target": standard errors by which validation must clear the target (0: the estimate alone;
    offloading.operating_point.PairedCurve.confident)."""
    fit_source: str = "crossfit"
    """where the offloader's "student wrong" labels come from: "crossfit" (out-of-fold students),
    "holdout" (a slice of train the student is not distilled on) or "train" (the student's own
    training data, the paper's; the student is right on nearly all of it)."""
    folds: int = 5
    """crossfit: number of folds K (K students, each distilled on K − 1 folds)."""
    fold_epochs: int | None = None
    """crossfit: distillation epochs of each fold student (None: the final distillation's)."""
    holdout_fraction: float = 0.2
    """holdout: the fraction of train withheld from the student for the offloader."""
    features: str = "confidence"
    """offloader input: "confidence" (sorted logits + max probability, margin, entropy at T = 1 and at
    the calibrated T), "sorted" logits or "raw" logits."""
    calibrate: bool = True
    """Platt-scale the offloader's score on validation into P(student wrong)."""
    fusion: bool = True
    """tune edge-cloud fusion of student and teacher probabilities on validation (offloading/fusion.py)."""
    bootstrap_draws: int = 500
    """paired bootstrap draws of the test split for the offloader-against-filters verdict
    (offloading/resampling.py); 0 skips it."""
    r: float = 0.5
    """QBC: fraction of normal samples drawn at random (Algorithm 2)."""
    committee_size: int = 3
    """QBC: L committee classifiers (eq. 11)."""

    def __post_init__(self) -> None:
        from offloading.features import FEATURE_KINDS
        from offloading.operating_point import Rule

        if self.rule not in {r.value for r in Rule}:
            raise ValueError(f"unknown offload rule {self.rule!r}; choose one of {[r.value for r in Rule]}")
        if self.features not in FEATURE_KINDS:
            raise ValueError(f"unknown offload features {self.features!r}; choose one of {FEATURE_KINDS}")
        if self.fit_source not in FIT_SOURCES:
            raise ValueError(f"unknown offload fit_source {self.fit_source!r}; choose one of {FIT_SOURCES}")
        if self.folds < 2:
            raise ValueError(f"offload folds must be >= 2, got {self.folds}")
        if self.fold_epochs is not None and self.fold_epochs < 1:
            raise ValueError(f"offload fold_epochs must be None or >= 1, got {self.fold_epochs}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"offload holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if not (math.isfinite(self.confidence_z) and self.confidence_z >= 0.0):
            raise ValueError(f"offload confidence_z must be finite and >= 0, got {self.confidence_z}")
        if self.bootstrap_draws < 0:
            raise ValueError(f"offload bootstrap_draws must be >= 0, got {self.bootstrap_draws}")


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
    precision: str = "auto"
    """training arithmetic (compression.precision): fp32, bf16 or auto (bf16 where the device runs it natively)."""
    image_size: int | None = None
    """side the images are resized to (imagefolder; None: the dataset's own, 32 for imagefolder)."""
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
            teacher=TeacherSpec(**_teacher_settings(raw.get("teacher", {}))),
            search=SearchSpec(**raw.get("search", {})),
            distill=DistillSpec(**raw.get("distill", {})),
            offload=OffloadSpec(**_offload_settings(raw.get("offload", {}))),
        )


def _teacher_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """Teacher settings with the ResNet-only `depth` / `width` of older build.json files moved into `arch`."""
    old = {k: raw[k] for k in ("depth", "width") if k in raw}
    if not old:
        return raw
    settings = {k: v for k, v in raw.items() if k not in old}
    settings["arch"] = {**_FAST_ARCH["resnet"], **settings.get("arch", {}), **old}
    return settings


def _offload_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """Offload settings with the pre-`rule` flag `use_boundary` of older build.json files translated."""
    if "use_boundary" not in raw:
        return raw
    settings = {k: v for k, v in raw.items() if k != "use_boundary"}
    if "rule" not in settings:
        settings["rule"] = "target" if raw.get("target_accuracy") is not None else (
            "boundary" if raw["use_boundary"] else "budget")
    return settings


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
            if key == "teacher":
                value = _teacher_settings(value)
                if value.get("family", merged[key]["family"]) != merged[key]["family"] and "arch" not in value:
                    # Knobs belong to a family: another family starts from its own preset knobs.
                    value = {**value, "arch": default_teacher_arch(cfg.preset, value["family"])}
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
        # MNIST-sized: a width-32 teacher leaves a 1%-sized student enough channels to stay accurate.
        cfg.teacher = TeacherSpec(arch={"depth": 18, "width": 32}, epochs=3)
        # The paper's MNIST student is 0.93% of its teacher (407 KB from 43.7 MB); a 20-episode CPU
        # search does not get there from the reward alone (digits: best C 0.92 after 30 episodes).
        cfg.search = SearchSpec(episodes=20, episode_steps=40, size_budget=0.01)
        # Half the 2% student's bytes needs more steps to stay within 0.3 points of the teacher: 8
        # epochs left the 0.96% student 0.33 points below it; 14 with random shifts, 0.17 (validation
        # 99.03% -> 99.23%; docs/results.md, "MNIST student: longer, augmented distillation").
        cfg.distill = DistillSpec(epochs=14, augment=True)
        # Five fold students of 2 epochs: together less than one more final distillation.
        cfg.offload.fold_epochs = 2
    elif preset == "fast":
        cfg.search = SearchSpec(episodes=30, size_budget=0.05)
    if preset == "fast" and dataset in _FLIPPABLE:
        # CIFAR-10 on the 2-core CPU (bf16 autocast: ~1.4 min an epoch at width 32): a width-32 ResNet-18
        # trained 30 one-cycle epochs with crop and flip. Width 16 reached only 86.9% in 30 epochs, below
        # the paper's 88.7-89.3% teacher (docs/results.md, "CIFAR-10 fast preset").
        cfg.teacher = TeacherSpec(arch={"depth": 18, "width": 32}, epochs=30, augment="crop-flip")
        # The paper's CIFAR-10 student is 675 KB (Zhang et al. Table I): 0.06 of this 11.2 MB teacher's bytes
        # is at most 671 KB. Natural-image students need more SP-KD steps than digits' to be ranked.
        cfg.search = SearchSpec(episodes=25, episode_steps=80, episode_subset=4096, size_budget=0.06)
        cfg.distill = DistillSpec(epochs=30, augment="crop-flip")
        # Three fold students of about a quarter of the final budget each: their mistakes are what the
        # offloader learns from, and five 10-epoch folds alone would take longer than the teacher.
        cfg.offload.folds, cfg.offload.fold_epochs = 3, 8
    if preset == "paper":
        cfg.teacher = TeacherSpec(arch=default_teacher_arch("paper", "resnet"), epochs=30,
                                  augment="crop-flip" if dataset in _FLIPPABLE else True)
        cfg.search = SearchSpec(episodes=100, rollouts=4, lr=1e-4, episode_steps=200, episode_subset=8192)
        cfg.distill = DistillSpec(epochs=60, augment="crop-flip" if dataset in _FLIPPABLE else True)
    if train_size < _SMALL_DATASET:
        # Keep roughly the optimiser steps a large dataset gets: digits has ~10 batches an epoch.
        scale = min(10, math.ceil(_SMALL_DATASET / max(train_size, 1)))
        cfg.teacher.epochs *= scale
        cfg.distill.epochs *= scale
        # Fold students at half the final budget: on digits the student's validation accuracy levels
        # off well before the last epoch, and the five of them then cost two final distillations.
        cfg.offload.fold_epochs = max(1, cfg.distill.epochs // 2)
    return cfg
