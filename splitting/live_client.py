"""The live evaluation's client: one request to the edge's `split` model every `period_s`, timed (no torch).

    python -m splitting.live_client --edge-url URL --strategy sac --deadline-ms 100 --period-s 0.25 \\
        --duration-s 60 --start-unix T --bundle B --out requests.jsonl [--data-dir D]

Request n carries test sample n (the environment's order, so accuracy is comparable) and is sent at
`start-unix + n * period` (or when the previous one is answered, if that is later: the device serves
one request at a time). One JSON line per request: when it was sent (trace time), latency, source,
reason, action, payload bytes, whether the label was right, or the error if there was no answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from shared.bundle import load_manifest
from shared.datasets import load_dataset, request_inputs
from shared.oip import decode_response, encode_request


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _wait_ready(http: httpx.Client, url: str, until: float) -> None:
    while True:
        try:
            if http.get(f"{url}/v2/health/ready", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.time() > until:
            raise SystemExit(f"{url} was not ready by the start time")
        time.sleep(0.2)


def _prepare(edge_url: str, cloud_url: str | None, *, reload: bool, until: float) -> None:
    """Wait until the edge is up, reload its split model if asked, then wait until edge and server are ready."""
    with httpx.Client(timeout=60.0) as http:
        _wait_ready(http, edge_url, until)
        if reload:
            response = http.post(f"{edge_url}/v2/repository/models/split/load")
            if response.status_code != 200:
                raise SystemExit(f"reloading the split model failed: {response.status_code} {response.text[:200]}")
        for url in filter(None, (edge_url, cloud_url)):
            _wait_ready(http, url, until)


def request(inputs: np.ndarray, k: int, params: dict[str, object]) -> tuple[bytes, dict[str, str]]:
    """The OIP request for sample `k` of `inputs` ((N, C, H, W) pixels or (N,) files), binary."""
    x = inputs[k:k + 1]  # (1, C, H, W) or (1,): a slice keeps an object array an array
    return encode_request({"input": x}, parameters=params)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="splitting.live_client", description=__doc__.splitlines()[0])
    parser.add_argument("--edge-url", required=True, help="edge agent base URL")
    parser.add_argument("--strategy", default="sac", help="planner the edge should use")
    parser.add_argument("--actions", type=Path, default=None,
                        help="JSON list of action labels to replay instead of a strategy (e.g. the oracle's)")
    parser.add_argument("--deadline-ms", type=float, required=True, help="deadline of every request")
    parser.add_argument("--period-s", type=float, default=0.25, help="time between requests")
    parser.add_argument("--duration-s", type=float, required=True, help="how long to send")
    parser.add_argument("--start-unix", type=float, required=True, help="wall-clock time of trace time 0")
    parser.add_argument("--bundle", type=Path, required=True, help="the bundle (its dataset's test split is sent)")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset folder (not needed for digits)")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per request")
    parser.add_argument("--cloud-url", default=None, help="server base URL, waited for before the first request")
    parser.add_argument("--reload", action="store_true",
                        help="reload the edge's split model first (a fresh planner state for this run)")
    args = parser.parse_args(argv)
    _prepare(args.edge_url, args.cloud_url, reload=args.reload, until=args.start_unix)

    dataset = load_dataset(load_manifest(args.bundle, verify=False).dataset, data_dir=args.data_dir)
    # The device holds each image as its file (CIFAR-10's JPEGs) where the dataset has files: server-only
    # uploads that file, as the environment's server_only_jpeg assumes; device-side actions decode it first.
    test, inputs = dataset.test, request_inputs(dataset)
    steps = int(args.duration_s / args.period_s)
    replay = json.loads(args.actions.read_text()) if args.actions else None
    url = f"{args.edge_url}/v2/models/split/infer"
    with httpx.Client(timeout=30.0) as http, args.out.open("w") as out:
        for n in range(steps):
            due = args.start_unix + n * args.period_s
            time.sleep(max(0.0, due - time.time()))
            params: dict[str, object] = {"deadline_ms": args.deadline_ms}
            if replay is not None:
                params["action"] = replay[n % len(replay)]
            else:
                params["strategy"] = args.strategy
            k = n % len(test.y)
            body, headers = request(inputs, k, params)
            sent = time.time()
            record: dict[str, object] = {"n": n, "t_s": sent - args.start_unix}
            try:
                response = http.post(url, content=body, headers=headers)
                record["latency_ms"] = 1000.0 * (time.time() - sent)
                if response.status_code != 200:
                    record["error"] = f"{response.status_code}: {response.text[:200]}"
                else:
                    outputs = decode_response(response.content, response.headers)[1]
                    truth = test.y[k]
                    record.update(label=int(outputs["label"][0]), correct=bool(outputs["label"][0] == truth),
                                  source=_text(outputs["source"][0]), reason=_text(outputs["fallback_reason"][0]),
                                  action=_text(outputs["action"][0]), payload_bytes=int(outputs["payload_bytes"][0]))
            except httpx.HTTPError as err:
                record["latency_ms"] = 1000.0 * (time.time() - sent)
                record["error"] = f"{type(err).__name__}: {err}"
            out.write(json.dumps(record) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
