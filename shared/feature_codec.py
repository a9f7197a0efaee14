"""The split feature on the wire: per-tensor affine integer quantisation, bit-packed (numpy only).

Both sides of a split use it: the device quantises the head's feature and the server's tail
dequantises it. A feature x (float32, any shape) becomes integers q in [0, 2^bits - 1] with

    x ~ scale * (q - zero_point),   scale = (max - min) / (2^bits - 1),   zero_point = round(-min / scale)

one (scale, zero_point) per tensor (a request's whole batch), as in integer-only inference
(Jacob et al. 2018). 8-, 4- and 2-bit codes are packed little-end first into bytes (two 4-bit or
four 2-bit codes a byte), so a 196-value feature costs 196, 98 or 49 bytes. On the Open Inference
Protocol it is one UINT8 tensor `feature` of shape [N, packed bytes per sample], and the request's
parameters carry `scale`, `zero_point` and `bits` (`parameters_of` / `from_request`); a bad one is a
ProtocolError (400) that names it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.oip import ProtocolError

BITS: tuple[int, ...] = (8, 4, 2)
"""Bit widths a feature may be sent with."""
FEATURE = "feature"
"""Name of the OIP input tensor holding the packed codes."""


@dataclass(frozen=True)
class QuantizedFeature:
    """A packed feature: codes for N samples of `shape`, and how to turn them back into floats."""

    packed: np.ndarray      # (N, packed_bytes(shape, bits)) uint8
    shape: tuple[int, ...]  # per-sample shape of the float feature, e.g. (C, H, W)
    scale: float
    zero_point: int
    bits: int

    @property
    def nbytes(self) -> int:
        """Payload bytes on the wire (the codes only)."""
        return int(self.packed.size)


def packed_bytes(shape: Sequence[int], bits: int) -> int:
    """Bytes one sample of `shape` takes at `bits` per value."""
    _check_bits(bits)
    return math.ceil(math.prod(shape) * bits / 8)


def _check_bits(bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in BITS:
        raise ProtocolError(f"parameter bits must be one of {list(BITS)}, got {bits!r}")
    return bits


def quantize(x: np.ndarray, bits: int) -> QuantizedFeature:
    """(N, *shape) float -> QuantizedFeature with one scale and zero point for the whole tensor."""
    _check_bits(bits)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2:
        raise ValueError(f"feature must be (N, ...) with a batch axis, got shape {list(x.shape)}")
    if not np.isfinite(x).all():
        raise ValueError("feature holds NaN or inf; it cannot be quantised")
    levels = (1 << bits) - 1
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    lo, hi = min(lo, 0.0), max(hi, 0.0)  # 0 stays exactly representable (padding, ReLU zeros)
    scale = (hi - lo) / levels if hi > lo else 1.0
    zero_point = int(np.clip(round(-lo / scale), 0, levels))
    q = np.clip(np.rint(x / scale) + zero_point, 0, levels).astype(np.uint8)
    n = x.shape[0]
    return QuantizedFeature(packed=pack(q.reshape(n, -1), bits), shape=tuple(x.shape[1:]), scale=float(scale),
                            zero_point=zero_point, bits=bits)


def dequantize(feature: QuantizedFeature) -> np.ndarray:
    """QuantizedFeature -> (N, *shape) float32 = scale * (q - zero_point)."""
    count = math.prod(feature.shape)
    q = unpack(feature.packed, feature.bits, count)  # (N, count) uint8
    x = (q.astype(np.float32) - np.float32(feature.zero_point)) * np.float32(feature.scale)
    return x.reshape(len(q), *feature.shape)


def pack(q: np.ndarray, bits: int) -> np.ndarray:
    """(N, L) codes < 2^bits -> (N, ceil(L * bits / 8)) uint8; code i sits at bits (i % per) * bits of its byte."""
    _check_bits(bits)
    q = np.asarray(q, dtype=np.uint8)
    if bits == 8:
        return np.ascontiguousarray(q)
    per = 8 // bits
    n, length = q.shape
    padded = np.zeros((n, math.ceil(length / per) * per), dtype=np.uint8)
    padded[:, :length] = q
    groups = padded.reshape(n, -1, per)  # (N, bytes, per)
    shifts = (np.arange(per, dtype=np.uint8) * bits).astype(np.uint8)
    return np.bitwise_or.reduce(groups << shifts, axis=2).astype(np.uint8)


def unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of `pack`: (N, B) uint8 -> (N, count) codes."""
    _check_bits(bits)
    if bits == 8:
        return packed[:, :count]
    per = 8 // bits
    shifts = (np.arange(per, dtype=np.uint8) * bits).astype(np.uint8)
    mask = np.uint8((1 << bits) - 1)
    codes = (packed[:, :, None] >> shifts) & mask  # (N, B, per)
    return codes.reshape(len(packed), -1)[:, :count]


def parameters_of(feature: QuantizedFeature) -> dict[str, Any]:
    """The request parameters that travel with a packed feature."""
    return {"scale": feature.scale, "zero_point": feature.zero_point, "bits": feature.bits}


def from_request(tensors: Mapping[str, np.ndarray], parameters: Mapping[str, Any], *,
                 shape: Sequence[int]) -> QuantizedFeature:
    """The QuantizedFeature a request carries for a tail whose feature has per-sample `shape`.

    ProtocolError (400) names the first bad tensor or parameter: a missing or non-finite scale, a
    zero point outside [0, 2^bits), an unknown bit width, or a tensor of the wrong dtype or width.
    """
    unknown = [name for name in tensors if name != FEATURE]
    if unknown:
        raise ProtocolError(f"unknown input {unknown[0]!r}; a split tail takes only {FEATURE!r}")
    if FEATURE not in tensors:
        raise ProtocolError(f"a split tail needs input {FEATURE!r} (UINT8 packed codes)")
    for name in ("scale", "zero_point", "bits"):
        if name not in parameters:
            raise ProtocolError(f"parameter {name} is missing; a packed feature needs scale, zero_point and bits")
    bits = _check_bits(parameters["bits"])
    scale = parameters["scale"]
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale) or scale <= 0:
        raise ProtocolError(f"parameter scale must be a finite number > 0, got {scale!r}")
    zero_point = parameters["zero_point"]
    levels = (1 << bits) - 1
    if isinstance(zero_point, bool) or not isinstance(zero_point, int) or not 0 <= zero_point <= levels:
        raise ProtocolError(f"parameter zero_point must be an integer in [0, {levels}] for {bits} bits, "
                            f"got {zero_point!r}")
    packed = tensors[FEATURE]
    width = packed_bytes(shape, bits)
    if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] != width:
        raise ProtocolError(f"input {FEATURE!r} must be UINT8 of shape [N, {width}] ({list(shape)} at {bits} "
                            f"bits), got {packed.dtype} {list(packed.shape)}")
    return QuantizedFeature(packed=packed, shape=tuple(int(d) for d in shape), scale=float(scale),
                            zero_point=zero_point, bits=bits)
