"""The OpenAPI description of an infer route, which FastAPI cannot infer because the route reads raw bytes.

An infer body is JSON, or JSON followed by binary tensors (`shared.oip`), so the routes take the
raw `Request` and FastAPI would publish them with no request body and an empty 200. Passing
`openapi_extra=infer_openapi(...)` documents what the handler really reads and writes: the body as
`application/json` (an InferRequest) or `application/octet-stream`, the headers it honours, and
the 200 answer as JSON (an InferResponse) or binary. Clients read it, and so does schemathesis,
which then fuzzes the decoder through the real routes (tests/security/test_schemathesis.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shared.oip import (
    BINARY_CONTENT_TYPE,
    DEADLINE_HEADER,
    HEADER_LENGTH,
    JSON_CONTENT_TYPE,
    InferRequest,
    InferResponse,
)

_BINARY = {"type": "string", "format": "binary"}


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with every `$ref` replaced by its definition, to embed in an operation.

    pydantic puts nested models under `$defs` and points at them with `#/$defs/...`, which would
    resolve against the whole OpenAPI document, not this schema. The OIP models are not recursive.
    """
    schema = model.model_json_schema()
    definitions: dict[str, Any] = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target = resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
                return {**target, **{k: resolve(v) for k, v in node.items() if k != "$ref"}}
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def infer_openapi(*, deadline_header: bool) -> dict[str, Any]:
    """`openapi_extra` for an infer route; `deadline_header` when the server honours X-Deadline-Ms."""
    parameters: list[dict[str, Any]] = [{
        "name": HEADER_LENGTH, "in": "header", "required": False,
        "description": "length of the JSON part when binary tensors follow it (the binary-tensor extension)",
        "schema": {"type": "integer", "minimum": 0},
    }]
    if deadline_header:
        parameters.append({
            "name": DEADLINE_HEADER, "in": "header", "required": False,
            "description": "remaining time budget in milliseconds; expired work is dropped with 504",
            "schema": {"type": "number"},
        })
    return {
        "parameters": parameters,
        "requestBody": {
            "required": True,
            "description": "an Open Inference Protocol request: JSON tensors, or a JSON header followed by "
                           f"binary tensors ({HEADER_LENGTH} gives the header's length)",
            "content": {JSON_CONTENT_TYPE: {"schema": inline_schema(InferRequest)},
                        BINARY_CONTENT_TYPE: {"schema": _BINARY}},
        },
        "responses": {"200": {
            "description": "the outputs, as JSON, or as a JSON header followed by binary tensors",
            "content": {JSON_CONTENT_TYPE: {"schema": inline_schema(InferResponse)},
                        BINARY_CONTENT_TYPE: {"schema": _BINARY}},
        }},
    }
