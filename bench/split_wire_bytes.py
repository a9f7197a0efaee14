"""Bytes on the wire per split request, per action, between the real edge agent and the real server.

Starts the bundle's server and an edge agent whose next tier is a byte-counting TCP relay in front of
it, sends `--requests` test images through the edge with each `--actions` label forced, and reads how
many bytes crossed the relay each way. What a device's radio sends is this (TCP/IP headers aside):
the payload (the JPEG, or the quantised feature), the HTTP request and the OIP header up; the HTTP
response and the answer down. Where the payload is a small share of it, no codec can cut the wire
bytes by much: the per-request overhead is the floor, and this prints it.

    .venv/bin/python bench/split_wire_bytes.py --bundle models/cifar10-split --data-dir ../shared/data/cifar10 \
        --actions server split@2:4b:exit4 split@3:4b:exit4 split@3:2b:exit4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

from shared.bundle import ModelRole, load_manifest
from shared.datasets import load_dataset, request_inputs
from shared.oip import decode_response
from splitting.live_client import request
from splitting.setup import read_accuracy
from testbed.delay_proxy import ByteCount, ProxyConfig, serve
from testbed.services import free_port, start_service, stop_service, wait_ready


class CountingRelay:
    """The testbed's relay (testbed.delay_proxy, no delay, no trace) on 127.0.0.1, counting the bytes it
    forwards each way (`counts`), in a thread of its own."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.counts = ByteCount()
        self._cfg = ProxyConfig(listen_host="127.0.0.1", listen_port=self.port, target_host="127.0.0.1",
                                target_port=target_port, delay_ms=0.0)
        self._loop = asyncio.new_event_loop()
        self._ready = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CountingRelay:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._ready.is_set():
            if time.monotonic() > deadline:
                raise RuntimeError("the counting relay did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(serve(self._cfg, ready=self._ready, counts=self.counts))
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)


@dataclass
class Row:
    """One forced action over the requests."""

    action: str
    requests: int
    offloaded: int
    payload_bytes: float
    up_bytes: float
    down_bytes: float
    test_accuracy: float | None

    @property
    def wire_bytes(self) -> float:
        return self.up_bytes + self.down_bytes


def measure(bundle: Path, data_dir: Path | None, actions: list[str], n: int, log_dir: Path) -> list[Row]:
    manifest = load_manifest(bundle, verify=False)
    dataset = load_dataset(manifest.dataset, data_dir=data_dir)
    inputs = request_inputs(dataset)  # the JPEG files where the dataset has them, as a device holds them
    table = {r["action"]: r["test_accuracy"] for r in read_accuracy(bundle, manifest)["actions"]}
    tails = [name for name, e in manifest.models.items() if e.role is ModelRole.SPLIT_TAIL]
    cloud_port = free_port()
    cloud = start_service("cloud", ["cloud", "serve", "--bundle", str(bundle), "--models",
                                    ",".join([manifest.teacher, *tails])], port=cloud_port, log_dir=log_dir)
    rows = []
    try:
        wait_ready(cloud)
        with CountingRelay(cloud_port) as relay:
            edge = start_service("edge", ["edge", "serve", "--bundle", str(bundle), "--cloud-url",
                                          f"http://127.0.0.1:{relay.port}"], port=free_port(), log_dir=log_dir)
            try:
                wait_ready(edge)
                with httpx.Client(timeout=60.0) as http:
                    for action in actions:
                        rows.append(_one_action(http, edge.url, relay, inputs, action, n, table.get(action)))
            finally:
                stop_service(edge)
    finally:
        stop_service(cloud)
    return rows


def _one_action(http: httpx.Client, edge_url: str, relay: CountingRelay, inputs: np.ndarray, action: str, n: int,
                accuracy: float | None) -> Row:
    url = f"{edge_url}/v2/models/split/infer"

    def ask(k: int) -> dict[str, np.ndarray]:
        body, headers = request(inputs, k, {"action": action, "deadline_ms": 30000.0})
        response = http.post(url, content=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{action}: {response.status_code} {response.text[:200]}")
        return decode_response(response.content, response.headers)[1]

    ask(0)  # the connection to the server is open before counting
    up0, down0 = relay.counts.up, relay.counts.down
    payload, offloaded = [], 0
    for k in range(1, n + 1):
        out = ask(k)
        payload.append(int(out["payload_bytes"][0]))
        offloaded += int(out["payload_bytes"][0] > 0)
    return Row(action=action, requests=n, offloaded=offloaded, payload_bytes=float(np.mean(payload)),
               up_bytes=(relay.counts.up - up0) / n, down_bytes=(relay.counts.down - down0) / n, test_accuracy=accuracy)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True, help="split bundle")
    ap.add_argument("--data-dir", type=Path, default=None, help="dataset folder (not for digits)")
    ap.add_argument("--actions", nargs="+", default=["server"], help="action labels to force (first: the reference)")
    ap.add_argument("--requests", type=int, default=200, help="requests per action")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    if args.requests < 1:
        ap.error("--requests must be at least 1")
    with tempfile.TemporaryDirectory() as logs:
        rows = measure(args.bundle, args.data_dir, args.actions, args.requests, Path(logs))
    ref = rows[0]
    print(f"{args.bundle}: {args.requests} requests per action; reference {ref.action}")
    print("| action | payload B | up B | down B | wire B | overhead up | wire ÷ reference's | payload ÷ reference's "
          "| test acc. |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        acc = "" if r.test_accuracy is None else f"{100 * r.test_accuracy:.2f}%"
        pay = f"{ref.payload_bytes / r.payload_bytes:.2f}×" if r.payload_bytes else "-"
        wire = f"{ref.wire_bytes / r.wire_bytes:.2f}×" if r.wire_bytes else "-"
        print(f"| {r.action} | {r.payload_bytes:.0f} | {r.up_bytes:.0f} | {r.down_bytes:.0f} | {r.wire_bytes:.0f} | "
              f"{r.up_bytes - r.payload_bytes:.0f} | {wire} | {pay} | {acc} |")
    offloads = [r for r in rows if r.offloaded == r.requests and r.requests]
    if offloads:
        floor = min(r.wire_bytes - r.payload_bytes for r in offloads)
        print(f"per-request overhead (HTTP, OIP header, answer): at least {floor:.0f} B; no payload can make a "
              f"request's wire bytes more than {ref.wire_bytes / floor:.2f}× fewer than {ref.action}'s")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) | {"wire_bytes": r.wire_bytes} for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
