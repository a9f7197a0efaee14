"""Mixed precision and memory layout for the offline training loops (teacher, distillation, exits).

On a CPU with AVX-512 BF16 (the 2-core development machine: AMD Zen 5) a ResNet-18 step runs about
4x faster under bfloat16 autocast with channels-last tensors than in float32 NCHW (width 16: 0.5
against 1.9 min an epoch of CIFAR-10; docs/results.md, "Training speed"). Autocast keeps the weights,
the optimiser state, batch norm and the losses in float32 and runs convolutions and matmuls in
bfloat16, whose 8-bit exponent needs no loss scaling (unlike float16). Evaluation and every exported
graph stay float32, so no measured accuracy depends on this choice except through training itself.

    precision = resolve_precision("auto", device)
    with autocast(device, precision):
        loss = criterion(model(x), y)
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


def bf16_fast(device: torch.device) -> bool:
    """Whether bfloat16 autocast is native (not emulated) on ``device``."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # Without AVX-512 BF16 (or AMX) oneDNN emulates bf16 convolutions, slower than float32.
        return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
                    or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    """"fp32" or "bf16": ``auto`` is bf16 where it is native on ``device``, else fp32."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    if name == "auto":
        return "bf16" if bf16_fast(device) else "fp32"
    return name


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[None]:
    """Autocast to bfloat16 on ``device`` for precision "bf16"; a no-op context for "fp32"."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with 4-D weights in channels-last layout (oneDNN's and cuDNN's fast path), in place."""
    return model.to(memory_format=torch.channels_last)


def channels_last(x: Tensor) -> Tensor:
    """A (B, C, H, W) batch in channels-last layout; other ranks unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x
