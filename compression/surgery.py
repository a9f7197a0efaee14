"""Layer removal and shrinkage: turn a teacher ResNet plus one RL action per layer into a student.

Zhang et al. §IV: the policy emits one action φ ∈ Φ = {0, 0.2, 0.4, 0.6, 0.8, 1} (eq. 3) per
prunable layer, reading per-layer states s_t = (l, k, d, p, o) (eq. 2). Our reading of the paper:

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
much* (``derive_arch``), and *the cutting* (one handler per layer type: ``_cut_conv``, ``_cut_bn``,
``_cut_linear``, ``_selection_shortcut``). Input channels follow what the previous layer kept,
kernels are cropped centrally, BN slices weight/bias/running stats, fc slices its columns. A new
shortcut conv becomes a channel-selection 1x1 conv that reproduces what the teacher's identity
carried. ``inherit=False`` gives the same architecture with a fresh random init. Every student is
proven by a forward pass before it is returned.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from networks.resnet import BasicBlock, ResNet, block_io, build_model, has_conv_shortcut, validate_arch

log = logging.getLogger(__name__)

ACTIONS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# φ = 0 on a layer that cannot be removed means "smallest width" (see module docstring).
_SMALLEST = ACTIONS[1]
# eq. (2) layer-type code l, already in [0, 1].
_KIND_CODE: dict[str, float] = {"stem": 0.0, "conv1": 0.5, "conv2": 1.0}
_STEM = -1  # id of the stem's output channel space; stage s writes space s


class SurgeryError(RuntimeError):
    """A cut produced inconsistent indices or a student whose forward pass fails."""


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


def layer_states(arch: dict[str, Any]) -> np.ndarray:
    """(T, 5) float32 eq. (2) states (l, k, d, p, o); k, d, p, o are divided by their column max."""
    ios = block_io(arch)
    rows: list[tuple[float, int, int, int, int]] = []
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
        rows.append((_KIND_CODE[ref.kind], k, d, k // 2, o))
    states = np.asarray(rows, dtype=np.float64)
    col_max = states[:, 1:].max(axis=0)
    # p is 0 everywhere when every kernel is 1x1; leave such a column at 0 rather than divide by 0.
    states[:, 1:] /= np.where(col_max > 0, col_max, 1.0)
    return states.astype(np.float32)


def _check_actions(arch: dict[str, Any], actions: Sequence[float]) -> list[float]:
    """Snap each action to Φ (a float32 0.2 from the policy must count as 0.2) or raise ValueError."""
    n_layers = len(prunable_layers(arch))
    if len(actions) != n_layers:
        raise ValueError(f"expected {n_layers} actions (one per prunable layer), got {len(actions)}")
    snapped = []
    for t, a in enumerate(actions):
        match = [phi for phi in ACTIONS if math.isfinite(float(a)) and abs(float(a) - phi) < 1e-6]
        if not match:
            raise ValueError(f"action {t} is {a!r}, not one of {ACTIONS}")
        snapped.append(match[0])
    return snapped


def _ceil(x: float) -> int:
    # Round first so that float noise (0.2 * 3 = 0.6000000000000001) cannot add a channel.
    return math.ceil(round(x, 9))


def scaled_width(phi: float, channels: int) -> int:
    """eq. (4): c' = max(1, ceil(φ·c)), with φ = 0 read as the smallest action."""
    return max(1, _ceil(max(phi, _SMALLEST) * channels))


def scaled_kernel(phi: float, kernel: int) -> int:
    """The smallest odd k' ≥ φ·k (odd so that padding k' // 2 keeps the spatial shape)."""
    k = max(1, _ceil(max(phi, _SMALLEST) * kernel))
    return k if k % 2 == 1 else k + 1


@dataclass(frozen=True)
class _Plan:
    arch: dict[str, Any]
    kept_blocks: list[list[int]]  # per stage, the teacher block index of every student block


def _plan(teacher_arch: dict[str, Any], actions: Sequence[float]) -> _Plan:
    phis = _check_actions(teacher_arch, actions)
    arch = copy.deepcopy(teacher_arch)
    stem_phi, rest = phis[0], phis[1:]
    arch["stem"] = {"out": scaled_width(stem_phi, teacher_arch["stem"]["out"]),
                    "kernel": scaled_kernel(stem_phi, teacher_arch["stem"]["kernel"])}
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


def _l1(conv: nn.Conv2d) -> Tensor:
    return conv.weight.detach().abs().sum(dim=(1, 2, 3))  # (out,)


def _top(scores: Tensor, k: int) -> Tensor:
    # Sorted, so the kept channels keep the teacher's order (and all-ones actions are the identity).
    return torch.topk(scores, k).indices.sort().values


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
    writers: dict[int, Tensor] = {_STEM: _l1(teacher.stem[0])}
    for s, kept in enumerate(plan.kept_blocks):
        blocks = teacher.stages[s]
        convs = [blocks[b].conv2 for b in kept]
        if isinstance(blocks[0].shortcut, nn.Sequential):
            convs.append(blocks[0].shortcut[0])
        writers[s] = torch.stack([_l1(c) for c in convs]).sum(dim=0)
    widths = {_STEM: plan.arch["stem"]["out"]} | {s: st["width"] for s, st in enumerate(plan.arch["stages"])}
    keep: dict[int, Tensor] = {}
    for group in _coupled_spaces(teacher.arch, plan.arch):
        sizes = {writers[s].numel() for s in group}
        if len(sizes) == 1:
            idx = _top(torch.stack([writers[s] for s in group]).sum(dim=0), widths[min(group)])
            keep |= {s: idx for s in group}
        else:
            raise SurgeryError(f"coupled spaces {sorted(group)} have different teacher widths {sizes}")
    return keep


