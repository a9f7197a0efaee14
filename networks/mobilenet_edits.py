"""The mobile family's compression edits: a teacher MobileNet plus one RL action per layer -> a student.

Zhang et al. §IV (eqs. 2-4, networks/edits.py) read for Sandler et al.'s inverted residuals:

* Prunable layers, in policy order: the stem conv, then per block its hidden width ``mid`` and its
  projection width ``out``, then the head conv (full MobileNetV2: 2 + 2 · 17 = 36 actions).
* ``mid``: φ = 0 *removes* the block when it adds its input (``residual``: stride 1, in == out,
  never a sequence's first block) and is not its stage's first block (a stage is a cut point and
  keeps one block; only a hand-written arch has a residual block there); its ``out`` action is then
  ignored. Otherwise mid' = scaled_width(φ, mid): the expansion conv, the depthwise conv and the
  projection's input shrink together. A block without expansion conv (t = 1, the first block of the
  network) runs its depthwise conv on its input's channels, so its mid *is* its input width: its
  mid action is ignored (but for removal) and the action of whatever writes its input (the stem)
  sizes it.
* ``out``, coupled (Torch-Pruning's dependency groups): a residual adds the block's input to its
  output channel for channel, so every conv writing into one channel space (the stem, or a
  sequence's first block, plus the residual blocks after it) is cut together. The space's width is
  scaled_width(max φ of its writers' actions over surviving blocks): no conv is cut below what its
  own action asked.
* The head conv is cut by its own action; the classifier's columns follow.
* Kernels and strides never change. Eq. (4) would make a 3x3 conv 1x1 at φ = 0.2, but the stem and
  the depthwise convs are the network's only spatial filters (Howard et al. 2017: the depthwise
  conv filters, the 1x1 convs combine and hold nearly all the weights) and cost 9 weights per
  channel, about 3% of MobileNetV2's parameters; a 1x1 depthwise conv would turn a block into a
  per-pixel MLP for that small saving. The depthwise conv's state row still shows its 3x3 kernel
  and the block's stride to the policy.

Student initialisation (``inherit=True``): *which* channels are coupled (``channel_spaces``), *what*
to keep (largest L1 filter norm: summed over every conv writing into a space; a mid by its expansion
conv's filters, or its input space's channels when there is no expansion conv; the head by its own),
*how much* (``derive_arch``), and *the cutting* (networks/edits.py's handlers; ``cut_conv`` keeps a
depthwise conv's channels for its mid). BN slices its affine parameters and running statistics,
the classifier its columns. ``inherit=False`` gives the same architecture with a fresh init. Every
student is proven by a forward pass before it is returned.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor

from networks.edits import cut_conv_bn, cut_linear, l1_filters, new_student, scaled_width, snap_actions, top
from networks.family import LayerInfo
from networks.mobilenet import KERNEL, BlockIO, InvertedResidual, MobileNet, blocks_of, validate_arch

# eq. (2) layer-type code l, already in [0, 1].
_KIND_CODE: dict[str, float] = {"stem": 0.0, "mid": 1 / 3, "out": 2 / 3, "head": 1.0}
_STEM_SPACE = 0


@dataclass(frozen=True)
class LayerRef:
    """One prunable layer: ``kind`` plus its stage and block (both None for the stem and the head)."""

    kind: Literal["stem", "mid", "out", "head"]
    stage: int | None = None
    block: int | None = None

    @property
    def name(self) -> str:
        """The conv's module name inside a MobileNet; a mid is named by its depthwise conv, which every
        block has and which carries the block's stride."""
        if self.kind in ("stem", "head"):
            return f"{self.kind}.0"
        conv = "dw" if self.kind == "mid" else "project"
        return f"stages.{self.stage}.{self.block}.{conv}.0"


def prunable_layers(arch: dict[str, Any]) -> list[LayerRef]:
    """The T prunable layers in policy order: stem, then (mid, out) of every block, then the head."""
    validate_arch(arch)
    layers = [LayerRef("stem")]
    for io in blocks_of(arch):
        layers += [LayerRef("mid", io.stage, io.index), LayerRef("out", io.stage, io.index)]
    return [*layers, LayerRef("head")]


def layer_infos(arch: dict[str, Any]) -> list[LayerInfo]:
    """The eq. (2) facts (l, k, d, p, o) of every prunable layer, in policy order."""
    ios = {(io.stage, io.index): io for io in blocks_of(arch)}
    infos: list[LayerInfo] = []
    for ref in prunable_layers(arch):
        if ref.kind == "stem":
            k, d, o = KERNEL, arch["stem"]["stride"], arch["stem"]["out"]
        elif ref.kind == "head":
            k, d, o = 1, 1, arch["head"]
        else:
            io = ios[(ref.stage, ref.block)]
            k, d, o = (KERNEL, io.stride, io.mid) if ref.kind == "mid" else (1, 1, io.out)
        infos.append(LayerInfo(name=ref.name, kind=_KIND_CODE[ref.kind], kernel=k, stride=d, padding=k // 2,
                               out_channels=o))
    return infos


def channel_spaces(arch: dict[str, Any]) -> list[tuple[int, int]]:
    """Per block in forward order, (space it reads, space it writes).

    Space 0 is the stem's output; every block without a residual opens the next space, and a
    residual block reads and writes the same one (its sum is channel for channel).
    """
    spaces: list[tuple[int, int]] = []
    current, opened = _STEM_SPACE, _STEM_SPACE
    for io in blocks_of(arch):
        if not io.residual:
            opened += 1
        writes = current if io.residual else opened
        spaces.append((current, writes))
        current = writes
    return spaces


