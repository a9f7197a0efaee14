"""Build presets: one typed config per `edgecloud build` run, derived from a preset and a dataset.

`fast` is sized for a 2-core CPU: a width-16 ResNet-18 teacher, a short RL search and a few epochs
of distillation. `paper` uses the paper's scale (ResNet-18 at width 64, long search and
distillation) and is meant for a GPU (`--device cuda`), though it runs anywhere.

Each section of `BuildConfig` is the settings class of the stage it feeds, declared once there:
`teacher` is compression.teacher.TrainConfig (plus the family and its knobs), `search`
compression.search.SearchConfig, `distill` compression.distill.DistillConfig (the final distillation
and the cross-fit students), `offload` offloading.train.OffloaderConfig (plus how its fit set is
made). `device`, `precision` and `seed` are set once, at the top: every section takes its copy from
there. A run's settings come in layers (shared/run_config.py): the preset, `--config FILE`,
`EDGECLOUD_BUILD__...` variables, flags; `reports/build.json` records the result.
"""

from __future__ import annotations

import math
from typing import Any, Self

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from compression.distill import DistillConfig
from compression.search import SearchConfig
from compression.teacher import TrainConfig
from offloading.train import OffloaderConfig
from shared.run_config import ConfigModel, Layer, Scope, merged, resolve, value_layer

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


class TeacherSpec(TrainConfig):
    """The teacher's training (compression.teacher.TrainConfig) and what network it trains."""

    family: str = "resnet"
    """model family of the teacher (networks/family.py): resnet, alexnet or mobilenet; the student is
    compressed from it, so it shares the family."""
    arch: dict[str, Any] = Field(default_factory=lambda: dict(_FAST_ARCH["resnet"]))
    """the family's own knobs (resnet: depth, width; alexnet and mobilenet: width, mobilenet also depth
    multipliers); setting another family without these takes that family's preset knobs."""
    epochs: int = 4
    """teacher training epochs (a preset scales them up for small datasets)."""


