"""Properties of the binary-tensor codec under hostile input (hypothesis).

tests/shared/test_oip.py has the worked examples and three "only ProtocolError" fuzzers over random
bytes and mutated headers. These properties start from *valid* messages and break them one way at a
time, so each failure mode is reached on every example rather than by luck:

- every strict prefix of a valid message is refused (truncated bodies);
- every `Inference-Header-Content-Length` but the true one is refused (header lengths that lie),
  including any latin-1 text a raw HTTP header can carry;
- shapes whose element count overflows int64, negative dimensions, and declared sizes in the
  gigabytes are refused while the decoder's peak allocation stays under a few hundred KiB
  (tracemalloc sees numpy's buffers): nothing is sized from the declaration;
- NaN and Inf anywhere in a float tensor, as any bit pattern, are refused on requests and responses;
- what is not refused round-trips bit for bit, binary and JSON.

The last two send extreme-but-finite FP32 pixels through both apps (never a 5xx) and check that a
hostile request fails alone, not the requests the edge merged into the same student pass.
"""

from __future__ import annotations

import asyncio
import json
import math
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cloud_server.main import create_app as create_cloud_app
from cloud_server.settings import CloudSettings
from edge_agent.agent import Answers, open_agent
from edge_agent.app import create_app as create_edge_app
from edge_agent.engine import InputError
from edge_agent.settings import EdgeSettings
from shared.oip import (
    HEADER_LENGTH,
    MAX_RANK,
    ProtocolError,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)

MAX_BYTES = 1 << 16
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALLOCATION_CEILING = 256 * 1024
"""Peak bytes a refusal may allocate: far below every declared size tested (>= 1 GiB)."""

_FIXED: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"), "UINT8": np.dtype("u1"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
_FLOATS = {"FP16": 16, "FP32": 32, "FP64": 64}
_SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)


@st.composite
def tensor(draw: st.DrawFn, datatype: str | None = None) -> np.ndarray:
    """A finite array of a wire datatype; BYTES are object arrays of UTF-8 bytes (so JSON can carry them)."""
    kind = datatype or draw(st.sampled_from([*_FIXED, "BYTES"]))
    shape = draw(_SHAPES)
    if kind == "BYTES":
        count = math.prod(shape)
        items = draw(st.lists(st.text(max_size=6).map(str.encode), min_size=count, max_size=count))
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    elements = (st.floats(width=_FLOATS[kind], allow_nan=False, allow_infinity=False)  # type: ignore[arg-type]
                if kind in _FLOATS else None)
    return draw(hnp.arrays(_FIXED[kind], shape, elements=elements))


@st.composite
def request_inputs(draw: st.DrawFn) -> dict[str, np.ndarray]:
    names = draw(st.lists(st.sampled_from(["input", "x", "mask", "ids"]), min_size=1, max_size=3, unique=True))
    return {name: draw(tensor()) for name in names}


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == object:
        return a.shape == b.shape and list(a.reshape(-1)) == list(b.reshape(-1))
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _refused(body: bytes, headers: dict[str, str], *, max_bytes: int = MAX_BYTES) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_request(body, headers, max_bytes=max_bytes)
    assert info.value.status_code in (400, 413, 422)
    return info.value


