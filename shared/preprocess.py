"""The one normalisation and the one raw-input check, used by serving, training and the ONNX parity check.

Every model that takes raw pixels was trained on x = (raw - mean) / std per channel. That is
computed here, and only here, as one float32 multiply-add, x = raw * (1 / std) + (-mean / std):
the same arithmetic in numpy (`normalize`) and in torch (`compression/data.py` takes `scale` and
`shift` from `affine`), so what the edge and the cloud feed a graph is bit for bit what the
training loop and the parity check fed it.

`ImagePreprocessor` is the serving side: it checks a raw batch against the bundle's input spec
(shape, dtype, finiteness, range) before any model sees it, and normalises it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.image_codec import ImageDecodeError, decode_batch
from shared.oip import ProtocolError, datatype_of

ACCEPTED_DTYPES: tuple[np.dtype[Any], ...] = (np.dtype(np.uint8), np.dtype(np.float32))
"""UINT8 are raw pixels as the dataset stores them; FP32 are pixel values on that same raw scale."""


def is_encoded(x: Any) -> bool:
    """True for a BYTES tensor as OIP decodes it (an object array): encoded images, not pixels."""
    return isinstance(x, np.ndarray) and x.dtype == object


def _datatype(x: np.ndarray) -> str:
    """The OIP name of an array's datatype (what the client sent), else numpy's name."""
    try:
        return datatype_of(x)
    except (ValueError, ProtocolError):
        return str(x.dtype)


class InputError(ProtocolError):
    """A batch a model cannot take (wrong shape, dtype, NaN, out of range); answered 400, message says why."""


def affine(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift), each float32 (1, C, 1, 1), such that normalised = raw * scale + shift."""
    m = np.asarray(mean, dtype=np.float32).reshape(-1)
    s = np.asarray(std, dtype=np.float32).reshape(-1)
    if m.shape != s.shape or m.size == 0:
        raise ValueError(f"normalisation needs one mean and one std per channel, got {list(mean)} and {list(std)}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0) or not np.all(np.isfinite(m)):
        raise ValueError(f"normalisation needs finite means and finite positive std, got {list(mean)} and "
                         f"{list(std)}")
    scale = (np.float32(1.0) / s).astype(np.float32)
    shift = (-m * scale).astype(np.float32)
    return scale[None, :, None, None], shift[None, :, None, None]


def normalize(x_raw: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """float32 (N, C, H, W): (raw - mean) / std per channel, as every model was trained on."""
    x = np.asarray(x_raw)
    if x.ndim != 4:
        raise ValueError(f"normalize expects (N, C, H, W), got shape {x.shape}")
    scale, shift = affine(mean, std)
    if scale.shape[1] != x.shape[1]:
        raise ValueError(f"normalize needs one mean and std per channel ({x.shape[1]}), got {list(mean)} "
                         f"and {list(std)}")
    return apply_affine(x, scale, shift)


def apply_affine(x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    # One multiply and one add, each rounded to float32: torch's `x * scale + shift` rounds alike.
    out = x.astype(np.float32)
    out *= scale
    out += shift
    return out


class ImagePreprocessor:
    """A bundle's raw-image contract: check a (N, C, H, W) batch, then normalise it."""

    def __init__(self, *, shape: Sequence[int], dtype: str, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(shape) != 3:
            raise ValueError(f"input shape {list(shape)} is not [C, H, W]")
        self.sample_shape: tuple[int, ...] = tuple(int(d) for d in shape)
        self.scale, self.shift = affine(mean, std)
        if self.scale.shape[1] != self.sample_shape[0]:
            raise ValueError(f"mean/std have {self.scale.shape[1]} values for {self.sample_shape[0]} channels")
        self.raw_dtype = np.dtype(dtype)

    @classmethod
    def from_spec(cls, spec: Any) -> ImagePreprocessor:
        """From a `shared.bundle.InputSpec` (duck-typed: shape, dtype, mean, std)."""
        return cls(shape=spec.shape, dtype=spec.dtype, mean=spec.mean, std=spec.std)

    def check(self, x: Any, *, name: str = "input") -> np.ndarray:
        """The (N, C, H, W) raw pixels of `x`, else InputError naming why.

        `x` is a batch of raw uint8 or float32 pixels, returned as it is, or an (N,) BYTES batch of
        encoded images (JPEG, PNG: what a device holds), decoded and resized to the model's input.
        """
        if not isinstance(x, np.ndarray):
            raise InputError(f"input {name!r}: must be an array, got {type(x).__name__}")
        if is_encoded(x):
            if x.ndim != 1:
                raise InputError(f"input {name!r}: encoded images go as a BYTES tensor of shape [N], got "
                                 f"{list(x.shape)}")
            if self.raw_dtype != np.uint8:
                raise InputError(f"input {name!r}: this model's inputs are {self.raw_dtype}, not images; send "
                                 "raw values")
            try:
                return decode_batch(x, shape=self.sample_shape, name=name)  # (N, C, H, W) uint8
            except ImageDecodeError as err:
                raise InputError(str(err)) from err
        if x.dtype not in ACCEPTED_DTYPES:
            raise InputError(f"input {name!r}: datatype {_datatype(x)} is not accepted; send UINT8 raw pixels, "
                             "FP32 raw-scale pixels or BYTES encoded images")
        if x.ndim != 4 or tuple(x.shape[1:]) != self.sample_shape:
            want = ", ".join(str(d) for d in self.sample_shape)
            raise InputError(f"input {name!r}: expected shape [-1, {want}], got {list(x.shape)}")
        if x.dtype.kind == "f" and x.size:
            if not np.isfinite(x).all():
                row = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0, 0])
                raise InputError(f"input {name!r}: contains NaN or Inf (first in sample {row})")
            if self.raw_dtype.kind in "iu":
                # Raw-scale pixels live in the stored dtype's range. Checked per request, before requests
                # are merged: a value like 3e38 can overflow a network to NaN and fail a whole merged pass.
                low, high = np.iinfo(self.raw_dtype).min, np.iinfo(self.raw_dtype).max
                if x.min() < low or x.max() > high:
                    raise InputError(f"input {name!r}: values must be raw pixels in [{low}, {high}] "
                                     f"({self.raw_dtype} as stored), got values in [{x.min():g}, {x.max():g}]")
        return x

    async def check_async(self, x: Any, *, name: str = "input") -> np.ndarray:
        """`check` for a server's event loop: encoded images are decoded in a worker thread (a photo
        takes milliseconds), raw pixels are checked inline (microseconds; a thread hop would cost more)."""
        if is_encoded(x):
            return await asyncio.to_thread(self.check, x, name=name)
        return self.check(x, name=name)

    def normalize(self, x_raw: np.ndarray) -> np.ndarray:
        """(N, C, H, W) raw pixels -> float32 normalised, exactly as in training."""
        return apply_affine(x_raw, self.scale, self.shift)
