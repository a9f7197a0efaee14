"""The ResNet family's compression edits: a teacher ResNet plus one RL action per layer -> a student.

Zhang et al. §IV: the policy emits one action φ ∈ Φ = {0, 0.2, 0.4, 0.6, 0.8, 1} (eq. 3, networks/edits.py)
per prunable layer, reading per-layer states s_t = (l, k, d, p, o) (eq. 2). Our reading of the paper:

* Prunable layers, in order: the stem conv, then conv1 and conv2 of every block (ResNet-18: 17,
  ResNet-34: 33). ``prunable_layers`` lists them; ``layer_states`` gives their eq. (2) states.
* φ = 0 *removes* a layer where shapes allow it and otherwise means the smallest width, i.e. it is
  treated exactly as φ = 0.2. Only a residual block can disappear (its input and output shapes
  agree), and only one that is not the first of its stage, since the first carries the stage's
  stride and width change. The block is removed by φ = 0 on its conv1; its conv2 action is then
  ignored. φ = 0 on a conv2 or on the stem is the smallest width.
* Otherwise a layer shrinks (eq. 4): channels c' = max(1, ceil(φ·c)) and kernel k' = the smallest
  odd integer ≥ φ·k (so 3 stays 3 for φ ≥ 0.4 and becomes 1 for φ = 0.2); padding stays k' // 2
  and strides never change, so spatial shapes are those of the teacher.
* Coupling (Torch-Pruning's dependency groups): every conv2 of a stage, and that stage's shortcut
  conv, writes into one residual sum, so they are cut together. The stage width is
  max(1, ceil(max φ · width)) over the stage's surviving blocks: no layer is cut below what its own
  action asked. A conv1's output feeds only its own conv2, so it is cut alone. The stem is cut by
  its own action; if the stem and the first stage then disagree in width, the student gets a 1x1
  shortcut conv where the teacher had the identity.

Student initialisation (``inherit=True``), in four separate jobs: *which* channels are coupled
(``_coupled_spaces``), *what* to keep (largest L1 filter norm, summed over a coupling group), *how
much* (``derive_arch``), and *the cutting* (one handler per layer type in networks/edits.py, and
``_selection_shortcut`` here). Input channels follow what the previous layer kept,
kernels are cropped centrally, BN slices weight/bias/running stats, fc slices its columns. A new
shortcut conv becomes a channel-selection 1x1 conv that reproduces what the teacher's identity
carried. ``inherit=False`` gives the same architecture with a fresh random init. Every student is
proven by a forward pass before it is returned.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor, nn

from networks.edits import (
    SurgeryError,
    cut_bn,
    cut_conv,
    cut_conv_bn,
    cut_linear,
    l1_filters,
    new_student,
    scaled_conv,
    scaled_kernel,
    scaled_width,
    snap_actions,
    top,
)
from networks.family import LayerInfo
from networks.resnet import BasicBlock, ResNet, block_io, build_model, has_conv_shortcut, validate_arch

log = logging.getLogger(__name__)

# eq. (2) layer-type code l, already in [0, 1].
_KIND_CODE: dict[str, float] = {"stem": 0.0, "conv1": 0.5, "conv2": 1.0}
_STEM = -1  # id of the stem's output channel space; stage s writes space s


@dataclass(frozen=True)
class LayerRef:
    """One prunable conv: ``kind`` plus its stage and block (both None for the stem)."""

    kind: Literal["stem", "conv1", "conv2"]
    stage: int | None = None
    block: int | None = None

    @property
    def name(self) -> str:
        """The conv's module name inside a ResNet (``stem.0`` or ``stages.S.B.convN``)."""
        return "stem.0" if self.kind == "stem" else f"stages.{self.stage}.{self.block}.{self.kind}"


def prunable_layers(arch: dict[str, Any]) -> list[LayerRef]:
    """The T prunable convs in policy order: stem, then (conv1, conv2) of every block."""
    validate_arch(arch)
    layers = [LayerRef("stem")]
    for s, stage in enumerate(arch["stages"]):
        for b in range(len(stage["blocks"])):
            layers += [LayerRef("conv1", s, b), LayerRef("conv2", s, b)]
    return layers