def _peak_bytes(decode: Callable[[], object]) -> int:
    """Peak bytes allocated while `decode` runs, which must raise ProtocolError."""
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            decode()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _binary_request(inputs: list[dict[str, Any]], payload: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps({"inputs": inputs}).encode()
    return head + payload, {HEADER_LENGTH: str(len(head))}


# ------------------------------------------------------------------------------------ round trips


@FAST
@given(inputs=request_inputs(), binary=st.booleans())
def test_valid_requests_round_trip_exactly(inputs: dict[str, np.ndarray], binary: bool) -> None:
    body, headers = encode_request(inputs, binary=binary)
    _, decoded = decode_request(body, headers, max_bytes=MAX_BYTES)
    assert list(decoded) == list(inputs)
    for name, array in inputs.items():
        assert _same(decoded[name], array), name


@FAST
@given(outputs=request_inputs(), binary=st.sets(st.sampled_from(["input", "x", "mask", "ids"])))
def test_valid_responses_round_trip_exactly(outputs: dict[str, np.ndarray], binary: set[str]) -> None:
    body, headers = encode_response("m", outputs, binary=binary)
    _, decoded = decode_response(body, headers)
    for name, array in outputs.items():
        assert _same(decoded[name], array), name


# ------------------------------------------------------------------------------- truncated bodies


@FAST
@given(inputs=request_inputs(), binary=st.booleans(), data=st.data())
def test_every_truncation_of_a_valid_request_is_refused(inputs: dict[str, np.ndarray], binary: bool,
                                                         data: st.DataObject) -> None:
    body, headers = encode_request(inputs, binary=binary)
    cut = data.draw(st.integers(0, len(body) - 1), label="cut")
    _refused(body[:cut], headers)


@FAST
@given(outputs=request_inputs(), data=st.data())
def test_every_truncation_of_a_valid_response_is_refused(outputs: dict[str, np.ndarray],
                                                          data: st.DataObject) -> None:
    body, headers = encode_response("m", outputs, binary=set(outputs))
    cut = data.draw(st.integers(0, len(body) - 1), label="cut")
    with pytest.raises(ProtocolError):
        decode_response(body[:cut], headers)


# ----------------------------------------------------------------------------- lying header length


@FAST
@given(inputs=request_inputs(), data=st.data())
def test_any_header_length_but_the_true_one_is_refused(inputs: dict[str, np.ndarray], data: st.DataObject) -> None:
    body, headers = encode_request(inputs, binary=True)
    true_length = int(headers[HEADER_LENGTH])
    lie = data.draw(st.one_of(
        st.integers(0, len(body) + 64).filter(lambda n: n != true_length).map(str),
        st.integers(-(2**70), 2**70).filter(lambda n: n != true_length).map(str),
        # Anything a raw HTTP header can carry: servers hand headers over as latin-1 text.
        st.text(alphabet=st.characters(max_codepoint=255), max_size=8).filter(lambda t: t.strip() != str(true_length)),
    ), label="declared")
    _refused(body, {**headers, HEADER_LENGTH: lie})


# ------------------------------------------------------------- shapes, sizes and what they allocate


_ITEMSIZE = {**{k: v.itemsize for k, v in _FIXED.items()}, "BYTES": 1}


@FAST
@given(dims=st.lists(st.integers(2**8, 2**62), min_size=2, max_size=6), datatype=st.sampled_from(list(_ITEMSIZE)),
       payload=st.binary(max_size=64))
def test_shapes_whose_product_overflows_int64_are_refused_without_allocating(
        dims: list[int], datatype: str, payload: bytes) -> None:
    assume(math.prod(dims) >= 2**63)
    tensor_json = {"name": "x", "shape": dims, "datatype": datatype, "parameters": {"binary_data_size": len(payload)}}
    body, headers = _binary_request([tensor_json], payload)
    error = _refused(body, headers)
    assert error.status_code == 413 and "'x'" in str(error)
    assert _peak_bytes(lambda: decode_request(body, headers, max_bytes=MAX_BYTES)) < ALLOCATION_CEILING
    # A response has no max_bytes: the declared count must still be checked against the bytes present.
    response = json.dumps({"model_name": "m", "outputs": [tensor_json]}).encode()
    assert _peak_bytes(lambda: decode_response(response + payload, {HEADER_LENGTH: str(len(response))})
                       ) < ALLOCATION_CEILING


@FAST
@given(shape=st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=MAX_RANK).filter(lambda s: min(s) < 0),
       datatype=st.sampled_from(list(_ITEMSIZE)), binary=st.booleans())
def test_negative_dimensions_are_refused(shape: list[int], datatype: str, binary: bool) -> None:
    tensor_json: dict[str, Any] = {"name": "x", "shape": shape, "datatype": datatype}
    if binary:
        tensor_json["parameters"] = {"binary_data_size": 4}
        body, headers = _binary_request([tensor_json], b"\x00" * 4)
    else:
        body, headers = json.dumps({"inputs": [{**tensor_json, "data": [0]}]}).encode(), {}
    error = _refused(body, headers)
    assert error.status_code == 400 and "negative dimension" in str(error)