@dataclass(frozen=True)
class _Plan:
    arch: dict[str, Any]
    kept: list[int]
    """Per student block in forward order, the index of its teacher block in ``blocks_of(teacher)``."""
    spaces: list[tuple[int, int]]
    """The teacher's ``channel_spaces``; a student block reads and writes those of its teacher block."""
    widths: dict[int, int]
    """The student's width of every channel space."""


def _plan(teacher_arch: dict[str, Any], actions: Sequence[float]) -> _Plan:
    phis = snap_actions(len(prunable_layers(teacher_arch)), actions)
    stem_phi, block_phis, head_phi = phis[0], phis[1:-1], phis[-1]
    ios = blocks_of(teacher_arch)
    spaces = channel_spaces(teacher_arch)
    space_phi = {_STEM_SPACE: stem_phi}
    teacher_width = {_STEM_SPACE: teacher_arch["stem"]["out"]}
    kept: list[int] = []
    for i, (io, (_, writes)) in enumerate(zip(ios, spaces, strict=True)):
        phi_mid, phi_out = block_phis[2 * i], block_phis[2 * i + 1]
        if phi_mid == 0.0 and io.residual and io.index > 0:
            continue  # removable block removed; its out action is ignored
        kept.append(i)
        # One coupling group per space: its width honours the largest action among its writers.
        space_phi[writes] = max(space_phi.get(writes, 0.0), phi_out)
        teacher_width[writes] = io.out
    widths = {space: scaled_width(phi, teacher_width[space]) for space, phi in space_phi.items()}

    arch = copy.deepcopy(teacher_arch)
    arch["stem"]["out"] = widths[_STEM_SPACE]
    arch["head"] = scaled_width(head_phi, teacher_arch["head"])
    for stage in arch["stages"]:
        stage["blocks"] = []
    for i in kept:
        io, (reads, writes) = ios[i], spaces[i]
        spec = teacher_arch["stages"][io.stage]["blocks"][io.index]
        # Without an expansion conv the depthwise conv reads the input channel for channel.
        mid = scaled_width(block_phis[2 * i], io.mid) if io.expands else widths[reads]
        arch["stages"][io.stage]["blocks"].append({**spec, "mid": mid, "out": widths[writes]})
    validate_arch(arch)
    return _Plan(arch, kept, spaces, widths)


def derive_arch(teacher_arch: dict[str, Any], actions: Sequence[float]) -> dict[str, Any]:
    """The student's arch dict for ``actions`` (pure: ``teacher_arch`` is not modified)."""
    return _plan(teacher_arch, actions).arch


# ---- what to keep -------------------------------------------------------------------------------


def _block(net: MobileNet, io: BlockIO) -> InvertedResidual:
    return net.stages[io.stage][io.index]  # type: ignore[return-value]


def _kept_channels(teacher: MobileNet, plan: _Plan) -> dict[int, Tensor]:
    """Per channel space, the teacher channels the student keeps (largest L1 summed over its writers)."""
    ios = blocks_of(teacher.arch)
    scores: dict[int, list[Tensor]] = {_STEM_SPACE: [l1_filters(teacher.stem[0])]}
    for i in plan.kept:
        scores.setdefault(plan.spaces[i][1], []).append(l1_filters(_block(teacher, ios[i]).project[0]))
    return {space: top(torch.stack(ranked).sum(dim=0), plan.widths[space]) for space, ranked in scores.items()}


# ---- the cutting --------------------------------------------------------------------------------


def _inherit(teacher: MobileNet, student: MobileNet, plan: _Plan) -> None:
    keep = _kept_channels(teacher, plan)
    cut_conv_bn(teacher.stem, student.stem, out_idx=keep[_STEM_SPACE],
                in_idx=torch.arange(teacher.arch["in_channels"]))
    t_ios = blocks_of(teacher.arch)
    for i, s_io in zip(plan.kept, blocks_of(student.arch), strict=True):
        src, dst = _block(teacher, t_ios[i]), _block(student, s_io)
        reads, writes = plan.spaces[i]
        if src.expand is not None and dst.expand is not None:
            mid_idx = top(l1_filters(src.expand[0]), s_io.mid)
            cut_conv_bn(src.expand, dst.expand, out_idx=mid_idx, in_idx=keep[reads])
        else:
            mid_idx = keep[reads]  # no expansion conv: the mid channels are the input's
        # Depthwise: each kept mid channel keeps its own 3x3 filter (cut_conv ignores in_idx per group).
        cut_conv_bn(src.dw, dst.dw, out_idx=mid_idx, in_idx=mid_idx)
        cut_conv_bn(src.project, dst.project, out_idx=keep[writes], in_idx=mid_idx)
    head_idx = top(l1_filters(teacher.head[0]), student.arch["head"])
    cut_conv_bn(teacher.head, student.head, out_idx=head_idx, in_idx=keep[plan.spaces[plan.kept[-1]][1]])
    cut_linear(teacher.fc, student.fc, in_idx=head_idx)


def shrink(teacher: MobileNet, actions: Sequence[float], *, inherit: bool = True) -> MobileNet:
    """A new student for ``actions`` (teacher untouched), on the teacher's device and in its mode."""
    plan = _plan(teacher.arch, actions)
    return new_student(teacher, plan.arch, MobileNet, partial(_inherit, plan=plan) if inherit else None)
