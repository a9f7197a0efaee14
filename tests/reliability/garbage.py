"""A cloud that answers every infer request with garbage of a chosen kind, on a real loopback socket."""

from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import FastAPI, Request, Response

from shared.oip import decode_request

MODES: tuple[str, ...] = ("malformed_json", "wrong_shape", "wrong_datatype", "not_oip")


@dataclass
class GarbageMode:
    mode: str = "malformed_json"
    requests: int = 0


def garbage_cloud_app(state: GarbageMode) -> FastAPI:
    """An OIP-looking `teacher` whose every answer is a 200 the edge must not believe."""
    app = FastAPI()

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/v2/models/teacher/infer")
    async def infer(request: Request) -> Response:
        state.requests += 1
        _, tensors = decode_request(await request.body(), request.headers, max_bytes=1 << 24)
        n = len(tensors["input"])
        if state.mode == "malformed_json":  # cut off mid-object
            return Response(b'{"model_name": "teacher", "outputs": [{"name": "label", "shape": [',
                            media_type="application/json")
        if state.mode == "wrong_shape":  # one label too many
            header = {"model_name": "teacher",
                      "outputs": [{"name": "label", "datatype": "INT64", "shape": [n + 1], "data": [0] * (n + 1)}]}
        elif state.mode == "wrong_datatype":  # labels as strings
            header = {"model_name": "teacher",
                      "outputs": [{"name": "label", "datatype": "BYTES", "shape": [n], "data": ["seven"] * n}]}
        else:  # not_oip: bytes that are no inference response at all
            return Response(b"\x00\xff<html>502 bad gateway</html>", media_type="application/octet-stream")
        return Response(json.dumps(header).encode(), media_type="application/json")

    return app