@FAST
@given(count=st.integers(2**30, 2**40), datatype=st.sampled_from(list(_ITEMSIZE)), rank=st.integers(1, 4),
       payload=st.binary(max_size=256))
def test_declared_sizes_in_the_gigabytes_are_refused_before_any_allocation(
        count: int, datatype: str, rank: int, payload: bytes) -> None:
    shape = [count, *([1] * (rank - 1))]
    declared = {"name": "x", "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": len(payload)}}
    body, headers = _binary_request([declared], payload)
    huge = count * _ITEMSIZE[datatype]
    # Whatever max_bytes a server picks, even one above the declaration, nothing is allocated for it.
    for max_bytes in (MAX_BYTES, 2 * huge):
        assert _peak_bytes(lambda m=max_bytes: decode_request(body, headers, max_bytes=m)) < ALLOCATION_CEILING
    response = json.dumps({"model_name": "m", "outputs": [declared]}).encode()
    assert _peak_bytes(lambda: decode_response(response + payload, {HEADER_LENGTH: str(len(response))})
                       ) < ALLOCATION_CEILING


@FAST
@given(size=st.integers(2**20, 2**62), payload=st.binary(max_size=64))
def test_a_binary_data_size_beyond_the_body_is_refused(size: int, payload: bytes) -> None:
    body, headers = _binary_request([{"name": "x", "shape": [size], "datatype": "UINT8",
                                      "parameters": {"binary_data_size": size}}], payload)
    assert _peak_bytes(lambda: decode_request(body, headers, max_bytes=2**63)) < ALLOCATION_CEILING


@FAST
@given(items=st.lists(st.binary(max_size=8), max_size=4), lie=st.sampled_from(["long", "more", "fewer"]),
       data=st.data())
def test_bytes_elements_whose_length_prefixes_lie_are_refused(items: list[bytes], lie: str,
                                                               data: st.DataObject) -> None:
    prefixes = [len(item) for item in items]
    count = len(items)
    if lie == "long":  # one element claims more bytes than the whole rest of the payload holds
        assume(items)
        i = data.draw(st.integers(0, len(items) - 1), label="element")
        rest = sum(4 + n for n in prefixes[i + 1:]) + prefixes[i]
        prefixes[i] = data.draw(st.integers(rest + 1, 2**32 - 1), label="claimed")
    elif lie == "more":  # the shape promises an element that is not there
        count += 1
    else:  # the shape promises one element fewer than the payload holds
        assume(items)
        count -= 1
    payload = b"".join(n.to_bytes(4, "little") + item for n, item in zip(prefixes, items, strict=True))
    body, headers = _binary_request([{"name": "s", "shape": [count], "datatype": "BYTES",
                                      "parameters": {"binary_data_size": len(payload)}}], payload)
    assert "'s'" in str(_refused(body, headers))


# ------------------------------------------------------------------------------- NaN and Inf


_NON_FINITE = {
    "FP16": st.sampled_from([0x7C00, 0xFC00]) | st.integers(0x7C01, 0x7FFF) | st.integers(0xFC01, 0xFFFF),
    "FP32": st.sampled_from([0x7F800000, 0xFF800000])
    | st.integers(0x7F800001, 0x7FFFFFFF) | st.integers(0xFF800001, 0xFFFFFFFF),
    "FP64": st.sampled_from([0x7FF0000000000000, 0xFFF0000000000000])
    | st.integers(0x7FF0000000000001, 0x7FFFFFFFFFFFFFFF) | st.integers(0xFFF0000000000001, 0xFFFFFFFFFFFFFFFF),
}
_UINT = {"FP16": np.dtype("<u2"), "FP32": np.dtype("<u4"), "FP64": np.dtype("<u8")}


