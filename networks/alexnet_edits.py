"""The AlexNet family's compression edits: a teacher AlexNet plus one RL action per layer -> a student.

Zhang et al. §IV: the policy emits one action φ ∈ Φ (eq. 3, networks/edits.py) per prunable layer,
reading per-layer states s_t = (l, k, d, p, o) (eq. 2). For AlexNet:

* Prunable layers, in policy order: the convs (``stages.i.conv``), then the hidden fc layers
  (``hidden.j.fc``); the class layer keeps every class. l is 0 for a conv and 1 for an fc; an fc
  reads as a 1x1 kernel with stride 1 and no padding. A conv's d is 2 when its stage pools: the
  conv itself has stride 1, but the stage halves the map, and that is what eq. (2)'s stride tells
  the policy (as a strided ResNet conv1 does).
* No layer is removable: every conv and fc changes the width (and a pool the resolution) between
  its neighbours, so φ = 0 means the smallest width (networks/edits.py's SMALLEST).
* Otherwise a layer shrinks (eq. 4): channels c' = max(1, ceil(φ·c)), kernel k' = the smallest odd
  integer ≥ φ·k (kernels only shrink); padding stays k' // 2, so spatial shapes are the teacher's.
* No coupling: a chain has no residual sums, so each layer keeps its own largest-L1 filters (Li et
  al. 2017) and the next layer's inputs follow them.

Student initialisation (``inherit=True``): kernels are cropped centrally, BN (2d and 1d) slices its
affine parameters and running stats, the first fc keeps the columns of the kept channels of the
flattened (C, H, W) map (column c·H·W + i), later fcs follow the previous fc's kept rows, and the
class layer keeps every row. ``inherit=False`` gives the same architecture with a fresh random
init. Every student is proven by a forward pass before it is returned.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from networks.alexnet import AlexNet, stage_shapes, validate_arch
from networks.edits import (
    cut_bn,
    cut_conv,
    cut_linear,
    l1_filters,
    new_student,
    scaled_conv,
    scaled_width,
    snap_actions,
    top,
)
from networks.family import LayerInfo

# eq. (2) layer-type code l, already in [0, 1].
_KIND_CONV = 0.0
_KIND_FC = 1.0


def layer_infos(arch: dict[str, Any]) -> list[LayerInfo]:
    """The eq. (2) facts (l, k, d, p, o) of every prunable layer, in policy order: convs, then hidden fcs."""
    validate_arch(arch)
    infos = [
        LayerInfo(name=f"stages.{i}.conv", kind=_KIND_CONV, kernel=conv["kernel"], stride=2 if conv["pool"] else 1,
                  padding=conv["kernel"] // 2, out_channels=conv["out"])
        for i, conv in enumerate(arch["convs"])
    ]
    infos += [LayerInfo(name=f"hidden.{j}.fc", kind=_KIND_FC, kernel=1, stride=1, padding=0, out_channels=width)
              for j, width in enumerate(arch["fc"])]
    return infos


def derive_arch(teacher_arch: dict[str, Any], actions: Sequence[float]) -> dict[str, Any]:
    """The student's arch dict for ``actions`` (pure: ``teacher_arch`` is not modified)."""
    validate_arch(teacher_arch)
    n_convs = len(teacher_arch["convs"])
    phis = snap_actions(n_convs + len(teacher_arch["fc"]), actions)
    arch = copy.deepcopy(teacher_arch)
    # eq. (4); φ = 0 is read as the smallest width by scaled_width/scaled_kernel (nothing is removable).
    arch["convs"] = [scaled_conv(phi, conv) for phi, conv in zip(phis[:n_convs], teacher_arch["convs"], strict=True)]
    arch["fc"] = [scaled_width(phi, width) for phi, width in zip(phis[n_convs:], teacher_arch["fc"], strict=True)]
    validate_arch(arch)
    return arch


def flat_columns(channels: Tensor, pixels: int) -> Tensor:
    """Columns of the flattened (C, H, W) map that belong to ``channels``: c·H·W + i, in order."""
    return (channels.view(-1, 1) * pixels + torch.arange(pixels, device=channels.device)).flatten()


@torch.no_grad()
def _inherit(teacher: AlexNet, student: AlexNet) -> None:
    in_idx = torch.arange(teacher.arch["in_channels"])
    for src, dst in zip(teacher.stages, student.stages, strict=True):
        # Li et al. 2017: keep the filters with the largest L1 norm; the next conv reads only those.
        out_idx = top(l1_filters(src.conv), dst.conv.out_channels)
        cut_conv(src.conv, dst.conv, out_idx=out_idx, in_idx=in_idx)
        cut_bn(src.bn, dst.bn, out_idx)
        in_idx = out_idx
    _, h, w = stage_shapes(teacher.arch)[-1]  # the student's map has the same H, W
    cols = flat_columns(in_idx.cpu(), h * w)
    for src, dst in zip(teacher.hidden, student.hidden, strict=True):
        rows = top(l1_filters(src.fc), dst.fc.out_features)
        cut_linear(src.fc, dst.fc, in_idx=cols, out_idx=rows)
        cut_bn(src.bn, dst.bn, rows)
        cols = rows
    cut_linear(teacher.fc, student.fc, in_idx=cols)  # every class stays


def shrink(teacher: AlexNet, actions: Sequence[float], *, inherit: bool = True) -> AlexNet:
    """A new student for ``actions`` (teacher untouched), on the teacher's device and in its mode."""
    return new_student(teacher, derive_arch(teacher.arch, actions), AlexNet, _inherit if inherit else None)