def layer_infos(arch: dict[str, Any]) -> list[LayerInfo]:
    """The eq. (2) facts (l, k, d, p, o) of every prunable layer, in policy order."""
    ios = block_io(arch)
    infos: list[LayerInfo] = []
    for ref in prunable_layers(arch):
        if ref.kind == "stem":
            k, d, o = arch["stem"]["kernel"], 1, arch["stem"]["out"]
        else:
            assert ref.stage is not None and ref.block is not None  # narrowing for the type checker
            spec = arch["stages"][ref.stage]["blocks"][ref.block]
            _, stride, width = ios[ref.stage][ref.block]
            if ref.kind == "conv1":
                k, d, o = spec["kernel1"], stride, spec["mid"]
            else:
                k, d, o = spec["kernel2"], 1, width
        infos.append(LayerInfo(name=ref.name, kind=_KIND_CODE[ref.kind], kernel=k, stride=d, padding=k // 2,
                               out_channels=o))
    return infos


@dataclass(frozen=True)
class _Plan:
    arch: dict[str, Any]
    kept_blocks: list[list[int]]  # per stage, the teacher block index of every student block


def _plan(teacher_arch: dict[str, Any], actions: Sequence[float]) -> _Plan:
    phis = snap_actions(len(prunable_layers(teacher_arch)), actions)
    arch = copy.deepcopy(teacher_arch)
    stem_phi, rest = phis[0], phis[1:]
    arch["stem"] = scaled_conv(stem_phi, teacher_arch["stem"])
    t = 0
    kept_blocks: list[list[int]] = []
    for stage in arch["stages"]:
        blocks, kept, group_phi = [], [], 0.0
        for b, spec in enumerate(stage["blocks"]):
            phi1, phi2 = rest[t], rest[t + 1]
            t += 2
            if phi1 == 0.0 and b > 0:
                continue  # removable block removed; its conv2 action is ignored
            kept.append(b)
            group_phi = max(group_phi, phi2)
            blocks.append({"mid": scaled_width(phi1, spec["mid"]),
                           "kernel1": scaled_kernel(phi1, spec["kernel1"]),
                           "kernel2": scaled_kernel(phi2, spec["kernel2"])})
        # One coupling group per stage: its width honours the largest action in the group.
        stage["width"] = scaled_width(group_phi, stage["width"])
        stage["blocks"] = blocks
        kept_blocks.append(kept)
    validate_arch(arch)
    return _Plan(arch, kept_blocks)


def derive_arch(teacher_arch: dict[str, Any], actions: Sequence[float]) -> dict[str, Any]:
    """The student's arch dict for ``actions`` (pure: ``teacher_arch`` is not modified)."""
    return _plan(teacher_arch, actions).arch


# ---- what to keep -------------------------------------------------------------------------------


def _coupled_spaces(teacher_arch: dict[str, Any], student_arch: dict[str, Any]) -> list[set[int]]:
    """Channel spaces (stem = -1, stage s = s) that must keep the same teacher channels.

    A stage's input and output are one space when both teacher and student join them with an
    identity shortcut: the student adds channel i of one to channel i of the other, so i must mean
    the same teacher channel on both sides.
    """
    parent = {s: s for s in range(_STEM, len(student_arch["stages"]))}

    def find(s: int) -> int:
        while parent[s] != s:
            s = parent[s]
        return s

    t_io, s_io = block_io(teacher_arch), block_io(student_arch)
    for s in range(len(student_arch["stages"])):
        if not has_conv_shortcut(*t_io[s][0]) and not has_conv_shortcut(*s_io[s][0]):
            parent[find(s)] = find(s - 1)
    groups: dict[int, set[int]] = {}
    for s in parent:
        groups.setdefault(find(s), set()).add(s)
    return list(groups.values())


