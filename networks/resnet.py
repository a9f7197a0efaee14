"""The ResNet family: CIFAR-style ResNet-18/34 (Zhang et al. §IV) built entirely from a JSON-able ``arch`` dict.

Other modules reach it through the backbone seam (networks/family.py), never directly; its
compression edits are in networks/resnet_edits.py.

The dict is the single source of truth for a network's shape: it is stored in every checkpoint and
in the bundle manifest, so any teacher or RL-compressed student is rebuilt by ``build_model(arch)``
with no code edits. Layout (all ints unless noted)::

    {"family": "resnet", "depth": 18, "in_channels": 1, "num_classes": 10, "input_size": [28, 28],
     "stem": {"out": 64, "kernel": 3},
     "stages": [{"width": 64, "stride": 1, "blocks": [{"mid": 64, "kernel1": 3, "kernel2": 3}, ...]},
                ... 4 stages]}

``depth`` names the family the blocks came from; a student keeps its teacher's depth even after
blocks are removed, so the real depth is read from ``stages``. Unlike the ImageNet ResNet, the stem
is a single 3x3 conv with stride 1 and no max-pool, which suits 8x8 to 32x32 inputs.
A block is conv1(in->mid, kernel1, stride s)-BN-ReLU-conv2(mid->width, kernel2)-BN, plus a shortcut
that is the identity when s == 1 and in == width, else a 1x1 conv with stride s and BN; then ReLU.
Every conv pads kernel // 2, so only the strides change spatial shapes.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from networks.arch_checks import check_common, odd_kernel, positive_int
from networks.family import FamilyModule
from networks.staged import StagedModule, he_init

# Blocks per stage for the two teachers of the paper (He et al. 2016, Table 1).
STAGE_BLOCKS: dict[int, tuple[int, ...]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
STAGE_STRIDES: tuple[int, ...] = (1, 2, 2, 2)


def resnet_arch(
    depth: int = 18,
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    width: int = 64,
    input_size: tuple[int, int] = (32, 32),
) -> dict[str, Any]:
    """The arch dict of a full CIFAR-style ResNet-``depth`` with stage widths w, 2w, 4w, 8w."""
    if depth not in STAGE_BLOCKS:
        raise ValueError(f"depth must be one of {sorted(STAGE_BLOCKS)}, got {depth!r}")
    stages = []
    for i, (n_blocks, stride) in enumerate(zip(STAGE_BLOCKS[depth], STAGE_STRIDES, strict=True)):
        stage_width = width * 2**i
        blocks = [{"mid": stage_width, "kernel1": 3, "kernel2": 3} for _ in range(n_blocks)]
        stages.append({"width": stage_width, "stride": stride, "blocks": blocks})
    arch = {
        "family": "resnet",
        "depth": depth,
        "in_channels": in_channels,
        "num_classes": num_classes,
        "input_size": [int(input_size[0]), int(input_size[1])],
        "stem": {"out": width, "kernel": 3},
        "stages": stages,
    }
    validate_arch(arch)
    return arch


def validate_arch(arch: dict[str, Any]) -> None:
    """Raise ValueError naming the first malformed field of ``arch``; return None if it is usable."""
    # No family check: an arch without "family" (written before the seam) is a ResNet.
    check_common(arch, fields=("depth", "in_channels", "num_classes", "input_size", "stem", "stages"))
    positive_int(arch["stem"].get("out"), "['stem']['out']")
    odd_kernel(arch["stem"].get("kernel"), "['stem']['kernel']")
    stages = arch["stages"]
    if not isinstance(stages, list) or not stages:
        raise ValueError(f"arch['stages'] must be a non-empty list, got {stages!r}")
    for s, stage in enumerate(stages):
        positive_int(stage.get("width"), f"['stages'][{s}]['width']")
        positive_int(stage.get("stride"), f"['stages'][{s}]['stride']")
        blocks = stage.get("blocks")
        if not isinstance(blocks, list) or not blocks:
            raise ValueError(f"arch['stages'][{s}]['blocks'] must be a non-empty list, got {blocks!r}")
        for b, block in enumerate(blocks):
            where = f"['stages'][{s}]['blocks'][{b}]"
            positive_int(block.get("mid"), f"{where}['mid']")
            odd_kernel(block.get("kernel1"), f"{where}['kernel1']")
            odd_kernel(block.get("kernel2"), f"{where}['kernel2']")


def block_io(arch: dict[str, Any]) -> list[list[tuple[int, int, int]]]:
    """Per stage, per block: (in_channels, stride, width) as the block sees them.

    Only a stage's first block strides and changes width; the others map width -> width with
    stride 1 and therefore always have an identity shortcut.
    """
    io: list[list[tuple[int, int, int]]] = []
    in_ch = arch["stem"]["out"]
    for stage in arch["stages"]:
        width = stage["width"]
        io.append([(in_ch if b == 0 else width, stage["stride"] if b == 0 else 1, width)
                   for b in range(len(stage["blocks"]))])
        in_ch = width
    return io


def has_conv_shortcut(in_ch: int, stride: int, width: int) -> bool:
    """The residual needs a projection exactly when the block changes resolution or width."""
    return stride != 1 or in_ch != width


class BasicBlock(nn.Module):
    """Two convs plus a residual: out = ReLU(BN(conv2(ReLU(BN(conv1(x))))) + shortcut(x))."""

    def __init__(self, in_ch: int, *, mid: int, width: int, stride: int, kernel1: int, kernel2: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, mid, kernel1, stride=stride, padding=kernel1 // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, width, kernel2, stride=1, padding=kernel2 // 2, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.shortcut: nn.Module
        if has_conv_shortcut(in_ch, stride, width):
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))  # (B, mid, H', W')
        out = self.bn2(self.conv2(out))  # (B, width, H', W')
        return torch.relu(out + self.shortcut(x))


class ResNet(StagedModule):
    """A ResNet whose every shape comes from ``arch`` (kept, deep-copied, as ``self.arch``)."""

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        validate_arch(arch)
        self.arch: dict[str, Any] = copy.deepcopy(arch)
        out, k = arch["stem"]["out"], arch["stem"]["kernel"]
        self.stem = nn.Sequential(
            nn.Conv2d(arch["in_channels"], out, k, padding=k // 2, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(inplace=True),
        )
        stages = []
        for stage, ios in zip(arch["stages"], block_io(arch), strict=True):
            blocks = [
                BasicBlock(in_ch, mid=spec["mid"], width=width, stride=stride,
                           kernel1=spec["kernel1"], kernel2=spec["kernel2"])
                for spec, (in_ch, stride, width) in zip(stage["blocks"], ios, strict=True)
            ]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(arch["stages"][-1]["width"], arch["num_classes"])
        he_init(self, keep=(self.fc,))

    def classify(self, h: Tensor) -> Tensor:
        """Last stage output (B, C, H, W) -> logits (B, K)."""
        return self.fc(torch.flatten(self.pool(h), 1))



def build_model(arch: dict[str, Any]) -> ResNet:
    """Rebuild any teacher or student from its arch dict (weights freshly initialised)."""
    return ResNet(arch)


def param_count(arch: dict[str, Any]) -> int:
    """Number of trainable parameters, computed from ``arch`` alone (convs have no bias; BN has 2/channel)."""
    validate_arch(arch)
    stem = arch["stem"]
    total = arch["in_channels"] * stem["out"] * stem["kernel"] ** 2 + 2 * stem["out"]
    for stage, ios in zip(arch["stages"], block_io(arch), strict=True):
        for spec, (in_ch, stride, width) in zip(stage["blocks"], ios, strict=True):
            mid = spec["mid"]
            total += in_ch * mid * spec["kernel1"] ** 2 + 2 * mid
            total += mid * width * spec["kernel2"] ** 2 + 2 * width
            if has_conv_shortcut(in_ch, stride, width):
                total += in_ch * width + 2 * width
    last = arch["stages"][-1]["width"]
    total += last * arch["num_classes"] + arch["num_classes"]
    return total


def model_bytes(arch: dict[str, Any]) -> int:
    """float32 bytes of the parameters: the paper's size measure (Table I: 43.7 MB for ResNet-18)."""
    return 4 * param_count(arch)


