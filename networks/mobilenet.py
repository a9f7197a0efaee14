"""The mobile family: MobileNetV2 inverted residuals (Sandler et al. 2018) for 8x8 to 32x32 inputs.

Other modules reach it through the backbone seam (networks/family.py), never directly; its
compression edits are in networks/mobilenet_edits.py. Like the ResNet family, a network is built
entirely from a JSON-able ``arch`` dict, which is stored in checkpoints and is the single source of
truth for its shape::

    {"family": "mobilenet", "in_channels": 3, "num_classes": 10, "input_size": [32, 32],
     "stem": {"out": 32, "stride": 1},
     "stages": [{"blocks": [{"expand": 1, "mid": 32, "out": 16, "stride": 1, "residual": false},
                            {"expand": 6, "mid": 96, "out": 24, "stride": 1, "residual": false}, ...]},
                ... 4 stages],
     "head": 1280}

A block is Sandler et al.'s bottleneck (Table 1): [conv1x1 in->mid, BN, ReLU6] -> depthwise conv3x3
(groups = mid, stride s, padding 1), BN, ReLU6 -> conv1x1 mid->out, BN (linear: no ReLU after the
projection, §3.2), plus the input when ``residual``. Fields of a block:

* ``mid``: the hidden width the block really has (``expand · in`` for a full network, less after
  compression), stored explicitly so that compression can shrink it.
* ``expand``: Sandler et al.'s t the block was designed with. t = 1 means the block has no expansion
  conv (the first block of the paper's Table 2); its depthwise conv then reads the block's input
  channel for channel, so its ``mid`` must equal its input width. For t > 1 only ``mid`` matters.
* ``residual``: whether the block adds its input (needs stride 1 and in == out). It is stored rather
  than derived from the shapes: a sequence's first block (where the table changes c or s) never adds
  its input, even where width rounding happens to make it shape-preserving (torchvision's port would
  add one there), and a compressed student keeps exactly its teacher's residuals even where two of
  its channel spaces end up equally wide by chance. Residual chains are thus the paper's sequences.

The ``stages`` are groups of the paper's sequences by resolution, the seam's cut points (exits,
partitions, SP-KD): 16 and 24 (32x32 for a 32x32 input), 32 (16x16), 64 and 96 (8x8), 160 and 320
(4x4). This is the CIFAR variant of the common ports: a stride-1 stem and the 24-channel sequence at
stride 1. ``classify`` is conv1x1 (last -> head), BN, ReLU6, global average pool, Linear (no dropout:
not needed at CIFAR scale). Every 3x3 conv pads 1, so a stride s maps H to ceil(H / s).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from networks.arch_checks import check_common, positive_int
from networks.family import FamilyModule
from networks.staged import StagedModule

# Sandler et al. 2018, Table 2: (t, c, n, s) per sequence, plus the stage (resolution group) it belongs
# to. Strides follow the CIFAR ports: the 24-channel sequence keeps stride 1 (the paper's is 2).
SEQUENCES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 16, 1, 1, 0),
    (6, 24, 2, 1, 0),
    (6, 32, 3, 2, 1),
    (6, 64, 4, 2, 2),
    (6, 96, 3, 1, 2),
    (6, 160, 3, 2, 3),
    (6, 320, 1, 1, 3),
)
N_STAGES = 4
STEM_WIDTH = 32
HEAD_WIDTH = 1280
KERNEL = 3
"""The stem's and every depthwise conv's kernel; compression never changes it (mobilenet_edits.py)."""


def make_divisible(value: float, divisor: int = 8) -> int:
    """Sandler et al.'s channel rounding (their TF reference code): nearest multiple of ``divisor``,
    at least ``divisor``, and never more than 10% below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _multiplier(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def mobilenet_arch(*, in_channels: int = 3, num_classes: int = 10, input_size: tuple[int, int] = (32, 32),
                   width: float = 1.0, depth: float = 1.0, stem_stride: int = 1) -> dict[str, Any]:
    """The arch of a full CIFAR MobileNetV2 with width multiplier ``width`` and depth multiplier ``depth``.

    Widths are make_divisible(c · width) (stem too) and the head make_divisible(1280 · max(1, width)),
    as in Sandler et al.; a sequence of n blocks gets max(1, ceil(n · depth)). ``stem_stride`` 2 halves
    every map (ImageNet's MobileNetV2 strides its stem too): a quarter of the compute, which a CPU
    budget may need, for a coarser 2x2 last map at 32x32 input.
    """
    if stem_stride not in (1, 2) or isinstance(stem_stride, bool):
        raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
    width, depth = _multiplier(width, "width"), _multiplier(depth, "depth")
    stem = make_divisible(STEM_WIDTH * width)
    stages: list[dict[str, Any]] = [{"blocks": []} for _ in range(N_STAGES)]
    in_ch = stem
    for t, c, n, s, stage in SEQUENCES:
        out = make_divisible(c * width)
        for i in range(max(1, math.ceil(round(n * depth, 9)))):
            first = i == 0
            stages[stage]["blocks"].append({"expand": t, "mid": in_ch * t, "out": out, "stride": s if first else 1,
                                            "residual": not first})
            in_ch = out
    arch = {
        "family": "mobilenet",
        "in_channels": in_channels,
        "num_classes": num_classes,
        "input_size": [int(input_size[0]), int(input_size[1])],
        "stem": {"out": stem, "stride": stem_stride},
        "stages": stages,
        "head": make_divisible(HEAD_WIDTH * max(1.0, width)),
    }
    validate_arch(arch)
    return arch


@dataclass(frozen=True)
class BlockIO:
    """One block as the network sees it: its arch fields plus the input width it reads."""

    stage: int
    index: int
    """The block's position inside its stage (``stages[stage][index]``)."""
    in_ch: int
    mid: int
    out: int
    stride: int
    residual: bool
    expands: bool
    """Whether the block has an expansion conv (``expand`` > 1)."""


def blocks_of(arch: dict[str, Any]) -> list[BlockIO]:
    """Every block of ``arch`` in forward order (not validated: validate_arch calls this)."""
    blocks: list[BlockIO] = []
    in_ch = arch["stem"]["out"]
    for s, stage in enumerate(arch["stages"]):
        for b, spec in enumerate(stage["blocks"]):
            blocks.append(BlockIO(stage=s, index=b, in_ch=in_ch, mid=spec["mid"], out=spec["out"],
                                  stride=spec["stride"], residual=spec["residual"], expands=spec["expand"] > 1))
            in_ch = spec["out"]
    return blocks


def _field(mapping: object, key: str, where: str) -> object:
    if not isinstance(mapping, dict) or key not in mapping:
        raise ValueError(f"arch{where} is missing the field {key!r}")
    return mapping[key]


def validate_arch(arch: dict[str, Any]) -> None:
    """Raise ValueError naming the first malformed field of ``arch``; return None if it is usable."""
    check_common(arch, fields=("family", "in_channels", "num_classes", "input_size", "stem", "stages", "head"),
                 family="mobilenet")
    positive_int(_field(arch["stem"], "out", "['stem']"), "['stem']['out']")
    positive_int(_field(arch["stem"], "stride", "['stem']"), "['stem']['stride']")
    positive_int(arch["head"], "['head']")
    stages = arch["stages"]
    if not isinstance(stages, list) or not stages:
        raise ValueError(f"arch['stages'] must be a non-empty list, got {stages!r}")
    for s, stage in enumerate(stages):
        blocks = _field(stage, "blocks", f"['stages'][{s}]")
        if not isinstance(blocks, list) or not blocks:
            raise ValueError(f"arch['stages'][{s}]['blocks'] must be a non-empty list, got {blocks!r}")
        for b, block in enumerate(blocks):
            where = f"['stages'][{s}]['blocks'][{b}]"
            for key in ("expand", "mid", "out", "stride"):
                positive_int(_field(block, key, where), f"{where}[{key!r}]")
            if not isinstance(_field(block, "residual", where), bool):
                raise ValueError(f"arch{where}['residual'] must be a bool, got {block['residual']!r}")
    for io in blocks_of(arch):
        where = f"['stages'][{io.stage}]['blocks'][{io.index}]"
        if not io.expands and io.mid != io.in_ch:
            # No expansion conv: the depthwise conv reads the input channel for channel.
            raise ValueError(f"arch{where}['mid'] must equal the block's input width {io.in_ch} "
                             f"when 'expand' is 1, got {io.mid}")
        if io.residual and (io.stride != 1 or io.in_ch != io.out):
            raise ValueError(f"arch{where}['residual'] needs stride 1 and in == out, got stride {io.stride}, "
                             f"{io.in_ch} -> {io.out} channels")


def _conv_bn(in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, groups: int = 1,
             relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if relu:
        # ReLU6 for its robustness in low-precision arithmetic (Sandler et al. §4, after Howard et al. 2017).
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """Sandler et al.'s bottleneck: expand (1x1) -> depthwise (3x3, stride) -> linear projection (1x1)."""

    def __init__(self, io: BlockIO) -> None:
        super().__init__()
        self.expand = _conv_bn(io.in_ch, io.mid, 1) if io.expands else None
        self.dw = _conv_bn(io.mid, io.mid, KERNEL, stride=io.stride, groups=io.mid)
        # No ReLU after the projection: the linear bottleneck of §3.2 keeps the low-dimensional manifold.
        self.project = _conv_bn(io.mid, io.out, 1, relu=False)
        self.residual = io.residual

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.expand is None else self.expand(x)  # (B, mid, H, W)
        h = self.project(self.dw(h))  # (B, out, H / s, W / s)
        return h + x if self.residual else h


class MobileNet(StagedModule):
    """A MobileNetV2 whose every shape comes from ``arch`` (kept, deep-copied, as ``self.arch``)."""

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        validate_arch(arch)
        self.arch: dict[str, Any] = copy.deepcopy(arch)
        self.stem = _conv_bn(arch["in_channels"], arch["stem"]["out"], KERNEL, stride=arch["stem"]["stride"])
        stages: list[list[nn.Module]] = [[] for _ in arch["stages"]]
        for io in blocks_of(arch):
            stages[io.stage].append(InvertedResidual(io))
        self.stages = nn.ModuleList(nn.Sequential(*blocks) for blocks in stages)
        self.head = _conv_bn(arch["stages"][-1]["blocks"][-1]["out"], arch["head"], 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(arch["head"], arch["num_classes"])
        self._init_weights()

    def _init_weights(self) -> None:
        # As the reference implementations: He (fan_out) convs, identity BN, small-normal classifier.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def classify(self, h: Tensor) -> Tensor:
        """Last stage output (B, C, H, W) -> logits (B, K)."""
        h = self.head(h)  # (B, head, H, W)
        return self.fc(torch.flatten(self.pool(h), 1))



def param_count(arch: dict[str, Any]) -> int:
    """Trainable parameters from ``arch`` alone (convs have no bias; BN has 2 per channel)."""
    validate_arch(arch)
    stem = arch["stem"]["out"]
    total = arch["in_channels"] * stem * KERNEL**2 + 2 * stem
    for io in blocks_of(arch):
        if io.expands:
            total += io.in_ch * io.mid + 2 * io.mid
        total += io.mid * KERNEL**2 + 2 * io.mid  # depthwise: one 3x3 filter per channel
        total += io.mid * io.out + 2 * io.out
    last, head, k = arch["stages"][-1]["blocks"][-1]["out"], arch["head"], arch["num_classes"]
    return total + last * head + 2 * head + head * k + k


def stage_shapes(arch: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(C, H, W) of each stage's output: 3x3 convs pad 1, so a stride s maps H to ceil(H / s)."""
    h, w = arch["input_size"]
    s = arch["stem"]["stride"]
    h, w = -(-h // s), -(-w // s)
    shapes = []
    for stage in arch["stages"]:
        for block in stage["blocks"]:
            s = block["stride"]
            h, w = -(-h // s), -(-w // s)
        shapes.append((stage["blocks"][-1]["out"], h, w))
    return shapes


def _default_arch(*, in_channels: int, num_classes: int, input_size: tuple[int, int], width: float = 1.0,
                  depth: float = 1.0, stem_stride: int = 1) -> dict[str, Any]:
    return mobilenet_arch(in_channels=in_channels, num_classes=num_classes, input_size=input_size, width=width,
                          depth=depth, stem_stride=stem_stride)


def cut_points(arch: dict[str, Any]) -> list[tuple[int, int, int]]:
    validate_arch(arch)
    return stage_shapes(arch)


def describe(arch: dict[str, Any]) -> list[dict[str, Any]]:
    validate_arch(arch)
    rows = [{"stage": "stem", "layers": 1, "width": arch["stem"]["out"],
             "detail": f"conv{KERNEL}x{KERNEL} stride {arch['stem']['stride']}"}]
    for i, stage in enumerate(arch["stages"], start=1):
        mids = ", ".join(f"{b['mid']}->{b['out']}" for b in stage["blocks"])
        rows.append({"stage": str(i), "layers": len(stage["blocks"]), "width": stage["blocks"][-1]["out"],
                     "detail": f"mid->out widths {mids}"})
    rows.append({"stage": "head", "layers": 1, "width": arch["head"],
                 "detail": f"conv1x1, pool, fc -> {arch['num_classes']}"})
    return rows


FAMILY = FamilyModule(name="mobilenet", default_arch=_default_arch, validate=validate_arch, build=MobileNet,
                      param_count=param_count, cut_points=cut_points, describe=describe,
                      edits="networks.mobilenet_edits")