class OffloadSpec(OffloaderConfig):
    """The offloader (offloading.train.OffloaderConfig) and where its "student wrong" labels come from."""

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

    @model_validator(mode="after")
    def _check_fit_set(self) -> Self:
        if self.fit_source not in FIT_SOURCES:
            raise ValueError(f"unknown offload fit_source {self.fit_source!r}; choose one of {FIT_SOURCES}")
        if self.folds < 2:
            raise ValueError(f"offload folds must be >= 2, got {self.folds}")
        if self.fold_epochs is not None and self.fold_epochs < 1:
            raise ValueError(f"offload fold_epochs must be None or >= 1, got {self.fold_epochs}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"offload holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        return self


BUILD_DEFAULTS: dict[str, dict[str, Any]] = {
    # The paper's 1e-4 barely moves the policy in a short CPU search; 10 updates for a bare config.
    "search": {"episodes": 10, "lr": 1e-2},
    # Tung & Mori's CIFAR value of the SP-KD weight γ, 3000 (the search's short episodes keep it), makes
    # γ·L_SP about 30 times the cross-entropy on our inherited students; 300 gave higher validation
    # accuracy on digits (5 seeds) and MNIST (docs/results.md, "SP-KD weight").
    "distill": {"epochs": 6, "gamma": 300.0},
}
"""Where the build's sections default otherwise than their settings classes: under every section given."""
SHARED: dict[str, tuple[str, ...]] = {"teacher": ("device", "precision", "seed"),
                                      "search": ("device", "precision", "seed"),
                                      "distill": ("device", "precision", "seed"),
                                      "offload": ("seed",)}
"""The top-level settings each section takes its own copy of."""


class BuildConfig(ConfigModel):
    """Everything one `edgecloud build` uses (reports/build.json)."""

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
    teacher: TeacherSpec = Field(default_factory=TeacherSpec)
    """the teacher: its family and training."""
    search: SearchConfig = Field(default_factory=lambda: SearchConfig(**BUILD_DEFAULTS["search"]))
    """the RL compression search (Algorithm 1)."""
    distill: DistillConfig = Field(default_factory=lambda: DistillConfig(**BUILD_DEFAULTS["distill"]))
    """the best student's final distillation; the cross-fit students distil alike (offload.fold_epochs)."""
    offload: OffloadSpec = Field(default_factory=OffloadSpec)
    """the SL offloader (Algorithm 2), its operating point and fusion."""

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, raw: Any) -> Any:
        """Old key names upgraded; each section over the build's defaults, with the top level's shared settings."""
        if not isinstance(raw, dict):
            return raw
        raw = upgrade(raw)
        top = {name: raw.get(name, cls.model_fields[name].default) for name in ("device", "precision", "seed")}
        out = dict(raw)
        for section, shared in SHARED.items():
            given = raw.get(section, {})
            if isinstance(given, ConfigModel):  # a section built in code: its copies are the top level's
                given = given.model_dump(exclude_unset=True, exclude=set(shared))
            if not isinstance(given, dict):
                continue  # the field's own validation names the bad value
            for name in shared:
                if name in given and given[name] != top[name]:
                    raise ValueError(f"{section}.{name} {given[name]!r} contradicts {name} {top[name]!r}: "
                                     f"{name} is set once, at the top level, and every section takes it from there")
            out[section] = {**BUILD_DEFAULTS.get(section, {}), **given, **{name: top[name] for name in shared}}
        return out

    @model_serializer(mode="wrap")
    def _without_copies(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The sections' copies of the top-level settings are derived, so they are not written.
        data = handler(self)
        for section, shared in SHARED.items():
            if isinstance(data.get(section), dict):
                for name in shared:
                    data[section].pop(name, None)
        return data

    def to_dict(self) -> dict[str, Any]:
        """The settings as reports/build.json records them (and a `--config` file takes them)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BuildConfig:
        """Settings from a build.json, this version's or an older one's."""
        return cls.model_validate(raw)


def upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """Build settings with the key names of older build.json files translated."""
    out = dict(raw)
    if isinstance(raw.get("teacher"), dict):
        out["teacher"] = _teacher_settings(raw["teacher"])
    if isinstance(raw.get("offload"), dict):
        out["offload"] = _offload_settings(raw["offload"])
    return out


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


def prepare_layer(values: dict[str, Any], below: dict[str, Any]) -> dict[str, Any]:
    """A layer of build settings over the ones below it: old key names translated, and a teacher of
    another family given without its knobs takes that family's preset knobs (knobs belong to a family)."""
    values = upgrade(values)
    teacher = values.get("teacher")
    if isinstance(teacher, dict) and "family" in teacher and "arch" not in teacher:
        current = below.get("teacher", {}).get("family", TeacherSpec.model_fields["family"].default)
        if teacher["family"] != current:
            preset = values.get("preset", below.get("preset", BuildConfig.model_fields["preset"].default))
            values["teacher"] = {**teacher, "arch": default_teacher_arch(preset, teacher["family"])}
    return values


def resolve_build(layers: list[Layer], *, base: BuildConfig | None = None) -> BuildConfig:
    """`layers` (lowest first) over `base` (the defaults without one); ConfigError naming the key and layer."""
    below = [value_layer(base.to_dict())] if base is not None else []
    return resolve(BuildConfig, Scope.BUILD, [*below, *layers], prepare=prepare_layer)


def layered_settings(layers: list[Layer]) -> dict[str, Any]:
    """What `layers` set (merged, each checked), before any preset: e.g. the dataset to size a preset by."""
    return merged(BuildConfig, Scope.BUILD, layers, prepare=prepare_layer)[0]


def apply_overrides(cfg: BuildConfig, overrides: dict[str, Any], *, source: str = "") -> BuildConfig:
    """`cfg` with `overrides` (a partial BuildConfig dict, as in reports/build.json) merged in.

    Unknown keys are an error that names them, so a typo in a config file cannot be silently ignored.
    """
    return resolve_build([value_layer(overrides, source)], base=cfg)


def make_config(preset: str, *, dataset: str, train_size: int, seed: int = 0, device: str = "auto") -> BuildConfig:
    """The preset's settings, with epochs scaled for small datasets."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    # Each section given here replaces the default one whole (over BUILD_DEFAULTS).
    s: dict[str, dict[str, Any]] = {"teacher": {}, "search": {}, "distill": {}, "offload": {}}
    if preset == "fast" and train_size >= _SMALL_DATASET:
        # MNIST-sized: a width-32 teacher leaves a 1%-sized student enough channels to stay accurate.
        s["teacher"] = {"arch": {"depth": 18, "width": 32}, "epochs": 3}
        # The paper's MNIST student is 0.93% of its teacher (407 KB from 43.7 MB); a 20-episode CPU
        # search does not get there from the reward alone (digits: best C 0.92 after 30 episodes).
        s["search"] = {"episodes": 20, "episode_steps": 40, "size_budget": 0.01}
        # Half the 2% student's bytes needs more steps to stay within 0.3 points of the teacher: 8
        # epochs left the 0.96% student 0.33 points below it; 14 with random shifts, 0.17 (validation
        # 99.03% -> 99.23%; docs/results.md, "MNIST student: longer, augmented distillation").
        s["distill"] = {"epochs": 14, "augment": True}
        # Five fold students of 2 epochs: together less than one more final distillation.
        s["offload"] = {"fold_epochs": 2}
    elif preset == "fast":
        s["search"] = {"episodes": 30, "size_budget": 0.05}
    if preset == "fast" and dataset in _FLIPPABLE:
        # CIFAR-10 on the 2-core CPU (bf16 autocast: ~1.4 min an epoch at width 32): a width-32 ResNet-18
        # trained 30 one-cycle epochs with crop and flip. Width 16 reached only 86.9% in 30 epochs, below
        # the paper's 88.7-89.3% teacher (docs/results.md, "CIFAR-10 fast preset").
        s["teacher"] = {"arch": {"depth": 18, "width": 32}, "epochs": 30, "augment": "crop-flip"}
        # The paper's CIFAR-10 student is 675 KB (Zhang et al. Table I): 0.06 of this 11.2 MB teacher's bytes
        # is at most 671 KB. Natural-image students need more SP-KD steps than digits' to be ranked.
        s["search"] = {"episodes": 25, "episode_steps": 80, "episode_subset": 4096, "size_budget": 0.06}
        s["distill"] = {"epochs": 30, "augment": "crop-flip"}
        # Three fold students of about a quarter of the final budget each: their mistakes are what the
        # offloader learns from, and five 10-epoch folds alone would take longer than the teacher.
        s["offload"] = {**s["offload"], "folds": 3, "fold_epochs": 8}
    if preset == "paper":
        s["teacher"] = {"arch": default_teacher_arch("paper", "resnet"), "epochs": 30,
                        "augment": "crop-flip" if dataset in _FLIPPABLE else True}
        s["search"] = {"episodes": 100, "rollouts": 4, "lr": 1e-4, "episode_steps": 200, "episode_subset": 8192}
        s["distill"] = {"epochs": 60, "augment": "crop-flip" if dataset in _FLIPPABLE else True}
    cfg = BuildConfig.model_validate({"dataset": dataset, "preset": preset, "seed": seed, "device": device, **s})
    if train_size < _SMALL_DATASET:
        # Keep roughly the optimiser steps a large dataset gets: digits has ~10 batches an epoch.
        scale = min(10, math.ceil(_SMALL_DATASET / max(train_size, 1)))
        cfg.teacher.epochs *= scale
        cfg.distill.epochs *= scale
        # Fold students at half the final budget: on digits the student's validation accuracy levels
        # off well before the last epoch, and the five of them then cost two final distillations.
        cfg.offload.fold_epochs = max(1, cfg.distill.epochs // 2)
    return cfg
