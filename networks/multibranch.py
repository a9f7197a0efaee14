"""A multi-branch (early-exit) network with learned bottlenecks at its partition points (after Niu et al.).

The backbone is the bundle's teacher, unchanged, of any family (networks/family.py: it is read only
through its stem, stages, classify and cut points). Exit heads after stages 1..S-1 give early
answers (BranchyNet-style); exit S is the backbone's own classifier, so the last exit *is* the teacher.
At each partition point p (after stage p, 1 <= p < S) an optional
bottleneck (an encoder on the device, a decoder on the server) narrows the stage output so the
transmitted feature is much smaller than the raw input: with none, every intermediate feature of a
28x28 MNIST ResNet is larger than its 784 input bytes and a split never pays.

Everything comes from a JSON-able ``arch`` dict, as for any family::

    {"kind": "multibranch", "backbone": <any family's arch>,
     "exits": [{"after": 1, "width": 32}, {"after": 2, "width": 32}, {"after": 3, "width": 32}],
     "bottlenecks": [{"at": 1, "channels": 4, "stride": 4}, ...]}

Exit heads: conv3x3(stride 2 while the map is larger than 4x4)-BN-ReLU, global average pool, fc.
Bottleneck at p: encoder conv3x3(c_p -> channels, stride)-BN (the feature z_p that is quantised
and sent); decoder: nearest resize back to the stage's map, then conv3x3-BN-ReLU twice (-> c_p).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from networks import family

KIND = "multibranch"


def stage_shapes(backbone: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(C, H, W) of each stage's output of the backbone: its family's cut points."""
    return family.cut_points(backbone)


def _conv_out(size: int, stride: int) -> int:
    return (size + 2 - 3) // stride + 1  # conv3x3, padding 1


def feature_shape(arch: dict[str, Any], at: int) -> tuple[int, int, int]:
    """(C, H, W) of what crosses the link when the network is split after stage `at` (1-based)."""
    c, h, w = stage_shapes(arch["backbone"])[at - 1]
    spec = bottleneck_spec(arch, at)
    if spec is None:
        return c, h, w
    return spec["channels"], _conv_out(h, spec["stride"]), _conv_out(w, spec["stride"])


def bottleneck_spec(arch: dict[str, Any], at: int) -> dict[str, Any] | None:
    for spec in arch["bottlenecks"]:
        if spec["at"] == at:
            return spec
    return None


def multibranch_arch(backbone: dict[str, Any], *, exit_width: int = 32, bottleneck_channels: int | None = 4,
                     target_size: int | None = None) -> dict[str, Any]:
    """Exits after every stage but the last, and a bottleneck at every partition point.

    Each bottleneck strides (1, 2 or 4) so its map is at most `target_size` on a side (default: a
    quarter of the input side, 7x7 on MNIST); `bottleneck_channels=None` leaves the splits without one.
    """
    family.validate(backbone)
    n_stages = len(stage_shapes(backbone))
    target = target_size if target_size is not None else max(1, backbone["input_size"][0] // 4)
    shapes = stage_shapes(backbone)
    bottlenecks = []
    if bottleneck_channels is not None:
        for at in range(1, n_stages):
            side = shapes[at - 1][1]
            stride = 1
            while _conv_out(side, stride) > target and stride < 4:
                stride *= 2
            bottlenecks.append({"at": at, "channels": int(bottleneck_channels), "stride": stride})
    arch = {"kind": KIND, "backbone": copy.deepcopy(backbone),
            "exits": [{"after": s, "width": int(exit_width)} for s in range(1, n_stages)],
            "bottlenecks": bottlenecks}
    validate_multibranch(arch)
    return arch


def validate_multibranch(arch: dict[str, Any]) -> None:
    """Raise ValueError naming the first malformed field of a multi-branch arch."""
    if not isinstance(arch, dict) or arch.get("kind") != KIND:
        raise ValueError(f"arch['kind'] must be {KIND!r}, got {arch.get('kind') if isinstance(arch, dict) else arch!r}")
    family.validate(arch.get("backbone"))
    n_stages = len(stage_shapes(arch["backbone"]))
    afters = [e.get("after") for e in arch.get("exits", [])]
    if sorted(afters) != afters or len(set(afters)) != len(afters) \
            or any(not isinstance(a, int) or not 1 <= a < n_stages for a in afters):
        raise ValueError(f"arch['exits'] must name distinct stages in [1, {n_stages - 1}] in order, got {afters}")
    for e in arch["exits"]:
        if not isinstance(e.get("width"), int) or e["width"] < 1:
            raise ValueError(f"exit after stage {e['after']}: width must be a positive int, got {e.get('width')!r}")
    for b in arch.get("bottlenecks", []):
        if not isinstance(b.get("at"), int) or not 1 <= b["at"] < n_stages:
            raise ValueError(f"bottleneck 'at' must be a stage in [1, {n_stages - 1}], got {b.get('at')!r}")
        if not isinstance(b.get("channels"), int) or b["channels"] < 1:
            raise ValueError(f"bottleneck at {b['at']}: channels must be a positive int, got {b.get('channels')!r}")
        if b.get("stride") not in (1, 2, 4):
            raise ValueError(f"bottleneck at {b['at']}: stride must be 1, 2 or 4, got {b.get('stride')!r}")


class ExitHead(nn.Module):
    """Stage output (B, C, H, W) -> logits (B, K)."""

    def __init__(self, in_ch: int, side: int, width: int, num_classes: int) -> None:
        super().__init__()
        stride = 2 if side > 4 else 1
        self.conv = nn.Sequential(nn.Conv2d(in_ch, width, 3, stride=stride, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.fc = nn.Linear(width, num_classes)

    def forward(self, h: Tensor) -> Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.conv(h), 1), 1))


