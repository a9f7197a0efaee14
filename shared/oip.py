"""Open Inference Protocol (KServe v2) wire schemas and the binary-tensor codec, shared by both sides.

    body, headers = encode_request({"input": x_uint8}, outputs=("logits", "label"))
    request, tensors = decode_request(body, headers, max_bytes=16 << 20)      # on the server
    body, headers = encode_response("teacher", {"logits": z, "label": y}, binary={"logits", "label"})
    response, arrays = decode_response(body, headers)                         # on the client

A message is one JSON object, optionally followed by raw tensor bytes (the binary-tensor
extension, as spoken by Triton, KServe and MLServer): the JSON's length is sent in the
`Inference-Header-Content-Length` header, each binary tensor carries
`"parameters": {"binary_data_size": n}`, and its bytes follow in tensor order, little-endian,
row-major. BYTES elements are each a 4-byte little-endian length and then the bytes. Decoded
BYTES tensors are always object arrays of `bytes`, whether they came as JSON strings or binary.

Decoding assumes a hostile sender: every size is checked with Python ints against the bytes
actually present (and `max_bytes`) before anything is allocated, and every failure is a
`ProtocolError` whose message names the tensor and what was expected. numpy and pydantic only.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

HEADER_LENGTH = "Inference-Header-Content-Length"
DEADLINE_HEADER = "X-Deadline-Ms"
"""Remaining time budget in milliseconds when the request was sent; the server drops expired work."""

LOAD_HEADER = "X-Edgecloud-Load"
"""On every infer answer: the model's load, `depth=<samples>;service_ms=<ms>;server_ms=<ms>` (format_load)."""

KEEPALIVE_S = 30.0
"""How long both sides keep an idle HTTP connection open: the edge's client (edge_agent/cloud_client.py)
and the runtime (serving/server.py; uvicorn's default is 5 s). The edge keeps its connection to the
next tier open by asking it for readiness when it has been idle for half of this (CloudClient.keep_warm),
so that no offload pays a handshake (one RTT) after a pause, as the split environment assumes."""
BINARY_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"
MAX_RANK = 16
"""Deepest tensor accepted; real tensors are rank <= 5, and a bound keeps hostile shapes cheap."""

# Wire datatype -> little-endian numpy dtype; BYTES is variable-length and handled on its own.
_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES: tuple[str, ...] = (*_DTYPES, "BYTES")
_LEN_PREFIX = struct.Struct("<I")
_MAX_INDEX = int(np.iinfo(np.intp).max)


class ProtocolError(ValueError):
    """A message that breaks the protocol; `status_code` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


# --------------------------------------------------------------------------------------- schemas


class _Tensor(BaseModel):
    """The fields a request's input and a response's output tensor share; `data` is absent when the
    bytes follow the JSON."""

    name: str
    shape: list[StrictInt]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferInputTensor(_Tensor):
    """`$request_input`: one input tensor; `data` is absent when the bytes follow the JSON."""

    model_config = ConfigDict(extra="forbid")


class InferRequestedOutput(BaseModel):
    """`$request_output`: an output the client wants, with `{"binary_data": true}` for raw bytes."""

    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """`$inference_request`. No `outputs` means all of them; `binary_data_output` sets their default."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferInputTensor] = Field(min_length=1)
    outputs: list[InferRequestedOutput] | None = None


class InferOutputTensor(_Tensor):
    """`$response_output`; other servers add fields we do not use, so extras are ignored."""

    model_config = ConfigDict(extra="ignore")


