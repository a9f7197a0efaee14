"""Encoded images (JPEG, PNG, anything Pillow reads) to the raw pixels a model takes, and back.

A device holds a photo as a file, not as pixels: a CIFAR-10 JPEG is about 1 KB, its pixels 3 KB as
uint8 and 12 KB as float32. Every tier therefore accepts the file itself as an OIP BYTES tensor
(shape [N], one encoded image per element) and decodes it here, so that the edge can forward what it
received to the cloud without re-encoding (Zhang et al. §III ship the sample, and the cheapest honest
form of the sample is the one the device already has). Training data is read through the same
`pixels_of`, so a served file becomes bit for bit the pixels its model was trained on.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_PIXELS = 50_000_000
"""Largest image (width x height) decoded: past it a request is refused before its pixels are
allocated (a few KB of PNG can declare gigapixels). Pillow's own bomb limit is about 89 M."""
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
"""Pillow modes that carry one grey channel; anything else is read as RGB."""


class ImageDecodeError(ValueError):
    """An element that is not a readable image, or one too large to decode; the message names it."""


def open_image(data: bytes, *, where: str, load: bool = True) -> Any:  # -> PIL.Image.Image
    """Pillow image of `data`; `load` decodes the pixels too, so a truncated file fails here, naming `where`.
    The header's size is checked first: past `MAX_PIXELS` nothing is decoded."""
    from PIL import Image, UnidentifiedImageError

    unreadable = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)
    try:
        image = Image.open(io.BytesIO(data))
    except unreadable as exc:
        raise ImageDecodeError(f"{where}: not a readable image ({exc})") from exc
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(f"{where}: {width}x{height} pixels is more than {MAX_PIXELS:,}; send a smaller image")
    if load:
        try:
            image.load()
        except unreadable as exc:
            raise ImageDecodeError(f"{where}: not a readable image ({exc})") from exc
    return image


def pixels_of(image: Any, *, channels: int, size: tuple[int, int]) -> np.ndarray:
    """(C, H, W) uint8 of one Pillow image, converted to `channels` (1 or 3) and resized to `size` (H, W)."""
    from PIL import Image

    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)  # PIL sizes are (W, H)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # (C, H, W)


def decode_batch(encoded: np.ndarray, *, shape: tuple[int, int, int], name: str = "input") -> np.ndarray:
    """(N, C, H, W) uint8 from an (N,) array of encoded images; ImageDecodeError names the bad element."""
    c, h, w = shape
    if c not in (1, 3):
        raise ImageDecodeError(f"input {name!r}: this model takes {c}-channel inputs; encoded images decode "
                               "to 1 (grey) or 3 (RGB) channels, so send raw pixels")
    flat = encoded.reshape(-1)
    out = np.empty((len(flat), c, h, w), dtype=np.uint8)
    for i, item in enumerate(flat):
        if not isinstance(item, bytes | bytearray):
            raise ImageDecodeError(f"input {name!r}: element {i} is {type(item).__name__}, not an encoded image")
        out[i] = pixels_of(open_image(bytes(item), where=f"input {name!r} element {i}"), channels=c, size=(h, w))
    return out


def as_bytes_tensor(files: Sequence[bytes]) -> np.ndarray:
    """(N,) object array of files: what a BYTES tensor is on either side of the wire (shared.oip)."""
    out = np.empty(len(files), dtype=object)
    out[:] = list(files)
    return out


def encode_image(pixels: np.ndarray, *, fmt: str = "PNG", quality: int = 90) -> bytes:
    """One (C, H, W) uint8 image as a file (PNG: lossless; JPEG at `quality`), as a device would hold it."""
    from PIL import Image

    array = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)  # (H, W) or (H, W, C)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format=fmt, quality=quality)
    return buffer.getvalue()