class Bottleneck(nn.Module):
    """encode: (B, C, H, W) -> z (B, k, H', W'); decode: z -> (B, C, H, W) approximating the stage output."""

    def __init__(self, in_ch: int, size: tuple[int, int], *, channels: int, stride: int) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        self.encoder = nn.Sequential(nn.Conv2d(in_ch, channels, 3, stride=stride, padding=1, bias=False),
                                     nn.BatchNorm2d(channels))
        self.decoder = nn.Sequential(
            nn.Conv2d(channels, in_ch, 3, padding=1, bias=False), nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True),
            nn.Conv2d(in_ch, in_ch, 3, padding=1, bias=False), nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True))

    def encode(self, h: Tensor) -> Tensor:
        return self.encoder(h)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(F.interpolate(z, size=self.size, mode="nearest"))


class MultiBranchNet(nn.Module):
    """Backbone + exit heads + bottlenecks; every forward names where it is split."""

    def __init__(self, arch: dict[str, Any], backbone: nn.Module | None = None) -> None:
        super().__init__()
        validate_multibranch(arch)
        self.arch: dict[str, Any] = copy.deepcopy(arch)
        self.backbone = backbone if backbone is not None else family.build_model(arch["backbone"])
        num_classes = arch["backbone"]["num_classes"]
        shapes = stage_shapes(arch["backbone"])
        self.n_stages = len(shapes)
        self.exit_after = [e["after"] for e in arch["exits"]] + [self.n_stages]
        self.heads = nn.ModuleDict({str(e["after"]): ExitHead(shapes[e["after"] - 1][0], shapes[e["after"] - 1][1],
                                                             e["width"], num_classes) for e in arch["exits"]})
        self.bottlenecks = nn.ModuleDict({
            str(b["at"]): Bottleneck(shapes[b["at"] - 1][0], shapes[b["at"] - 1][1:], channels=b["channels"],
                                     stride=b["stride"]) for b in arch["bottlenecks"]})

    @property
    def partition_points(self) -> list[int]:
        """Stages after which the network can be split (the device runs stages 1..p)."""
        return list(range(1, self.n_stages))

    def exit_logits(self, stage: int, h: Tensor) -> Tensor:
        """Logits of the exit after `stage` from that stage's output."""
        if stage == self.n_stages:
            return self.backbone.classify(h)
        return self.heads[str(stage)](h)

    def stages_from(self, h: Tensor, start: int, stop: int) -> list[Tensor]:
        """Outputs of stages start+1..stop (1-based) given stage `start`'s output (0: the stem's)."""
        outs = []
        for s in range(start, stop):
            h = self.backbone.stages[s](h)
            outs.append(h)
        return outs

    def stage_outputs(self, x: Tensor) -> list[Tensor]:
        """Every stage's output for a normalised input batch."""
        return self.stages_from(self.backbone.stem(x), 0, self.n_stages)

    def encode(self, p: int, h: Tensor) -> Tensor:
        """The feature sent when split after stage p: the bottleneck's code, or the stage output itself."""
        return self.bottlenecks[str(p)].encode(h) if str(p) in self.bottlenecks else h

    def decode(self, p: int, z: Tensor) -> Tensor:
        return self.bottlenecks[str(p)].decode(z) if str(p) in self.bottlenecks else z

    def head(self, x: Tensor, p: int) -> tuple[Tensor, list[Tensor]]:
        """Device side of a split after stage p: (feature z_p, logits of the exits after stages <= p)."""
        outs = self.stage_outputs_upto(x, p)
        exits = [self.exit_logits(s, outs[s - 1]) for s in self.exit_after if s <= p]
        return self.encode(p, outs[-1]), exits

    def stage_outputs_upto(self, x: Tensor, p: int) -> list[Tensor]:
        return self.stages_from(self.backbone.stem(x), 0, p)

    def tail(self, z: Tensor, p: int) -> list[Tensor]:
        """Server side of a split after stage p: logits of the exits after stages > p."""
        h = self.decode(p, z)
        outs = self.stages_from(h, p, self.n_stages)
        return [self.exit_logits(s, outs[s - p - 1]) for s in self.exit_after if s > p]

    def forward(self, x: Tensor, split: int | None = None) -> list[Tensor]:
        """Logits of every exit, in order; with `split`=p the path goes through p's bottleneck."""
        if split is None:
            outs = self.stage_outputs(x)
            return [self.exit_logits(s, outs[s - 1]) for s in self.exit_after]
        z, early = self.head(x, split)
        return [*early, *self.tail(z, split)]


def build_multibranch(arch: dict[str, Any]) -> MultiBranchNet:
    """Rebuild a multi-branch net from its arch dict (weights freshly initialised)."""
    return MultiBranchNet(arch)