# ---- the cutting: one handler per layer type ---------------------------------------------------


def _check_idx(idx: Tensor, size: int, want: int, what: str) -> None:
    if idx.numel() != want or (want and (int(idx.min()) < 0 or int(idx.max()) >= size)):
        raise SurgeryError(f"{what}: {idx.numel()} indices in [0, {size}) expected {want}")


@torch.no_grad()
def _cut_conv(src: nn.Conv2d, dst: nn.Conv2d, *, out_idx: Tensor, in_idx: Tensor) -> None:
    """Keep ``out_idx`` filters and ``in_idx`` input channels; crop the kernel around its centre."""
    _check_idx(out_idx, src.out_channels, dst.out_channels, "conv out")
    _check_idx(in_idx, src.in_channels, dst.in_channels, "conv in")
    kt, ks = src.kernel_size[0], dst.kernel_size[0]
    if ks > kt:
        raise SurgeryError(f"cannot grow a {kt}x{kt} kernel to {ks}x{ks}")
    off = (kt - ks) // 2  # both odd, so the crop is centred exactly
    dev = src.weight.device
    w = src.weight.index_select(0, out_idx.to(dev)).index_select(1, in_idx.to(dev))  # (out', in', kt, kt)
    dst.weight.copy_(w[:, :, off:off + ks, off:off + ks])


@torch.no_grad()
def _cut_bn(src: nn.BatchNorm2d, dst: nn.BatchNorm2d, idx: Tensor) -> None:
    """Slice affine parameters and running statistics to the kept channels."""
    _check_idx(idx, src.num_features, dst.num_features, "batchnorm")
    for name in ("weight", "bias", "running_mean", "running_var"):
        source = getattr(src, name)
        getattr(dst, name).copy_(source.index_select(0, idx.to(source.device)))
    dst.num_batches_tracked.copy_(src.num_batches_tracked)


@torch.no_grad()
def _cut_linear(src: nn.Linear, dst: nn.Linear, in_idx: Tensor) -> None:
    """The classifier keeps every class and only the columns of the kept features."""
    _check_idx(in_idx, src.in_features, dst.in_features, "linear in")
    dst.weight.copy_(src.weight.index_select(1, in_idx.to(src.weight.device)))
    dst.bias.copy_(src.bias)


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
    _cut_conv(teacher.stem[0], student.stem[0], out_idx=keep[_STEM],
              in_idx=torch.arange(teacher.arch["in_channels"]))
    _cut_bn(teacher.stem[1], student.stem[1], keep[_STEM])
    for s, kept in enumerate(plan.kept_blocks):
        in_space = s - 1  # stage 0 reads the stem's space (-1)
        for j, b in enumerate(kept):
            src: BasicBlock = teacher.stages[s][b]
            dst: BasicBlock = student.stages[s][j]
            in_idx = keep[in_space] if j == 0 else keep[s]
            mid_idx = _top(_l1(src.conv1), dst.conv1.out_channels)
            _cut_conv(src.conv1, dst.conv1, out_idx=mid_idx, in_idx=in_idx)
            _cut_bn(src.bn1, dst.bn1, mid_idx)
            _cut_conv(src.conv2, dst.conv2, out_idx=keep[s], in_idx=mid_idx)
            _cut_bn(src.bn2, dst.bn2, keep[s])
            if isinstance(dst.shortcut, nn.Sequential):
                if isinstance(src.shortcut, nn.Sequential):
                    _cut_conv(src.shortcut[0], dst.shortcut[0], out_idx=keep[s], in_idx=in_idx)
                    _cut_bn(src.shortcut[1], dst.shortcut[1], keep[s])
                else:
                    _selection_shortcut(dst.shortcut, out_idx=keep[s], in_idx=in_idx)
            elif isinstance(src.shortcut, nn.Sequential):
                # Only reachable from a custom teacher arch; the identity has nothing to inherit.
                log.debug("stage %d block %d: teacher projection dropped for an identity", s, b)
    _cut_linear(teacher.fc, student.fc, keep[len(plan.kept_blocks) - 1])


@torch.no_grad()
def _prove(student: ResNet, device: torch.device) -> None:
    """A forward pass on a dummy batch of the arch's input size proves every cut shape."""
    arch = student.arch
    h, w = arch["input_size"]
    was_training = student.training
    student.eval()  # BN in train mode rejects 1x1 maps with few samples; eval checks shapes all the same
    try:
        x = torch.randn(2, arch["in_channels"], h, w, generator=torch.Generator().manual_seed(0)).to(device)
        logits = student(x)
    except RuntimeError as exc:
        raise SurgeryError(f"student forward pass failed for arch {arch}: {exc}") from exc
    finally:
        student.train(was_training)
    if logits.shape != (2, arch["num_classes"]) or not torch.isfinite(logits).all():
        raise SurgeryError(f"student produced logits of shape {tuple(logits.shape)}, "
                           f"expected (2, {arch['num_classes']}) and finite")


def shrink(teacher: ResNet, actions: Sequence[float], *, inherit: bool = True) -> ResNet:
    """A new student for ``actions`` (teacher untouched), on the teacher's device and in its mode."""
    plan = _plan(teacher.arch, actions)
    device = next(teacher.parameters()).device
    student = build_model(plan.arch).to(device)
    if inherit:
        _inherit(teacher, student, plan)
    student.train(teacher.training)
    _prove(student, device)
    return student
