"""Encoded images to model pixels: lossless round trips, resizing, channels, and errors that name the element."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.image_codec import MAX_PIXELS, ImageDecodeError, as_bytes_tensor, decode_batch, encode_image
from shared.preprocess import ImagePreprocessor, InputError


def png(array: np.ndarray) -> bytes:
    """(C, H, W) uint8 as a PNG file (lossless, so decoding must give the pixels back exactly)."""
    return encode_image(array, fmt="PNG")


def test_png_round_trips_exactly_in_rgb_and_grey() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
    grey = rng.integers(0, 17, size=(3, 1, 8, 8), dtype=np.uint8)
    np.testing.assert_array_equal(decode_batch(as_bytes_tensor([png(a) for a in rgb]), shape=(3, 32, 32)), rgb)
    np.testing.assert_array_equal(decode_batch(as_bytes_tensor([png(a) for a in grey]), shape=(1, 8, 8)), grey)


def test_jpeg_decodes_close_to_its_pixels_and_other_sizes_are_resized() -> None:
    smooth = np.broadcast_to(np.linspace(0, 255, 32, dtype=np.uint8)[None, None, :], (3, 32, 32)).copy()
    out = decode_batch(as_bytes_tensor([encode_image(smooth, fmt="JPEG", quality=95)]), shape=(3, 32, 32))
    assert out.shape == (1, 3, 32, 32) and out.dtype == np.uint8
    assert np.abs(out[0].astype(int) - smooth.astype(int)).mean() < 3  # lossy, but close on a gradient
    big = np.full((3, 96, 64), 200, dtype=np.uint8)
    resized = decode_batch(as_bytes_tensor([png(big)]), shape=(3, 32, 32))
    assert resized.shape == (1, 3, 32, 32) and (resized == 200).all()
    # A grey file for an RGB model is repeated over the channels; an RGB file for a grey model is converted.
    to_rgb = decode_batch(as_bytes_tensor([png(np.full((1, 8, 8), 90, np.uint8))]), shape=(3, 8, 8))
    assert (to_rgb == 90).all()
    to_grey = decode_batch(as_bytes_tensor([png(np.full((3, 8, 8), 90, np.uint8))]), shape=(1, 8, 8))
    assert to_grey.shape == (1, 1, 8, 8) and (to_grey == 90).all()


def test_a_bad_element_is_named_by_its_index() -> None:
    good = png(np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ImageDecodeError, match=r"element 1: not a readable image"):
        decode_batch(as_bytes_tensor([good, b"\xff\xd8 not really a jpeg", good]), shape=(3, 8, 8))
    with pytest.raises(ImageDecodeError, match=r"element 0: not a readable image"):
        decode_batch(as_bytes_tensor([good[: len(good) // 2]]), shape=(3, 8, 8))  # truncated
    with pytest.raises(ImageDecodeError, match=r"element 0 is str"):
        decode_batch(np.array(["hello"], dtype=object), shape=(3, 8, 8))
    with pytest.raises(ImageDecodeError, match="4-channel"):
        decode_batch(as_bytes_tensor([good]), shape=(4, 8, 8))


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding() -> None:
    side = int(MAX_PIXELS**0.5) + 10
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")  # a few KB that would decode to ~50 MB
    assert len(buffer.getvalue()) < 200_000
    with pytest.raises(ImageDecodeError, match="send a smaller image"):
        decode_batch(as_bytes_tensor([buffer.getvalue()]), shape=(1, 8, 8))


def test_the_preprocessor_takes_encoded_images_and_names_bad_ones() -> None:
    pre = ImagePreprocessor(shape=(3, 8, 8), dtype="uint8", mean=[0, 0, 0], std=[1, 1, 1])
    pixels = np.arange(3 * 8 * 8, dtype=np.uint8).reshape(1, 3, 8, 8)
    np.testing.assert_array_equal(pre.check(as_bytes_tensor([png(pixels[0])])), pixels)
    with pytest.raises(InputError, match=r"element 0: not a readable image"):
        pre.check(as_bytes_tensor([b"junk"]))
    with pytest.raises(InputError, match=r"shape \[N\]"):
        pre.check(as_bytes_tensor([png(pixels[0])]).reshape(1, 1))
    floats = ImagePreprocessor(shape=(3, 8, 8), dtype="float32", mean=[0, 0, 0], std=[1, 1, 1])
    with pytest.raises(InputError, match="not images"):
        floats.check(as_bytes_tensor([png(pixels[0])]))
