"""The OIP codec: round trips for every datatype, and hostile messages rejected with a named reason."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.oip import (
    DEADLINE_HEADER,
    HEADER_LENGTH,
    MAX_RANK,
    InferRequest,
    ProtocolError,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    parse_deadline_ms,
    resolve_outputs,
)

MAX = 1 << 20
RNG = np.random.default_rng(0)

ARRAYS: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": RNG.integers(0, 256, size=(2, 1, 3, 3), dtype=np.uint8),
    "INT32": np.array([-(2**31), 0, 2**31 - 1], dtype=np.int32),
    "INT64": np.array([[-(2**63), 7], [2**63 - 1, 0]], dtype=np.int64),
    "FP16": np.array([0.5, -2.0, 65504.0], dtype=np.float16),
    "FP32": RNG.standard_normal((3, 4)).astype(np.float32),
    "FP64": np.array([1e-300, -1e300, 0.1]),
    "BYTES": np.array([b"edge", b"", b"cloud", b"edge-fallback"], dtype=object),
    "EMPTY": np.zeros((0, 1, 8, 8), dtype=np.uint8),
}


def _request(header: dict[str, Any], *chunks: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    headers = {HEADER_LENGTH: str(len(head))} if chunks else {}
    return head + b"".join(chunks), headers


def _reject(body: bytes, headers: dict[str, str], status: int, *words: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_request(body, headers, max_bytes=MAX)
    assert info.value.status_code == status, str(info.value)
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value}"
    return info.value


# ------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("kind", list(ARRAYS))
def test_request_round_trips_every_datatype(kind: str, binary: bool) -> None:
    array = ARRAYS[kind]
    body, headers = encode_request({"x": array, "ids": np.array([1, 2], dtype=np.int64)}, binary=binary,
                                   outputs=("label",), request_id="r-1")
    assert (HEADER_LENGTH in headers) is binary
    request, tensors = decode_request(body, headers, max_bytes=MAX)
    assert request.id == "r-1"
    assert list(tensors) == ["x", "ids"]
    assert tensors["x"].shape == array.shape
    assert tensors["x"].dtype == array.dtype
    np.testing.assert_array_equal(tensors["x"], array)
    assert resolve_outputs(request, ["logits", "label"]) == (["label"], {"label"})


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_response_round_trips_and_mixes_binary_and_json_outputs(binary: bool) -> None:
    outputs = {"label": np.array([3, 1], dtype=np.int64), "source": np.array(["edge", "cloud"], dtype=object),
               "logits": ARRAYS["FP32"]}
    chosen = {"label", "logits"} if binary else set()
    body, headers = encode_response("edge", outputs, binary=chosen, request_id="7")
    response, arrays = decode_response(body, headers)
    assert response.model_name == "edge" and response.id == "7"
    assert {o.name for o in response.outputs if o.data is None} == chosen
    np.testing.assert_array_equal(arrays["label"], outputs["label"])
    np.testing.assert_array_equal(arrays["logits"], outputs["logits"])
    assert list(arrays["source"]) == [b"edge", b"cloud"]


def test_binary_bytes_carry_non_utf8_but_json_refuses_them() -> None:
    raw = np.array([b"\xff\x00", b"ok"], dtype=object)
    body, headers = encode_request({"b": raw})
    _, tensors = decode_request(body, headers, max_bytes=MAX)
    assert list(tensors["b"]) == [b"\xff\x00", b"ok"]
    with pytest.raises(ValueError, match="not UTF-8"):
        encode_request({"b": raw}, binary=False)


def test_nested_json_data_is_accepted_row_major() -> None:
    body, headers = _request({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT32",
                                          "data": [[1, 2], [3, 4]]}]})
    _, tensors = decode_request(body, headers, max_bytes=MAX)
    np.testing.assert_array_equal(tensors["x"], np.array([[1, 2], [3, 4]], dtype=np.int32))


def test_headers_are_case_insensitive_even_in_a_plain_dict() -> None:
    body, headers = encode_request({"x": ARRAYS["UINT8"]})
    lowered = {k.lower(): v for k, v in headers.items()}
    _, tensors = decode_request(body, lowered, max_bytes=MAX)
    np.testing.assert_array_equal(tensors["x"], ARRAYS["UINT8"])


def test_tritonclient_request_bytes_decode() -> None:
    """Bytes as tritonclient builds them (its defaults: binary inputs, binary outputs) parse here."""
    httpclient = pytest.importorskip("tritonclient.http")
    from tritonclient.http._utils import _get_inference_request

    x = ARRAYS["UINT8"]
    tensor = httpclient.InferInput("input", list(x.shape), "UINT8")
    tensor.set_data_from_numpy(x)
    body, json_size = _get_inference_request([tensor], "id-9", None, 0, False, False, 0, None, None)
    request, tensors = decode_request(body, {HEADER_LENGTH: str(json_size)}, max_bytes=MAX)
    np.testing.assert_array_equal(tensors["input"], x)
    assert resolve_outputs(request, ["logits", "label"]) == (["logits", "label"], {"logits", "label"})


# --------------------------------------------------------------------------------- output choice


def test_outputs_default_to_json_and_follow_the_request_and_output_flags() -> None:
    def req(header: dict[str, Any]) -> InferRequest:
        return InferRequest.model_validate({"inputs": [{"name": "x", "shape": [0], "datatype": "FP32",
                                                        "data": []}], **header})

    assert resolve_outputs(req({}), ["a", "b"]) == (["a", "b"], set())
    assert resolve_outputs(req({"parameters": {"binary_data_output": True}}), ["a", "b"]) == (["a", "b"],
                                                                                               {"a", "b"})
    mixed = req({"parameters": {"binary_data_output": True},
                 "outputs": [{"name": "b"}, {"name": "a", "parameters": {"binary_data": False}}]})
    assert resolve_outputs(mixed, ["a", "b"]) == (["b", "a"], {"b"})
    with pytest.raises(ProtocolError, match="unknown output 'c'"):
        resolve_outputs(req({"outputs": [{"name": "c"}]}), ["a", "b"])
    with pytest.raises(ProtocolError, match="requested twice"):
        resolve_outputs(req({"outputs": [{"name": "a"}, {"name": "a"}]}), ["a", "b"])
    with pytest.raises(ProtocolError, match="binary_data must be true or false"):
        resolve_outputs(req({"outputs": [{"name": "a", "parameters": {"binary_data": "yes"}}]}), ["a"])


def test_deadline_header_parses_or_names_the_bad_value() -> None:
    assert parse_deadline_ms({}) is None
    assert parse_deadline_ms({DEADLINE_HEADER.lower(): "250.5"}) == 250.5
    for junk in ("soon", "nan", "inf"):
        with pytest.raises(ProtocolError, match=DEADLINE_HEADER):
            parse_deadline_ms({DEADLINE_HEADER: junk})


# ---------------------------------------------------------------------------------- hostile input


def _fp32(name: str, shape: list[int], n_bytes: int) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": "FP32", "parameters": {"binary_data_size": n_bytes}}


def test_empty_and_unparseable_bodies() -> None:
    _reject(b"", {}, 400, "empty body")
    _reject(b"{not json", {}, 400, "not valid JSON")
    _reject(b"\xff\xfe", {}, 400, "not valid JSON")
    _reject(b"[1, 2]", {}, 400, "JSON object")
    _reject(b"[" * 100_000 + b"]" * 100_000, {}, 400)


def test_schema_violations_are_422_naming_the_field() -> None:
    _reject(b"{}", {}, 422, "inputs")
    _reject(json.dumps({"inputs": []}).encode(), {}, 422, "inputs")
    bad_shape = {"name": "x", "shape": ["2"], "datatype": "FP32", "data": [1, 2]}
    _reject(json.dumps({"inputs": [bad_shape]}).encode(), {}, 422, "shape")
    _reject(json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1],
                                    "colour": "red"}]}).encode(), {}, 422, "colour")


@pytest.mark.parametrize("declared", ["abc", "-5", "0", "1000000", "12.5"])
def test_lying_header_length_is_refused(declared: str) -> None:
    body, _ = encode_request({"x": ARRAYS["FP32"]})
    _reject(body, {HEADER_LENGTH: declared}, 400, HEADER_LENGTH)


def test_binary_sizes_must_sum_to_the_bytes_that_follow() -> None:
    x = ARRAYS["FP32"]
    body, headers = encode_request({"x": x})
    _reject(body + b"\x00", headers, 400, "sum to 48 bytes but 49 bytes follow")
    _reject(body[:-1], headers, 400, "sum to 48 bytes but 47 bytes follow")
    # Binary tensors without the header-length header: all bytes look like JSON, which then fails.
    _reject(body, {}, 400, "not valid JSON")
    # JSON-only request followed by stray bytes.
    head, _ = encode_request({"x": x}, binary=False)
    _reject(head + b"junk", {HEADER_LENGTH: str(len(head))}, 400, "sum to 0 bytes but 4 bytes follow",
            "missing or wrong")


def test_byte_count_must_match_the_shape() -> None:
    body, headers = _request({"inputs": [_fp32("x", [2, 3], 20)]}, b"\x00" * 20)
    _reject(body, headers, 400, "'x'", "needs 24 bytes, got 20")


def test_shapes_are_checked_before_anything_is_allocated() -> None:
    body, headers = _request({"inputs": [_fp32("x", [2, -3], 0)]}, b"")
    _reject(body, headers, 400, "negative dimension")
    # A product that would overflow int64 is just a big Python int, refused as too large (413).
    body, headers = _request({"inputs": [_fp32("x", [2**62, 2**62], 8)]}, b"\x00" * 8)
    _reject(body, headers, 413, "'x'", "more than the limit")
    body, headers = _request({"inputs": [{"name": "x", "shape": [10**9], "datatype": "FP32", "data": [1.0]}]})
    _reject(body, headers, 413, "'x'")
    body, headers = _request({"inputs": [_fp32("x", [1] * (MAX_RANK + 1), 4)]}, b"\x00" * 4)
    _reject(body, headers, 400, "rank")


def test_body_over_the_limit_is_413() -> None:
    body, headers = encode_request({"x": np.zeros(MAX // 4 + 1, dtype=np.float32)})
    _reject(body, headers, 413, "exceeds the limit")


def test_unknown_datatype_is_named() -> None:
    body, headers = _request({"inputs": [{"name": "x", "shape": [1], "datatype": "FP8", "data": [1]}]})
    _reject(body, headers, 400, "'x'", "unknown datatype 'FP8'")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_non_finite_floats_are_refused_naming_the_input(bad: float, binary: bool) -> None:
    x = np.array([[0.0, bad]], dtype=np.float32)
    if binary:
        body, headers = encode_request({"pixels": x})
    else:  # json.dumps writes NaN/Infinity literals, which a sloppy client could send
        body, headers = _request({"inputs": [{"name": "pixels", "shape": [1, 2], "datatype": "FP32",
                                              "data": x.reshape(-1).tolist()}]})
    _reject(body, headers, 400, "'pixels'", "NaN or Inf")


def test_json_overflow_to_inf_is_refused() -> None:
    body, headers = _request({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1e39]}]})
    _reject(body, headers, 400, "NaN or Inf")


@pytest.mark.parametrize(
    ("datatype", "data", "words"),
    [
        ("UINT8", [1, 300], ("out of range", "UINT8")),
        ("UINT8", [-1, 3], ("out of range",)),
        ("INT32", [1.5, 2], ("must be integers",)),
        ("INT64", [2**70, 1], ("must be integers",)),
        ("FP32", ["1.5", 2], ("must be numbers",)),
        ("FP32", [True, False], ("must be numbers",)),
        ("BOOL", [1, 0], ("true/false",)),
        ("BYTES", [1, 2], ("JSON strings",)),
    ],
)
def test_json_values_must_fit_the_datatype(datatype: str, data: list[Any], words: tuple[str, ...]) -> None:
    body, headers = _request({"inputs": [{"name": "v", "shape": [2], "datatype": datatype, "data": data}]})
    _reject(body, headers, 400, "'v'", *words)


def test_json_data_count_and_nesting_must_match_the_shape() -> None:
    def tensor(data: list[Any]) -> dict[str, Any]:
        return {"inputs": [{"name": "v", "shape": [2, 2], "datatype": "INT32", "data": data}]}

    _reject(*_request(tensor([1, 2, 3])), 400, "'v'", "needs 4 values, got 3")
    _reject(*_request(tensor([[1, 2], [3]])), 400, "nested data does not match")
    _reject(*_request(tensor([[[1], [2]], [[3], [4]]])), 400, "deeper than shape")


def test_tensor_must_have_exactly_one_of_data_and_binary_size() -> None:
    _reject(*_request({"inputs": [{"name": "v", "shape": [1], "datatype": "FP32"}]}), 400,
            "neither data nor binary_data_size")
    tensor = {**_fp32("v", [1], 4), "data": [1.0]}
    _reject(*_request({"inputs": [tensor]}, b"\x00" * 4), 400, "both JSON data and binary_data_size")
    for size in (-4, "4", 4.0, True):
        _reject(*_request({"inputs": [_fp32("v", [1], size)]}, b"\x00" * 4), 400, "binary_data_size must be")


def test_duplicate_input_names_are_refused() -> None:
    body, headers = _request({"inputs": [_fp32("v", [1], 4), _fp32("v", [1], 4)]}, b"\x00" * 8)
    _reject(body, headers, 400, "'v' appears twice")


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"\x02\x00\x00", ("no length prefix",)),  # 3 bytes cannot hold even one 4-byte prefix
        (struct.pack("<I", 100) + b"abc" + struct.pack("<I", 0), ("declares 100 bytes",)),
        (struct.pack("<I", 1) + b"a" + struct.pack("<I", 0) + b"zz", ("2 bytes left",)),
    ],
)
def test_binary_bytes_are_bounds_checked(payload: bytes, words: tuple[str, ...]) -> None:
    tensor = {"name": "s", "shape": [2], "datatype": "BYTES",
              "parameters": {"binary_data_size": len(payload)}}
    body, headers = _request({"inputs": [tensor]}, payload)
    # A payload too short to hold the prefixes at all is refused before any loop.
    error = _reject(body, headers, 400, "'s'")
    assert any(w in str(error) for w in (*words, "cannot hold"))


def test_binary_bool_bytes_must_be_zero_or_one() -> None:
    tensor = {"name": "b", "shape": [2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}}
    _reject(*_request({"inputs": [tensor]}, b"\x01\x02"), 400, "'b'", "0 or 1")


def test_responses_are_checked_as_carefully() -> None:
    body, headers = encode_response("teacher", {"logits": ARRAYS["FP32"]}, binary={"logits"})
    with pytest.raises(ProtocolError, match="follow the JSON header"):
        decode_response(body[:-4], headers)
    with pytest.raises(ProtocolError, match=HEADER_LENGTH):
        decode_response(body, {HEADER_LENGTH: str(len(body) + 1)})
    with pytest.raises(ProtocolError, match="InferResponse"):
        decode_response(b'{"error": "overloaded"}', {})


# ------------------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=256),
       header_len=st.one_of(st.none(), st.integers(-5, 300).map(str), st.text()))
def test_random_bytes_raise_only_protocol_errors(body: bytes, header_len: str | None) -> None:
    headers = {} if header_len is None else {HEADER_LENGTH: header_len}
    try:
        decode_request(body, headers, max_bytes=1024)
    except ProtocolError as err:
        assert err.status_code in (400, 413, 422)


@settings(max_examples=300, deadline=None)
@given(
    shape=st.lists(st.integers(-3, 2**40), max_size=5),
    datatype=st.sampled_from(["UINT8", "FP32", "INT64", "BOOL", "BYTES", "FP16", "X"]),
    size=st.one_of(st.integers(-2, 64), st.just(None)),
    payload=st.binary(max_size=64),
)
def test_mutated_headers_raise_only_protocol_errors(shape: list[int], datatype: str, size: int | None,
                                                    payload: bytes) -> None:
    tensor: dict[str, Any] = {"name": "x", "shape": shape, "datatype": datatype}
    if size is not None:
        tensor["parameters"] = {"binary_data_size": size}
    body, headers = _request({"inputs": [tensor]}, payload)
    try:
        _, tensors = decode_request(body, headers, max_bytes=4096)
    except ProtocolError as err:
        assert err.status_code in (400, 413, 422)
    else:
        assert list(tensors["x"].shape) == shape


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    shape=st.lists(st.integers(0, 4), max_size=3),
    datatype=st.sampled_from(["UINT8", "INT64", "FP32", "FP64", "BOOL", "BYTES"]),
    data=st.lists(_JSON_VALUES, max_size=8),
)
def test_random_json_data_raises_only_protocol_errors(shape: list[int], datatype: str,
                                                       data: list[Any]) -> None:
    body, headers = _request({"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]})
    try:
        _, tensors = decode_request(body, headers, max_bytes=4096)
    except ProtocolError as err:
        assert err.status_code in (400, 413, 422)
    else:
        assert list(tensors["x"].shape) == shape