@FAST
@given(datatype=st.sampled_from(list(_NON_FINITE)), data=st.data())
def test_nan_and_inf_anywhere_as_any_bit_pattern_are_refused(datatype: str, data: st.DataObject) -> None:
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4), label="shape")
    elements = st.floats(width=_FLOATS[datatype], allow_nan=False, allow_infinity=False)  # type: ignore[arg-type]
    array = data.draw(hnp.arrays(_FIXED[datatype], shape, elements=elements), label="array")
    bits = data.draw(_NON_FINITE[datatype], label="bits")  # +-Inf, quiet and signalling NaNs with any payload
    where = data.draw(st.integers(0, array.size - 1), label="where")
    flat = array.reshape(-1).copy()
    flat.view(_UINT[datatype])[where] = bits
    poisoned = flat.reshape(array.shape)
    assert not np.isfinite(poisoned).all()
    body, headers = encode_request({"pixels": poisoned}, binary=True)
    error = _refused(body, headers)
    assert error.status_code == 400 and "'pixels'" in str(error) and "NaN or Inf" in str(error)
    body, headers = encode_response("m", {"logits": poisoned}, binary={"logits"})
    with pytest.raises(ProtocolError, match=r"'logits'.*NaN or Inf"):
        decode_response(body, headers)


# ----------------------------------------------------------------------------- through the apps


@pytest.fixture(scope="module")
def apps(tiny_bundle: Path) -> Iterator[dict[str, tuple[TestClient, str]]]:
    """The real cloud and edge apps (lifespan run), each with its infer path."""
    cloud = TestClient(create_cloud_app(CloudSettings(bundle=tiny_bundle, threads=1)), raise_server_exceptions=False)
    edge = TestClient(create_edge_app(EdgeSettings(bundle=tiny_bundle, threads=1)), raise_server_exceptions=False)
    with cloud, edge:
        yield {"cloud": (cloud, "/v2/models/teacher/infer"), "edge": (edge, "/v2/models/edge/infer")}


_EXTREME = st.floats(width=32, allow_nan=False, allow_infinity=False) | st.sampled_from(
    [3.4028235e38, -3.4028235e38, 1e30, -1e30, 1.4e-45, 0.0, 255.0])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(x=hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.just(1), st.just(8), st.just(8)),
                    elements=_EXTREME),
       side=st.sampled_from(["cloud", "edge"]), binary=st.booleans())
def test_extreme_finite_pixels_never_get_a_server_error(apps: dict[str, tuple[TestClient, str]], x: np.ndarray,
                                                         side: str, binary: bool) -> None:
    client, path = apps[side]
    body, headers = encode_request({"input": x}, binary=binary, binary_outputs=binary)
    reply = client.post(path, content=body, headers=headers)
    assert reply.status_code in (200, 400, 422), reply.text
    if reply.status_code != 200:
        # The edge refuses FP32 outside the stored dtype's range at the door; the cloud refuses what its
        # teacher cannot compute (NaN logits), per request: its batcher keeps each request's rows apart.
        error = reply.json()["error"]
        assert "non-finite logits" in error or "must be raw pixels in [0, 255]" in error, error
        return
    _, outputs = decode_response(reply.content, reply.headers)  # refuses NaN/Inf, so the answer is finite
    assert len(outputs["label"]) == len(x)


@pytest.mark.anyio
async def test_a_hostile_request_fails_alone_not_the_requests_merged_with_it(
        tiny_bundle: Path, tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    """The edge merges concurrent requests into one student pass; a bad one must not poison the pass."""
    good = tiny_test_split[0][:4]  # (4, 1, 8, 8) uint8
    hostile = np.full((2, 1, 8, 8), 3.4e38, dtype=np.float32)
    async with open_agent(EdgeSettings(bundle=tiny_bundle, threads=1)) as agent:
        alone = (await agent.infer(good)).labels
        results = await asyncio.gather(*(agent.infer(good) for _ in range(6)), agent.infer(hostile),
                                       *(agent.infer(good) for _ in range(6)), return_exceptions=True)
    refused = results.pop(6)
    assert isinstance(refused, InputError) and "must be raw pixels in [0, 255]" in str(refused)
    for answers in results:
        assert isinstance(answers, Answers), answers
        assert np.array_equal(answers.labels, alone)
