"""The split feature's wire format: quantise, pack, send as OIP, parse, dequantise."""

from __future__ import annotations

import numpy as np
import pytest

from shared.feature_codec import (
    BITS,
    FEATURE,
    dequantize,
    from_request,
    pack,
    packed_bytes,
    parameters_of,
    quantize,
    unpack,
)
from shared.oip import ProtocolError, decode_request, encode_request


@pytest.mark.parametrize("bits", BITS)
def test_pack_unpack_roundtrip_with_odd_lengths(bits: int) -> None:
    rng = np.random.default_rng(bits)
    q = rng.integers(0, 1 << bits, size=(3, 13), dtype=np.uint8)
    packed = pack(q, bits)
    assert packed.shape == (3, packed_bytes((13,), bits))
    assert np.array_equal(unpack(packed, bits, 13), q)


@pytest.mark.parametrize("bits", BITS)
def test_quantisation_error_is_within_half_a_step(bits: int) -> None:
    x = np.random.default_rng(0).normal(size=(2, 4, 7, 7)).astype(np.float32)
    feature = quantize(x, bits)
    back = dequantize(feature)
    assert back.shape == x.shape
    assert np.abs(back - x).max() <= feature.scale / 2 + 1e-6
    assert feature.nbytes == 2 * packed_bytes((4, 7, 7), bits)


def test_bytes_shrink_with_bits() -> None:
    assert [packed_bytes((4, 7, 7), b) for b in (8, 4, 2)] == [196, 98, 49]


def test_zero_stays_exact() -> None:
    x = np.array([[0.0, 0.5, 3.0, 0.0]], np.float32)
    assert dequantize(quantize(x, 2))[0, 0] == 0.0


def test_a_request_crosses_the_wire_and_parses() -> None:
    x = np.random.default_rng(1).normal(size=(1, 4, 2, 2)).astype(np.float32)
    feature = quantize(x, 4)
    body, headers = encode_request({FEATURE: feature.packed}, parameters=parameters_of(feature))
    request, tensors = decode_request(body, headers, max_bytes=1 << 20)
    parsed = from_request(tensors, request.parameters or {}, shape=(4, 2, 2))
    assert np.array_equal(dequantize(parsed), dequantize(feature))


@pytest.mark.parametrize(("params", "needle"), [
    ({"scale": 0.1, "zero_point": 3}, "bits is missing"),
    ({"scale": 0.1, "zero_point": 3, "bits": 3}, "bits must be one of"),
    ({"scale": -1.0, "zero_point": 3, "bits": 4}, "scale must be"),
    ({"scale": float("nan"), "zero_point": 3, "bits": 4}, "scale must be"),
    ({"scale": 0.1, "zero_point": 16, "bits": 4}, "zero_point must be an integer in [0, 15]"),
    ({"scale": 0.1, "zero_point": 1.5, "bits": 4}, "zero_point"),
])
def test_bad_parameters_are_named(params: dict, needle: str) -> None:
    packed = np.zeros((1, packed_bytes((4, 2, 2), 4)), np.uint8)
    with pytest.raises(ProtocolError, match=needle.replace("[", r"\[").replace("]", r"\]")) as err:
        from_request({FEATURE: packed}, params, shape=(4, 2, 2))
    assert err.value.status_code == 400


def test_wrong_width_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"shape \[N, 8\]"):
        from_request({FEATURE: np.zeros((1, 9), np.uint8)}, {"scale": 1.0, "zero_point": 0, "bits": 4},
                     shape=(4, 2, 2))
