"""The AlexNet family, sized for 32x32 inputs, built entirely from a JSON-able ``arch`` dict.

Krizhevsky et al. (2012) is five convs and three fully connected layers; the device-edge
co-inference papers shrink it to CIFAR's 32x32 (Teerapittayanon et al., BranchyNet 2016; Li et al.,
Edgent 2019), and that is the shape here. Other modules reach it through the backbone seam
(networks/family.py), never directly; its compression edits are in networks/alexnet_edits.py.
Layout (all ints unless noted)::

    {"family": "alexnet", "in_channels": 3, "num_classes": 10, "input_size": [32, 32],
     "convs": [{"out": 64, "kernel": 5, "pool": true}, {"out": 192, "kernel": 5, "pool": true},
               {"out": 384, "kernel": 3, "pool": false}, {"out": 256, "kernel": 3, "pool": false},
               {"out": 256, "kernel": 3, "pool": true}],
     "fc": [1024, 512], "dropout": 0.5}

Each conv is one stage: Conv2d(k, stride 1, padding k // 2, no bias) -> BN -> ReLU, then a 2x2
max-pool with stride 2 when ``pool``. BN stands in for the original's local response
normalisation (as in the CIFAR AlexNets of BranchyNet and Edgent), which also makes a conv bias
redundant. The pools use ``ceil_mode``, so an odd side keeps its last row (28 -> 14 -> 7 -> 4,
30 -> 15 -> 8 -> 4). ``classify`` flattens the last map and runs, per ``fc`` width,
Linear -> BN -> ReLU -> Dropout, then a final Linear to the classes. There is no stem: every conv
is a stage, so exits and partitions can sit after any of them.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn

from networks.arch_checks import check_common, odd_kernel, positive_int
from networks.family import FamilyModule
from networks.staged import StagedModule, he_init

_FIELDS: tuple[str, ...] = ("family", "in_channels", "num_classes", "input_size", "convs", "fc", "dropout")
_CONV_FIELDS: frozenset[str] = frozenset({"out", "kernel", "pool"})
_POOL = 2  # every pool is 2x2 with stride 2

# The full-size network (module docstring): conv (out, kernel, pool), then hidden fc widths.
_CONVS: tuple[tuple[int, int, bool], ...] = ((64, 5, True), (192, 5, True), (384, 3, False), (256, 3, False),
                                             (256, 3, True))
_FC: tuple[int, ...] = (1024, 512)
_DROPOUT = 0.5


def _scale(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def alexnet_arch(*, in_channels: int = 3, num_classes: int = 10, input_size: tuple[int, int] = (32, 32),
                 width: float = 1.0) -> dict[str, Any]:
    """The arch dict of the 32x32 AlexNet with every conv and fc width scaled by ``width``."""
    if isinstance(width, bool) or not isinstance(width, int | float) or not (math.isfinite(width) and width > 0):
        raise ValueError(f"width must be a positive finite number, got {width!r}")
    arch = {
        "family": "alexnet",
        "in_channels": in_channels,
        "num_classes": num_classes,
        "input_size": [int(input_size[0]), int(input_size[1])],
        "convs": [{"out": _scale(out, width), "kernel": k, "pool": pool} for out, k, pool in _CONVS],
        "fc": [_scale(w, width) for w in _FC],
        "dropout": _DROPOUT,
    }
    validate_arch(arch)
    return arch


def validate_arch(arch: dict[str, Any]) -> None:
    """Raise ValueError naming the first malformed field of ``arch``; return None if it is usable."""
    h, w = check_common(arch, fields=_FIELDS, family="alexnet")
    size = arch["input_size"]
    convs = arch["convs"]
    if not isinstance(convs, list) or not convs:
        raise ValueError(f"arch['convs'] must be a non-empty list, got {convs!r}")
    for i, conv in enumerate(convs):
        where = f"['convs'][{i}]"
        if not isinstance(conv, dict):
            raise ValueError(f"arch{where} must be a dict, got {conv!r}")
        if conv.keys() != _CONV_FIELDS:
            missing, unknown = sorted(_CONV_FIELDS - conv.keys()), sorted(conv.keys() - _CONV_FIELDS)
            raise ValueError(f"arch{where} must have exactly {sorted(_CONV_FIELDS)}; "
                             f"missing {missing}, unknown {unknown}")
        positive_int(conv["out"], f"{where}['out']")
        odd_kernel(conv["kernel"], f"{where}['kernel']")
        if not isinstance(conv["pool"], bool):
            raise ValueError(f"arch{where}['pool'] must be a bool, got {conv['pool']!r}")
        if conv["pool"]:
            # ceil_mode never empties a map, but a window hanging off a 1-pixel side pools nothing:
            # with the usual floor mode this map would have no pixels left.
            if h < _POOL or w < _POOL:
                raise ValueError(f"arch{where}['pool'] pools a {h}x{w} map; the input_size "
                                 f"{list(size)} is too small for this many 2x2 pools")
            h, w = -(-h // _POOL), -(-w // _POOL)
    fc = arch["fc"]
    if not isinstance(fc, list):
        raise ValueError(f"arch['fc'] must be a list of hidden widths, got {fc!r}")
    for j, width in enumerate(fc):
        positive_int(width, f"['fc'][{j}]")
    p = arch["dropout"]
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p < 1.0:
        raise ValueError(f"arch['dropout'] must be a probability in [0, 1), got {p!r}")


def stage_shapes(arch: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(C, H, W) of each stage's output: convs pad k // 2, so only the ceil-mode pools halve the map."""
    h, w = arch["input_size"]
    shapes = []
    for conv in arch["convs"]:
        if conv["pool"]:
            h, w = -(-h // _POOL), -(-w // _POOL)
        shapes.append((conv["out"], h, w))
    return shapes


def flat_features(arch: dict[str, Any]) -> int:
    """Inputs of the first fc layer: the last stage's map, flattened as (C, H, W)."""
    c, h, w = stage_shapes(arch)[-1]
    return c * h * w


class AlexNet(StagedModule):
    """A 32x32 AlexNet whose every shape comes from ``arch`` (kept, deep-copied, as ``self.arch``).

    Module names the compression edits address: ``stages.i.conv`` / ``stages.i.bn`` for conv i,
    ``hidden.j.fc`` / ``hidden.j.bn`` for hidden fc j, and ``fc`` for the class layer.
    """

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        validate_arch(arch)
        self.arch: dict[str, Any] = copy.deepcopy(arch)
        self.stem = nn.Identity()  # the StagedNet contract; AlexNet's first conv is already a stage
        stages = []
        in_ch = arch["in_channels"]
        for conv in arch["convs"]:
            out, k = conv["out"], conv["kernel"]
            layers: OrderedDict[str, nn.Module] = OrderedDict(
                conv=nn.Conv2d(in_ch, out, k, stride=1, padding=k // 2, bias=False),
                bn=nn.BatchNorm2d(out),
                relu=nn.ReLU(inplace=True),
            )
            if conv["pool"]:
                layers["pool"] = nn.MaxPool2d(_POOL, _POOL, ceil_mode=True)
            stages.append(nn.Sequential(layers))
            in_ch = out
        self.stages = nn.ModuleList(stages)
        hidden = []
        in_features = flat_features(arch)
        for width in arch["fc"]:
            # No bias: the BN right after it has its own shift (as the convs).
            hidden.append(nn.Sequential(OrderedDict(
                fc=nn.Linear(in_features, width, bias=False),
                bn=nn.BatchNorm1d(width),
                relu=nn.ReLU(inplace=True),
                drop=nn.Dropout(arch["dropout"]),
            )))
            in_features = width
        self.hidden = nn.ModuleList(hidden)
        self.fc = nn.Linear(in_features, arch["num_classes"])
        he_init(self, keep=(self.fc,))

    def classify(self, h: Tensor) -> Tensor:
        """Last stage output (B, C, H, W) -> logits (B, K)."""
        z = torch.flatten(h, 1)  # (B, C*H*W), column c*H*W + i is pixel i of channel c
        for block in self.hidden:
            z = block(z)  # (B, width_j)
        return self.fc(z)



def param_count(arch: dict[str, Any]) -> int:
    """Trainable parameters from ``arch`` alone (no conv or hidden fc bias; BN has 2 per channel)."""
    validate_arch(arch)
    total, in_ch = 0, arch["in_channels"]
    for conv in arch["convs"]:
        total += in_ch * conv["out"] * conv["kernel"] ** 2 + 2 * conv["out"]
        in_ch = conv["out"]
    in_features = flat_features(arch)
    for width in arch["fc"]:
        total += in_features * width + 2 * width
        in_features = width
    return total + in_features * arch["num_classes"] + arch["num_classes"]


def _default_arch(*, in_channels: int, num_classes: int, input_size: tuple[int, int],
                  width: float = 1.0) -> dict[str, Any]:
    return alexnet_arch(in_channels=in_channels, num_classes=num_classes, input_size=input_size, width=width)


def cut_points(arch: dict[str, Any]) -> list[tuple[int, int, int]]:
    validate_arch(arch)
    return stage_shapes(arch)


def describe(arch: dict[str, Any]) -> list[dict[str, Any]]:
    validate_arch(arch)
    rows: list[dict[str, Any]] = [
        {"stage": str(i), "layers": 1, "width": conv["out"],
         "detail": f"k={conv['kernel']}" + (", pool" if conv["pool"] else "")}
        for i, conv in enumerate(arch["convs"], start=1)
    ]
    # The hidden fc layers (the class layer is not counted, as ResNet's table leaves out its fc).
    fc = arch["fc"]
    rows.append({"stage": "fc", "layers": len(fc), "width": fc[0] if fc else arch["num_classes"],
                 "detail": "-".join(str(w) for w in fc) or "none"})
    return rows


FAMILY = FamilyModule(name="alexnet", default_arch=_default_arch, validate=validate_arch, build=AlexNet,
                      param_count=param_count, cut_points=cut_points, describe=describe,
                      edits="networks.alexnet_edits")