def stage_shapes(arch: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(C, H, W) of each stage's output: convs pad k // 2, so only strides change the map (ceil division)."""
    h, w = arch["input_size"]
    shapes = []
    for stage in arch["stages"]:
        s = stage["stride"]
        h, w = (h + s - 1) // s, (w + s - 1) // s
        shapes.append((stage["width"], h, w))
    return shapes


def _default_arch(*, in_channels: int, num_classes: int, input_size: tuple[int, int], depth: int = 18,
                  width: int = 64) -> dict[str, Any]:
    return resnet_arch(depth, in_channels=in_channels, num_classes=num_classes, width=width, input_size=input_size)


def cut_points(arch: dict[str, Any]) -> list[tuple[int, int, int]]:
    validate_arch(arch)
    return stage_shapes(arch)


def describe(arch: dict[str, Any]) -> list[dict[str, Any]]:
    """Table II's rows: the stem, then per stage its blocks, width and every block's mid width (kernels)."""
    rows = [{"stage": "stem", "layers": 1, "width": arch["stem"]["out"], "detail": f"k={arch['stem']['kernel']}"}]
    for i, stage in enumerate(arch["stages"], start=1):
        mids = ", ".join(f"{b['mid']}({b['kernel1']}/{b['kernel2']})" for b in stage["blocks"])
        rows.append({"stage": str(i), "layers": len(stage["blocks"]), "width": stage["width"],
                     "detail": f"mid widths (kernels) {mids}"})
    return rows


FAMILY = FamilyModule(name="resnet", default_arch=_default_arch, validate=validate_arch, build=ResNet,
                      param_count=param_count, cut_points=cut_points, describe=describe,
                      edits="networks.resnet_edits")