def _kept_channels(teacher: ResNet, plan: _Plan) -> dict[int, Tensor]:
    """Per channel space, the teacher channels the student keeps (largest summed L1 norm)."""
    writers: dict[int, Tensor] = {_STEM: l1_filters(teacher.stem[0])}
    for s, kept in enumerate(plan.kept_blocks):
        blocks = teacher.stages[s]
        convs = [blocks[b].conv2 for b in kept]
        if isinstance(blocks[0].shortcut, nn.Sequential):
            convs.append(blocks[0].shortcut[0])
        writers[s] = torch.stack([l1_filters(c) for c in convs]).sum(dim=0)
    widths = {_STEM: plan.arch["stem"]["out"]} | {s: st["width"] for s, st in enumerate(plan.arch["stages"])}
    keep: dict[int, Tensor] = {}
    for group in _coupled_spaces(teacher.arch, plan.arch):
        sizes = {writers[s].numel() for s in group}
        if len(sizes) == 1:
            idx = top(torch.stack([writers[s] for s in group]).sum(dim=0), widths[min(group)])
            keep |= {s: idx for s in group}
        else:
            raise SurgeryError(f"coupled spaces {sorted(group)} have different teacher widths {sizes}")
    return keep


# ---- the cutting: one handler per layer type ---------------------------------------------------


@torch.no_grad()
def _selection_shortcut(dst: nn.Sequential, *, out_idx: Tensor, in_idx: Tensor) -> None:
    """A new 1x1 shortcut that passes channel in_idx[i] to output j where out_idx[j] == in_idx[i].

    The teacher's identity carried exactly those channels, so the student's residual sum starts
    as the teacher's restricted to the kept channels. BN is set to the identity in eval mode.
    """
    conv, bn = dst[0], dst[1]
    match = (out_idx.view(-1, 1) == in_idx.view(1, -1)).to(conv.weight.dtype)  # (out, in)
    conv.weight.copy_(match.view_as(conv.weight))
    bn.weight.fill_(1.0)
    bn.bias.zero_()
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(1 - eps + eps) = x


def _inherit(teacher: ResNet, student: ResNet, plan: _Plan) -> None:
    keep = _kept_channels(teacher, plan)
    cut_conv_bn(teacher.stem, student.stem, out_idx=keep[_STEM], in_idx=torch.arange(teacher.arch["in_channels"]))
    for s, kept in enumerate(plan.kept_blocks):
        in_space = s - 1  # stage 0 reads the stem's space (-1)
        for j, b in enumerate(kept):
            src: BasicBlock = teacher.stages[s][b]
            dst: BasicBlock = student.stages[s][j]
            in_idx = keep[in_space] if j == 0 else keep[s]
            mid_idx = top(l1_filters(src.conv1), dst.conv1.out_channels)
            cut_conv(src.conv1, dst.conv1, out_idx=mid_idx, in_idx=in_idx)
            cut_bn(src.bn1, dst.bn1, mid_idx)
            cut_conv(src.conv2, dst.conv2, out_idx=keep[s], in_idx=mid_idx)
            cut_bn(src.bn2, dst.bn2, keep[s])
            if isinstance(dst.shortcut, nn.Sequential):
                if isinstance(src.shortcut, nn.Sequential):
                    cut_conv_bn(src.shortcut, dst.shortcut, out_idx=keep[s], in_idx=in_idx)
                else:
                    _selection_shortcut(dst.shortcut, out_idx=keep[s], in_idx=in_idx)
            elif isinstance(src.shortcut, nn.Sequential):
                # Only reachable from a custom teacher arch; the identity has nothing to inherit.
                log.debug("stage %d block %d: teacher projection dropped for an identity", s, b)
    cut_linear(teacher.fc, student.fc, in_idx=keep[len(plan.kept_blocks) - 1])


def shrink(teacher: ResNet, actions: Sequence[float], *, inherit: bool = True) -> ResNet:
    """A new student for ``actions`` (teacher untouched), on the teacher's device and in its mode."""
    plan = _plan(teacher.arch, actions)
    return new_student(teacher, plan.arch, build_model, partial(_inherit, plan=plan) if inherit else None)
