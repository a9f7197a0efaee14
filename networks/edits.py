"""What every family's compression edits share: the action set Φ, eq. (4)'s scaling, and the cutting.

Zhang et al. §IV: the policy emits one action φ ∈ Φ = {0, 0.2, 0.4, 0.6, 0.8, 1} (eq. 3) per prunable
layer. φ = 0 removes a layer where the family's shapes allow it and otherwise means the smallest
width; any other φ shrinks the layer (eq. 4): channels c' = max(1, ceil(φ·c)), kernel k' = the
smallest odd integer ≥ φ·k. Which layers can go, which are coupled and how weights are inherited is
each family's own business (``networks/resnet_edits.py`` and the others); the cutting handlers here
(after Torch-Pruning's one handler per layer type) work out nothing themselves: they slice what
they are told to keep and check the indices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

ACTIONS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
SMALLEST = ACTIONS[1]
"""φ = 0 on a layer that cannot be removed means this, the smallest width."""


M = TypeVar("M", bound=nn.Module)


class SurgeryError(RuntimeError):
    """A cut produced inconsistent indices or a student whose forward pass fails."""


def snap_actions(n_layers: int, actions: Sequence[float]) -> list[float]:
    """Each action snapped to Φ (a float32 0.2 from the policy must count as 0.2), or ValueError."""
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
    return max(1, _ceil(max(phi, SMALLEST) * channels))


def scaled_kernel(phi: float, kernel: int) -> int:
    """The smallest odd k' ≥ φ·k (odd so that padding k' // 2 keeps the spatial shape)."""
    k = max(1, _ceil(max(phi, SMALLEST) * kernel))
    return k if k % 2 == 1 else k + 1


def scaled_conv(phi: float, conv: dict[str, Any]) -> dict[str, Any]:
    """eq. (4) on a conv's arch entry: its ``out`` width and ``kernel`` scaled by φ, any other key kept."""
    return {**conv, "out": scaled_width(phi, conv["out"]), "kernel": scaled_kernel(phi, conv["kernel"])}


# ---- what to keep -------------------------------------------------------------------------------


def l1_filters(conv: nn.Conv2d | nn.Linear) -> Tensor:
    """(out,) L1 norm of every output filter (Li et al. 2017's pruning criterion)."""
    w = conv.weight.detach().abs()
    return w.sum(dim=tuple(range(1, w.ndim)))


def top(scores: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` largest scores, sorted, so kept channels keep the teacher's order."""
    return torch.topk(scores, k).indices.sort().values


# ---- the cutting: one handler per layer type ---------------------------------------------------


def check_idx(idx: Tensor, size: int, want: int, what: str) -> None:
    if idx.numel() != want or (want and (int(idx.min()) < 0 or int(idx.max()) >= size)):
        raise SurgeryError(f"{what}: {idx.numel()} indices in [0, {size}) expected {want}")


@torch.no_grad()
def cut_conv(src: nn.Conv2d, dst: nn.Conv2d, *, out_idx: Tensor, in_idx: Tensor) -> None:
    """Keep ``out_idx`` filters and ``in_idx`` input channels (per group for depthwise); crop the kernel."""
    _check_kernel(src, dst)
    check_idx(out_idx, src.out_channels, dst.out_channels, "conv out")
    dev = src.weight.device
    w = src.weight.index_select(0, out_idx.to(dev))  # (out', in/groups, kt, kt)
    if src.groups == 1:
        check_idx(in_idx, src.in_channels, dst.in_channels, "conv in")
        w = w.index_select(1, in_idx.to(dev))
    elif not (src.groups == src.in_channels == src.out_channels and dst.groups == dst.in_channels):
        raise SurgeryError(f"only dense and depthwise convs can be cut, got groups={src.groups}")
    off = (src.kernel_size[0] - dst.kernel_size[0]) // 2  # both odd, so the crop is centred exactly
    ks = dst.kernel_size[0]
    dst.weight.copy_(w[:, :, off:off + ks, off:off + ks])
    if src.bias is not None and dst.bias is not None:
        dst.bias.copy_(src.bias.index_select(0, out_idx.to(dev)))


def _check_kernel(src: nn.Conv2d, dst: nn.Conv2d) -> None:
    kt, ks = src.kernel_size[0], dst.kernel_size[0]
    if ks > kt:
        raise SurgeryError(f"cannot grow a {kt}x{kt} kernel to {ks}x{ks}")


@torch.no_grad()
def cut_bn(src: nn.BatchNorm2d | nn.BatchNorm1d, dst: nn.BatchNorm2d | nn.BatchNorm1d, idx: Tensor) -> None:
    """Slice affine parameters and running statistics to the kept channels."""
    check_idx(idx, src.num_features, dst.num_features, "batchnorm")
    for name in ("weight", "bias", "running_mean", "running_var"):
        source = getattr(src, name)
        getattr(dst, name).copy_(source.index_select(0, idx.to(source.device)))
    dst.num_batches_tracked.copy_(src.num_batches_tracked)


@torch.no_grad()
def cut_conv_bn(src: nn.Sequential, dst: nn.Sequential, *, out_idx: Tensor, in_idx: Tensor) -> None:
    """A conv-BN(-activation) unit: the conv keeps ``out_idx`` filters over ``in_idx`` inputs, BN follows."""
    cut_conv(src[0], dst[0], out_idx=out_idx, in_idx=in_idx)
    cut_bn(src[1], dst[1], out_idx)


@torch.no_grad()
def cut_linear(src: nn.Linear, dst: nn.Linear, *, in_idx: Tensor, out_idx: Tensor | None = None) -> None:
    """Keep the columns ``in_idx`` and the rows ``out_idx`` (all rows, e.g. every class, by default)."""
    check_idx(in_idx, src.in_features, dst.in_features, "linear in")
    dev = src.weight.device
    rows = torch.arange(src.out_features) if out_idx is None else out_idx
    check_idx(rows, src.out_features, dst.out_features, "linear out")
    dst.weight.copy_(src.weight.index_select(0, rows.to(dev)).index_select(1, in_idx.to(dev)))
    if src.bias is not None and dst.bias is not None:
        dst.bias.copy_(src.bias.index_select(0, rows.to(dev)))


def new_student(teacher: M, arch: dict[str, Any], build: Callable[[dict[str, Any]], M],
                inherit: Callable[[M, M], None] | None) -> M:
    """A student of ``arch`` (teacher untouched), made by ``build`` on the teacher's device and in its mode.

    ``inherit(teacher, student)`` copies the kept weights (the family's own job); None leaves the fresh
    random init. Every student is proven by a forward pass before it is returned.
    """
    device = next(teacher.parameters()).device
    student = build(arch).to(device)
    if inherit is not None:
        inherit(teacher, student)
    student.train(teacher.training)
    prove(student, device)
    return student


@torch.no_grad()
def prove(student: nn.Module, device: torch.device) -> None:
    """A forward pass on a dummy batch of the arch's input size proves every cut shape."""
    arch = student.arch  # type: ignore[attr-defined]
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
