"""Test doubles for the edge agent: a controllable OIP cloud on a real socket, a stalled one, a reader."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import uvicorn
from fastapi import FastAPI, Request, Response
from prometheus_client.parser import text_string_to_metric_families

from shared.image_codec import decode_batch
from shared.oip import DEADLINE_HEADER, decode_request, encode_response
from testbed.services import free_port


def stub_labels(x: np.ndarray) -> np.ndarray:
    """The stub cloud's answer: a deterministic function of each sample, so order and routing are checkable."""
    return (x.reshape(len(x), -1).astype(np.int64).sum(axis=1) % 10).astype(np.int64)  # (N,)


def stub_logits(x: np.ndarray) -> np.ndarray:
    """(N, 10) float32 logits whose argmax is `stub_labels(x)` but that are only mildly sure of it (the
    runner-up is one logit behind), so that a student sure of another class can win a fusion."""
    labels = stub_labels(x)
    logits = np.zeros((len(x), 10), dtype=np.float32)
    logits[np.arange(len(x)), labels] = 2.0
    logits[np.arange(len(x)), (labels + 1) % 10] = 1.0
    return logits


@dataclass
class StubBehaviour:
    """What the stub cloud does with the next requests; tests flip `mode` between calls."""

    # ok | logits_json | with_logits | 503 | 429 | 401 | 500 | garbage | bad_gzip | wrong_shape | out_of_range
    mode: str = "ok"
    delay_s: float = 0.0
    requests: int = 0
    deadlines_ms: list[float] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    datatypes: list[str] = field(default_factory=list)
    """per request: BYTES when the edge forwarded encoded images, else the pixels' numpy dtype"""

    def reset(self, mode: str = "ok", delay_s: float = 0.0) -> None:
        self.mode, self.delay_s, self.requests = mode, delay_s, 0
        self.deadlines_ms.clear()
        self.authorization.clear()
        self.batch_sizes.clear()
        self.datatypes.clear()


def stub_cloud_app(behaviour: StubBehaviour) -> FastAPI:
    """An OIP `teacher` whose answers follow `behaviour`."""
    import asyncio

    app = FastAPI()

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/v2/models/teacher/infer")
    async def infer(request: Request) -> Response:
        behaviour.requests += 1
        behaviour.deadlines_ms.append(float(request.headers.get(DEADLINE_HEADER, "nan")))
        behaviour.authorization.append(request.headers.get("authorization"))
        _, tensors = decode_request(await request.body(), request.headers, max_bytes=1 << 24)
        x = tensors["input"]
        behaviour.datatypes.append("BYTES" if x.dtype == object else str(x.dtype))
        if x.dtype == object:  # encoded images, as the edge forwards them: the tiny bundle's 1x8x8 digits
            x = decode_batch(x, shape=(1, 8, 8))
        behaviour.batch_sizes.append(len(x))
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        mode = behaviour.mode
        if mode in ("503", "429", "401", "500"):
            return Response(b'{"error": "stub says no"}', status_code=int(mode), media_type="application/json")
        if mode == "garbage":
            return Response(b"\x00\x01 this is not an inference response", media_type="application/octet-stream")
        if mode == "bad_gzip":
            return Response(b"not gzip at all", headers={"Content-Encoding": "gzip"})
        labels = stub_labels(x)
        if mode == "wrong_shape":
            labels = np.concatenate([labels, labels[:1]])
        if mode == "out_of_range":
            labels = labels + 99
        if mode == "with_logits":  # what our cloud and Triton send: the teacher's logits and its label
            body, headers = encode_response("teacher", {"logits": stub_logits(x), "label": labels},
                                            binary={"logits", "label"})
            return Response(body, headers=headers)
        if mode == "logits_json":
            logits = np.eye(10, dtype=np.float32)[labels]  # (N, 10) one-hot: argmax = the label
            body, headers = encode_response("teacher", {"logits": logits}, binary=set())
        else:
            body, headers = encode_response("teacher", {"label": labels}, binary={"label"})
        return Response(body, headers=headers)

    return app


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Run `app` with uvicorn on a free loopback port in a daemon thread; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("stub server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def stalled_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A socket that accepts connections and reads, but never answers; yield (URL, accepted sockets)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted.append(conn)  # kept open and unanswered

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        listener.close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connections are refused at once)."""
    return f"http://127.0.0.1:{free_port()}"


def metric(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample's value from a Prometheus exposition (0.0 when the series does not exist)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and (labels is None or all(sample.labels.get(k) == v
                                                              for k, v in labels.items())):
                return float(sample.value)
    return 0.0