class InferResponse(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[InferOutputTensor]


class TensorMetadata(BaseModel):
    """A tensor in model metadata; -1 marks a variable dimension (the batch)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    versions: list[str] = Field(default_factory=list)
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    version: str
    extensions: list[str] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    error: str


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


# --------------------------------------------------------------------------------------- helpers


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that also works for plain dicts."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    value = headers.get(lowered)  # a server's headers are keyed lower-case: no scan for them
    if value is not None:
        return value
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None


def parse_deadline_ms(headers: Mapping[str, str]) -> float | None:
    """The `X-Deadline-Ms` budget, or None when absent; junk is a 400 naming the value."""
    raw = header_value(headers, DEADLINE_HEADER)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ProtocolError(f"{DEADLINE_HEADER} must be a number of milliseconds, got {raw!r}") from None
    if not math.isfinite(value):
        raise ProtocolError(f"{DEADLINE_HEADER} must be finite, got {raw!r}")
    return value


_BY_KIND_SIZE: dict[tuple[str, int], str] = {(dtype.kind, dtype.itemsize): name for name, dtype in _DTYPES.items()}


def format_load(*, depth: int, service_ms: float, server_ms: float) -> str:
    """The `X-Edgecloud-Load` value: samples waiting for the model, its recent compute time per
    sample, and the time this request spent in the server (clients subtract it from their round trip
    to learn the wire time)."""
    return f"depth={int(depth)};service_ms={service_ms:.3f};server_ms={server_ms:.3f}"


def parse_load(headers: Mapping[str, str]) -> tuple[int, float, float] | None:
    """(depth, service_ms, server_ms) from `X-Edgecloud-Load`; None when absent or malformed.

    A client treats a server that sends no (or a garbled) load report like one that reports
    nothing, rather than failing the answer it came with.
    """
    raw = header_value(headers, LOAD_HEADER)
    if raw is None:
        return None
    try:
        fields = dict(part.split("=", 1) for part in raw.split(";"))
        depth, service, server = int(fields["depth"]), float(fields["service_ms"]), float(fields["server_ms"])
    except (KeyError, ValueError):
        return None
    if depth < 0 or not (math.isfinite(service) and math.isfinite(server)) or service < 0 or server < 0:
        return None
    return depth, service, server


def datatype_of(array: np.ndarray) -> str:
    """The wire datatype for a numpy array; str/bytes/object arrays travel as BYTES."""
    kind = array.dtype.kind
    if kind in "OSU":
        return "BYTES"
    # A dict lookup, not a scan: this runs for every tensor of every request and answer.
    name = _BY_KIND_SIZE.get((kind, array.dtype.itemsize))
    if name is None:
        raise ValueError(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")
    return name


def resolve_outputs(request: InferRequest, available: Sequence[str]) -> tuple[list[str], set[str]]:
    """(output names to return, those to return as binary) for a request against a model's outputs.

    Per the binary-tensor extension an output is binary when its own `binary_data` says so, else
    when the request's `binary_data_output` does; the default is JSON.
    """
    default_binary = _flag((request.parameters or {}).get("binary_data_output", False), "binary_data_output")
    if request.outputs is None:
        return list(available), set(available) if default_binary else set()
    names: list[str] = []
    binary: set[str] = set()
    for out in request.outputs:
        if out.name not in available:
            raise ProtocolError(f"unknown output {out.name!r}; this model has {list(available)}")
        if out.name in names:
            raise ProtocolError(f"output {out.name!r} is requested twice")
        params = out.parameters or {}
        if "classification" in params:
            raise ProtocolError(f"output {out.name!r}: the classification extension is not supported")
        names.append(out.name)
        if _flag(params.get("binary_data", default_binary), f"output {out.name!r} binary_data"):
            binary.add(out.name)
    return names, binary


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"{what} must be true or false, got {value!r}")
    return value


# --------------------------------------------------------------------------------------- encoding


def _tensor_bytes(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for item in array.reshape(-1):
            raw = item.encode() if isinstance(item, str) else bytes(item)
            parts += [_LEN_PREFIX.pack(len(raw)), raw]
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=_DTYPES[datatype]).tobytes()


def _tensor_json(array: np.ndarray, datatype: str, name: str) -> list[Any]:
    if datatype != "BYTES":
        return np.asarray(array, dtype=_DTYPES[datatype]).reshape(-1).tolist()
    out = []
    for item in array.reshape(-1):
        try:
            out.append(item if isinstance(item, str) else bytes(item).decode())
        except UnicodeDecodeError as err:
            raise ValueError(f"tensor {name!r}: BYTES element is not UTF-8; send it binary") from err
    return out


def _encode(header: dict[str, Any], tensors: list[dict[str, Any]], arrays: list[np.ndarray],
            binary: list[bool]) -> tuple[bytes, dict[str, str]]:
    chunks: list[bytes] = []
    for tensor, array, as_binary in zip(tensors, arrays, binary, strict=True):
        if as_binary:
            raw = _tensor_bytes(array, tensor["datatype"])
            tensor["parameters"] = {**tensor.get("parameters", {}), "binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = _tensor_json(array, tensor["datatype"], tensor["name"])
    # allow_nan=False: NaN/Infinity are not JSON; such values must travel as binary.
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    if not chunks:
        return head, {"Content-Type": JSON_CONTENT_TYPE}
    return b"".join([head, *chunks]), {"Content-Type": BINARY_CONTENT_TYPE, HEADER_LENGTH: str(len(head))}


def encode_request(inputs: dict[str, np.ndarray], *, binary: bool = True, outputs: Sequence[str] = (),
                   binary_outputs: bool = True, request_id: str | None = None,
                   parameters: Mapping[str, Any] | None = None) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of an infer request; `outputs=()` asks for all outputs.

    `parameters` are request-level OIP parameters (e.g. the edge's `strategy`).
    """
    arrays = [np.asarray(a) for a in inputs.values()]
    tensors = [{"name": name, "shape": list(a.shape), "datatype": datatype_of(a)}
               for name, a in zip(inputs, arrays, strict=True)]
    header: dict[str, Any] = {"inputs": tensors}
    if request_id is not None:
        header["id"] = request_id
    if outputs:
        header["outputs"] = [{"name": n, "parameters": {"binary_data": binary_outputs}} for n in outputs]
    else:
        header["parameters"] = {"binary_data_output": binary_outputs}
    if parameters:
        header["parameters"] = {**header.get("parameters", {}), **parameters}
    return _encode(header, tensors, arrays, [binary] * len(arrays))


def encode_response(model_name: str, outputs: dict[str, np.ndarray], *, binary: set[str],
                    request_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of an infer response; outputs named in `binary` go as raw bytes."""
    arrays = [np.asarray(a) for a in outputs.values()]
    tensors = [{"name": name, "shape": list(a.shape), "datatype": datatype_of(a)}
               for name, a in zip(outputs, arrays, strict=True)]
    header: dict[str, Any] = {"model_name": model_name, "outputs": tensors}
    if request_id is not None:
        header["id"] = request_id
    return _encode(header, tensors, arrays, [name in binary for name in outputs])


# --------------------------------------------------------------------------------------- decoding


def _split_body(body: bytes, headers: Mapping[str, str]) -> tuple[dict[str, Any], memoryview]:
    """(parsed JSON header, the bytes after it), checking the declared header length first."""
    if not body:
        raise ProtocolError("empty body: expected an Open Inference Protocol JSON object")
    raw_len = header_value(headers, HEADER_LENGTH)
    if raw_len is None:
        head_len = len(body)
    else:
        text = raw_len.strip()
        # isascii too: str.isdigit() is true for "²" (a latin-1 header byte), which int() then rejects.
        if not (text.isascii() and text.isdigit()):
            raise ProtocolError(f"{HEADER_LENGTH} must be a non-negative integer, got {raw_len!r}")
        head_len = int(text)
        if head_len == 0 or head_len > len(body):
            raise ProtocolError(f"{HEADER_LENGTH} is {head_len} but the body has {len(body)} bytes")
    view = memoryview(body)
    try:
        header = json.loads(bytes(view[:head_len]))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProtocolError(f"body is not valid JSON: {err}") from None
    except RecursionError:
        raise ProtocolError("body JSON is nested too deeply") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"body must be a JSON object, got {type(header).__name__}")
    return header, view[head_len:]


def _validate(model: type[BaseModel], header: dict[str, Any]) -> Any:
    try:
        return model.model_validate(header)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors()[:5]
        )
        raise ProtocolError(f"invalid {model.__name__}: {problems}", status_code=422) from None


def _binary_size(tensor: _Tensor, what: str) -> int | None:
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise ProtocolError(f"{what}: binary_data_size must be a non-negative integer, got {size!r}")
    if tensor.data is not None:
        raise ProtocolError(f"{what}: has both JSON data and binary_data_size; send one")
    return size


def _check_shape(shape: list[int], what: str, max_bytes: int | None, itemsize: int) -> int:
    """Number of elements, after checking the shape and, when bounded, its byte size."""
    if len(shape) > MAX_RANK:
        raise ProtocolError(f"{what}: rank {len(shape)} exceeds the maximum {MAX_RANK}")
    if any(d < 0 for d in shape):
        raise ProtocolError(f"{what}: shape {shape} has a negative dimension")
    count = math.prod(shape)  # Python ints: cannot overflow, so a hostile shape cannot wrap around
    if max_bytes is not None and count * itemsize > max_bytes:
        raise ProtocolError(
            f"{what}: shape {shape} needs {count * itemsize} bytes, more than the limit {max_bytes}",
            status_code=413,
        )
    # numpy refuses shapes whose non-zero dims overflow its index type even when one dim is 0.
    if math.prod(max(d, 1) for d in shape) * max(itemsize, 1) > _MAX_INDEX:
        raise ProtocolError(f"{what}: shape {shape} is too large to index")
    return count


def _flatten(data: list[Any], shape: list[int], what: str) -> list[Any]:
    """JSON data is either flat (row-major) or nested exactly as `shape`."""
    if not any(isinstance(v, list) for v in data):
        return data
    level: list[Any] = [data]
    for dim in shape:
        nxt: list[Any] = []
        for item in level:
            if not isinstance(item, list) or len(item) != dim:
                raise ProtocolError(f"{what}: nested data does not match shape {shape}")
            nxt.extend(item)
        level = nxt
    if any(isinstance(v, list) for v in level):
        raise ProtocolError(f"{what}: nested data is deeper than shape {shape}")
    return level


def _from_json(flat: list[Any], datatype: str, shape: list[int], what: str) -> np.ndarray:
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise ProtocolError(f"{what}: BYTES data must be JSON strings")
        array = np.empty(len(flat), dtype=object)
        array[:] = [v.encode() for v in flat]
        return array.reshape(shape)
    dtype = _DTYPES[datatype]
    if not flat:
        return np.zeros(shape, dtype=dtype)
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in flat):
            raise ProtocolError(f"{what}: BOOL data must be true/false")
        return np.array(flat, dtype=dtype).reshape(shape)
    try:
        parsed = np.array(flat)
    except (ValueError, OverflowError) as err:
        raise ProtocolError(f"{what}: data is not a list of numbers ({err})") from None
    allowed = "iu" if dtype.kind in "iu" else "iuf"
    if parsed.dtype.kind not in allowed:
        kind = "integers" if dtype.kind in "iu" else "numbers"
        raise ProtocolError(f"{what}: {datatype} data must be {kind}, got {parsed.dtype.kind!r}-kind values")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if parsed.min() < info.min or parsed.max() > info.max:
            raise ProtocolError(f"{what}: values out of range for {datatype} [{info.min}, {info.max}]")
    with np.errstate(over="ignore"):  # overflow to inf is caught by the finiteness check
        return parsed.astype(dtype).reshape(shape)


def _from_bytes(raw: memoryview, datatype: str, shape: list[int], count: int, what: str) -> np.ndarray:
    if datatype == "BYTES":
        # Every element needs at least its 4-byte prefix: reject impossible counts before looping.
        if count * _LEN_PREFIX.size > len(raw):
            raise ProtocolError(f"{what}: {len(raw)} bytes cannot hold {count} BYTES elements")
        items: list[bytes] = []
        offset = 0
        for i in range(count):
            if offset + _LEN_PREFIX.size > len(raw):
                raise ProtocolError(f"{what}: BYTES element {i} has no length prefix (data ends)")
            (length,) = _LEN_PREFIX.unpack_from(raw, offset)
            offset += _LEN_PREFIX.size
            if length > len(raw) - offset:
                raise ProtocolError(f"{what}: BYTES element {i} declares {length} bytes, "
                                    f"only {len(raw) - offset} remain")
            items.append(bytes(raw[offset:offset + length]))
            offset += length
        if offset != len(raw):
            raise ProtocolError(f"{what}: {len(raw) - offset} bytes left after {count} BYTES elements")
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = _DTYPES[datatype]
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise ProtocolError(f"{what}: {datatype} shape {shape} needs {expected} bytes, got {len(raw)}")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    if datatype == "BOOL" and array.view(np.uint8).max(initial=0) > 1:
        raise ProtocolError(f"{what}: BOOL bytes must be 0 or 1")
    return array


def _decode_tensors(tensors: Sequence[_Tensor], rest: memoryview, *,
                    kind: str, max_bytes: int | None) -> dict[str, np.ndarray]:
    sizes = [_binary_size(t, f"{kind} {t.name!r}") for t in tensors]
    declared = sum(s for s in sizes if s is not None)
    if declared != len(rest):
        hint = "" if declared or not rest else f" (is {HEADER_LENGTH} missing or wrong?)"
        raise ProtocolError(f"binary_data_size values sum to {declared} bytes but {len(rest)} bytes "
                            f"follow the JSON header{hint}")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for tensor, size in zip(tensors, sizes, strict=True):
        what = f"{kind} {tensor.name!r}"
        if tensor.name in arrays:
            raise ProtocolError(f"{what} appears twice")
        if tensor.datatype not in DATATYPES:
            raise ProtocolError(f"{what}: unknown datatype {tensor.datatype!r}; "
                                f"expected one of {list(DATATYPES)}")
        itemsize = _DTYPES[tensor.datatype].itemsize if tensor.datatype != "BYTES" else 1
        count = _check_shape(tensor.shape, what, max_bytes, itemsize)
        if size is not None:
            array = _from_bytes(rest[offset:offset + size], tensor.datatype, tensor.shape, count, what)
            offset += size
        elif tensor.data is None:
            raise ProtocolError(f"{what}: has neither data nor binary_data_size")
        else:
            flat = _flatten(tensor.data, tensor.shape, what)
            if len(flat) != count:
                raise ProtocolError(f"{what}: shape {tensor.shape} needs {count} values, got {len(flat)}")
            array = _from_json(flat, tensor.datatype, tensor.shape, what)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ProtocolError(f"{what}: contains NaN or Inf")
        arrays[tensor.name] = array
    return arrays


def decode_request(body: bytes, headers: Mapping[str, str], *, max_bytes: int
                   ) -> tuple[InferRequest, dict[str, np.ndarray]]:
    """Parse and check an infer request; raises ProtocolError (400/413/422) naming the problem."""
    if len(body) > max_bytes:
        raise ProtocolError(f"body of {len(body)} bytes exceeds the limit of {max_bytes}", status_code=413)
    header, rest = _split_body(body, headers)
    request: InferRequest = _validate(InferRequest, header)
    return request, _decode_tensors(request.inputs, rest, kind="input", max_bytes=max_bytes)


def decode_response(body: bytes, headers: Mapping[str, str]) -> tuple[InferResponse, dict[str, np.ndarray]]:
    """Parse and check an infer response, as carefully as a request: the peer may be broken."""
    header, rest = _split_body(body, headers)
    response: InferResponse = _validate(InferResponse, header)
    return response, _decode_tensors(response.outputs, rest, kind="output", max_bytes=None)
