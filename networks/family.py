"""The backbone seam: every model family behind one small interface, found by the name in its arch dict.

A family (ResNet, AlexNet, a MobileNetV2-style mobile net) is one module that defines a ``Family`` and
is listed once in ``_FAMILY_MODULES`` below. Everything outside that module (checkpoints, the RL
compression, distillation, the split builder, the variant builder, the tables) reaches a network only
through these functions, after timm's registry and ``feature_info`` (STYLE.md: a family declares what
others need from it and nothing else reads its internals):

    arch = default_arch("alexnet", in_channels=3, num_classes=10, input_size=(32, 32), width=0.5)
    model = build_model(arch)                     # a StagedNet: stem -> stages -> classify
    model_bytes(arch)                             # float32 parameter bytes, from the arch alone
    cut_points(arch)                              # [(C, H, W) after stage 1, 2, ...]: exits and partitions
    student = shrink(teacher, actions)            # the RL compression's layer edits (eqs. 2-4)

Every built network is a ``StagedNet``: ``stem`` then ``stages`` (an ``nn.ModuleList``) then
``classify``; ``forward_features`` returns the logits and every stage's output (what SP-KD matches and
where a network can be cut). An arch dict names its family in ``arch["family"]``; arch dicts written
before families existed have none and are ResNets.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from torch import Tensor, nn

DEFAULT_FAMILY = "resnet"
"""The family of an arch dict with no ``family`` field (every arch written before the seam)."""

# One line per family: its name and the module that defines ``FAMILY``. Imported on first use, so
# listing a family costs nothing until an arch of it is built.
_FAMILY_MODULES: dict[str, str] = {
    "resnet": "networks.resnet",
    "alexnet": "networks.alexnet",
    "mobilenet": "networks.mobilenet",
}


class FamilyError(ValueError):
    """An arch names no known family, or a family cannot do what was asked of it."""


@runtime_checkable
class StagedNet(Protocol):
    """What every family's network is: stem -> stages -> classify, rebuilt from its ``arch``."""

    arch: dict[str, Any]
    stem: nn.Module
    stages: nn.ModuleList

    def classify(self, h: Tensor) -> Tensor:
        """The last stage's output (B, C, H, W) -> logits (B, K)."""
        ...

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits (B, K) and every stage's output, in order."""
        ...

    def __call__(self, x: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class LayerInfo:
    """One layer the RL compression can act on: a name and its eq. (2) state before normalisation."""

    name: str
    kind: float
    """eq. (2)'s l, the layer type coded in [0, 1]."""
    kernel: int
    stride: int
    padding: int
    out_channels: int


class Family(Protocol):
    """A model family: arch dicts in, networks and facts about them out."""

    name: str

    def default_arch(self, *, in_channels: int, num_classes: int, input_size: tuple[int, int],
                     **options: Any) -> dict[str, Any]:
        """The arch dict of a full-size network of this family; ``options`` are the family's own knobs."""
        ...

    def validate(self, arch: dict[str, Any]) -> None:
        """Raise ValueError naming the first malformed field of ``arch``."""
        ...

    def build(self, arch: dict[str, Any]) -> StagedNet:
        """A freshly initialised network of ``arch``."""
        ...

    def param_count(self, arch: dict[str, Any]) -> int:
        """Trainable parameters, from ``arch`` alone."""
        ...

    def cut_points(self, arch: dict[str, Any]) -> list[tuple[int, int, int]]:
        """(C, H, W) of each stage's output: where exits attach and where the network can be split."""
        ...

    def describe(self, arch: dict[str, Any]) -> list[dict[str, Any]]:
        """One row per stem/stage for the architecture table: ``{"stage", "layers", "width", "detail"}``."""
        ...

    def prunable_layers(self, arch: dict[str, Any]) -> list[LayerInfo]:
        """The layers the RL policy emits one action for, in its order (Zhang et al. eq. 2)."""
        ...

    def derive_arch(self, arch: dict[str, Any], actions: Sequence[float]) -> dict[str, Any]:
        """The student's arch for one action in Φ per prunable layer (eqs. 3-4); ``arch`` untouched."""
        ...

    def shrink(self, teacher: StagedNet, actions: Sequence[float], *, inherit: bool) -> StagedNet:
        """The student of ``derive_arch``, started from the teacher's kept weights when ``inherit``."""
        ...


@dataclass(frozen=True)
class FamilyModule:
    """A ``Family`` assembled from its module's functions: what every family module sets as ``FAMILY``.

    The compression edits live in a module of their own (``edits``: ``layer_infos(arch)``,
    ``derive_arch(arch, actions)``, ``shrink(teacher, actions, *, inherit)``), imported on first use.
    """

    name: str
    default_arch: Callable[..., dict[str, Any]]
    """keyword-only: in_channels, num_classes, input_size, then the family's own knobs (no **kwargs)"""
    validate: Callable[[dict[str, Any]], None]
    build: Callable[[dict[str, Any]], Any]
    param_count: Callable[[dict[str, Any]], int]
    cut_points: Callable[[dict[str, Any]], list[tuple[int, int, int]]]
    describe: Callable[[dict[str, Any]], list[dict[str, Any]]]
    edits: str
    """the module holding the family's compression edits"""

    def _edits(self) -> Any:
        return importlib.import_module(self.edits)

    def prunable_layers(self, arch: dict[str, Any]) -> list[LayerInfo]:
        return self._edits().layer_infos(arch)

    def derive_arch(self, arch: dict[str, Any], actions: Sequence[float]) -> dict[str, Any]:
        return self._edits().derive_arch(arch, actions)

    def shrink(self, teacher: Any, actions: Sequence[float], *, inherit: bool) -> Any:
        return self._edits().shrink(teacher, actions, inherit=inherit)


def family_name(arch: dict[str, Any]) -> str:
    if not isinstance(arch, dict):
        raise FamilyError(f"arch must be a dict, got {type(arch).__name__}")
    return str(arch.get("family", DEFAULT_FAMILY))


def families() -> tuple[str, ...]:
    """The names of every registered family."""
    return tuple(_FAMILY_MODULES)


def get_family(name: str) -> Family:
    """The family registered as ``name``."""
    try:
        module = _FAMILY_MODULES[name]
    except KeyError:
        raise FamilyError(f"unknown model family {name!r}; known: {', '.join(_FAMILY_MODULES)}") from None
    return importlib.import_module(module).FAMILY


def family_of(arch: dict[str, Any]) -> Family:
    """The family that built (or builds) ``arch``."""
    return get_family(family_name(arch))


def default_arch(family: str, *, in_channels: int, num_classes: int, input_size: tuple[int, int],
                 **options: Any) -> dict[str, Any]:
    """A full-size arch of ``family``; unknown ``options`` are an error naming them."""
    fam = get_family(family)
    params = inspect.signature(fam.default_arch).parameters
    known = sorted(n for n, p in params.items() if p.kind is p.KEYWORD_ONLY
                   and n not in ("in_channels", "num_classes", "input_size"))
    unknown = sorted(set(options) - set(known))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise FamilyError(f"model family {family!r} has no option(s) {', '.join(unknown)}; "
                          f"its options: {', '.join(known) or 'none'}")
    return fam.default_arch(in_channels=in_channels, num_classes=num_classes, input_size=input_size, **options)


def build_model(arch: dict[str, Any]) -> nn.Module:
    """Any teacher or student of any family, rebuilt from its arch dict (weights freshly initialised)."""
    return family_of(arch).build(arch)  # type: ignore[return-value]


def validate(arch: dict[str, Any]) -> None:
    family_of(arch).validate(arch)


def param_count(arch: dict[str, Any]) -> int:
    return family_of(arch).param_count(arch)


def model_bytes(arch: dict[str, Any]) -> int:
    """float32 bytes of the parameters: the paper's size measure (Table I: 43.7 MB for ResNet-18)."""
    return 4 * param_count(arch)


def cut_points(arch: dict[str, Any]) -> list[tuple[int, int, int]]:
    return family_of(arch).cut_points(arch)


def input_shape(arch: dict[str, Any]) -> tuple[int, int, int]:
    """(C, H, W) a network of ``arch`` takes: every family records these two fields."""
    h, w = arch["input_size"]
    return int(arch["in_channels"]), int(h), int(w)


def prunable_layers(arch: dict[str, Any]) -> list[LayerInfo]:
    return family_of(arch).prunable_layers(arch)


def layer_states(arch: dict[str, Any]) -> np.ndarray:
    """(T, 5) float32 eq. (2) states (l, k, d, p, o); k, d, p, o divided by their column max."""
    layers = prunable_layers(arch)
    states = np.asarray([(L.kind, L.kernel, L.stride, L.padding, L.out_channels) for L in layers], dtype=np.float64)
    col_max = states[:, 1:].max(axis=0)
    # p is 0 everywhere when every kernel is 1x1; leave such a column at 0 rather than divide by 0.
    states[:, 1:] /= np.where(col_max > 0, col_max, 1.0)
    return states.astype(np.float32)


def derive_arch(arch: dict[str, Any], actions: Sequence[float]) -> dict[str, Any]:
    return family_of(arch).derive_arch(arch, actions)


def shrink(teacher: nn.Module, actions: Sequence[float], *, inherit: bool = True) -> nn.Module:
    arch: dict[str, Any] = teacher.arch  # type: ignore[assignment]
    return family_of(arch).shrink(teacher, actions, inherit=inherit)  # type: ignore[arg-type,return-value]


def describe(arch: dict[str, Any]) -> list[dict[str, Any]]:
    return family_of(arch).describe(arch)
