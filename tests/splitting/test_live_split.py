"""Live split inference: the edge's `split` model, the server's `tail_p` models, the fallback, bad parameters."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from shared.datasets import load_dataset
from shared.feature_codec import FEATURE, quantize
from shared.image_codec import as_bytes_tensor, encode_image
from shared.oip import decode_request, decode_response, encode_request
from splitting.setup import ARTIFACT_SPEC, SPEC_JSON, PlannerSpec, store_artifact
from testbed.services import running
from tests.cloud_server.helpers import metric
from tests.deploy.tools import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live_bundle(profiled_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("live") / "bundle"
    shutil.copytree(profiled_bundle, out)
    store_artifact(out, ARTIFACT_SPEC, SPEC_JSON, json.dumps(PlannerSpec(deadline_ms=500.0).to_json()).encode())
    return out


def _ask(url: str, x: np.ndarray, **params: object) -> dict[str, np.ndarray]:
    body, headers = encode_request({"input": x}, parameters=params)
    response = httpx.post(f"{url}/v2/models/split/infer", content=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return decode_response(response.content, response.headers)[1]


def _labels(out: dict[str, np.ndarray], key: str) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in out[key]]


def test_every_placement_answers_and_a_dead_server_loses_nothing(live_bundle: Path, tmp_path: Path) -> None:
    x = load_dataset("digits").test.x[:1]
    tails = ["--models", "teacher,tail_1,tail_2,tail_3"]
    with running(live_bundle, log_dir=tmp_path, cloud_args=tails) as (cloud, edge):
        for action, source in (("device:exit2", "edge"), ("split@2:4b:exit4", "cloud"), ("server", "cloud"),
                               ("split@1:2b:exit3", "cloud")):
            out = _ask(edge.url, x, action=action, deadline_ms=5000)
            assert _labels(out, "source") == [source] and _labels(out, "action") == [action]
            assert 0 <= int(out["label"][0]) < 10
        assert int(_ask(edge.url, x, action="split@2:2b:exit4", deadline_ms=5000)["payload_bytes"][0]) > 0
        # A device that holds the image as a file: device actions decode it, server-only uploads the file.
        file = as_bytes_tensor([encode_image(x[0])])
        from_pixels = _ask(edge.url, x, action="server", deadline_ms=5000)
        from_file = _ask(edge.url, file, action="server", deadline_ms=5000)
        assert _labels(from_file, "source") == ["cloud"] and int(from_file["label"][0]) == int(from_pixels["label"][0])
        assert int(from_file["payload_bytes"][0]) == len(file[0]) and int(from_pixels["payload_bytes"][0]) == 64
        on_device = _ask(edge.url, file, action="device:exit2", deadline_ms=5000)
        assert int(on_device["label"][0]) == int(_ask(edge.url, x, action="device:exit2", deadline_ms=5000)["label"][0])
        for strategy in ("device_only", "server_only", "server_only_raw", "server_only_jpeg", "neurosurgeon", "edgent"):
            assert _labels(_ask(edge.url, x, strategy=strategy, deadline_ms=5000), "source")[0] in ("edge", "cloud")

        # A bad quantisation parameter is a 400 that names it.
        code = quantize(np.ones((1, 4, 2, 2), np.float32), 4)
        body, headers = encode_request({FEATURE: code.packed}, parameters={"scale": 0.1, "zero_point": 99, "bits": 4})
        bad = httpx.post(f"{cloud.url}/v2/models/tail_2/infer", content=body, headers=headers, timeout=30)
        assert bad.status_code == 400 and "zero_point" in bad.json()["error"]
        # The tails are ordinary models of the runtime: the infer fast path counts them by name.
        text = httpx.get(f"{cloud.url}/metrics", timeout=10).text
        assert metric(text, "edgecloud_model_requests_total", {"model": "tail_2", "code": "200"}) >= 2
        assert metric(text, "edgecloud_model_requests_total", {"model": "tail_1", "code": "200"}) >= 1
        assert metric(text, "edgecloud_model_requests_total", {"model": "tail_2", "code": "400"}) == 1

        os.killpg(cloud.process.pid, signal.SIGKILL)
        cloud.process.wait()
        for action in ("split@2:4b:exit4", "server", "split@1:8b:exit2"):
            out = _ask(edge.url, x, action=action, deadline_ms=2000)
            assert _labels(out, "source") == ["edge-fallback"]
            assert _labels(out, "fallback_reason")[0] in ("unreachable", "circuit_open")
            assert 0 <= int(out["label"][0]) < 10


def test_bad_request_parameters_are_named(live_bundle: Path, tmp_path: Path) -> None:
    x = load_dataset("digits").test.x[:1]
    with running(live_bundle, log_dir=tmp_path, cloud_args=["--models", "teacher,tail_1,tail_2,tail_3"]) as (_, edge):
        for params, needle in (({"strategy": "magic"}, "strategy"), ({"action": "split@9:8b:exit4"}, "action"),
                               ({"deadline_ms": -1}, "deadline_ms")):
            body, headers = encode_request({"input": x}, parameters=params)
            response = httpx.post(f"{edge.url}/v2/models/split/infer", content=body, headers=headers, timeout=30)
            assert response.status_code == 400 and needle in response.json()["error"]


def test_the_live_client_sends_one_sample_as_pixels_or_as_its_file() -> None:
    from splitting.live_client import request

    pixels = load_dataset("digits").test.x[:3]
    files = as_bytes_tensor([encode_image(x) for x in pixels])
    for inputs, datatype in ((pixels, "UINT8"), (files, "BYTES")):
        body, headers = request(inputs, 2, {"strategy": "sac", "deadline_ms": 200.0})
        _, tensors = decode_request(body, headers, max_bytes=1 << 20)
        sent = tensors["input"]
        assert len(sent) == 1 and (sent.dtype == object) == (datatype == "BYTES")
        if datatype == "BYTES":
            assert sent[0] == files[2]
        else:
            np.testing.assert_array_equal(sent, pixels[2:3])


def test_a_hedged_request_answers_through_the_real_services_and_survives_a_dead_server(
        profiled_bundle: Path, tmp_path: Path) -> None:
    from splitting.regime import Regime

    bundle = tmp_path / "bundle"
    shutil.copytree(profiled_bundle, bundle)
    spec = PlannerSpec(Regime(deadline_ms=500.0, hedge=True))
    store_artifact(bundle, ARTIFACT_SPEC, SPEC_JSON, json.dumps(spec.to_json()).encode())
    x = load_dataset("digits").test.x[:1]
    with running(bundle, log_dir=tmp_path / "logs", cloud_args=["--models", "teacher"]) as (cloud, edge):
        for params in ({"strategy": "hedge"}, {"action": "hedge"}):
            out = _ask(edge.url, x, deadline_ms=5000, **params)
            assert _labels(out, "action") == ["hedge"] and 0 <= int(out["label"][0]) < 10
            source, reason = _labels(out, "source")[0], _labels(out, "fallback_reason")[0]
            assert (source, reason) in (("cloud", ""), ("edge-fallback", "local_first"))
        os.killpg(cloud.process.pid, signal.SIGKILL)
        cloud.process.wait()
        for _ in range(3):  # the device's own pass may still win the race against a refused connection
            out = _ask(edge.url, x, strategy="hedge", deadline_ms=2000)
            assert _labels(out, "source") == ["edge-fallback"] and 0 <= int(out["label"][0]) < 10
            assert _labels(out, "fallback_reason")[0] in ("unreachable", "circuit_open", "local_first")


def test_the_wire_bytes_bench_counts_what_crosses_between_the_real_edge_and_server(
        live_bundle: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    import split_wire_bytes  # bench/ holds scripts, not a package

    server, split, device = split_wire_bytes.measure(live_bundle, None, ["server", "split@2:4b:exit4", "device:exit2"],
                                                     3, tmp_path)
    assert device.wire_bytes == 0 and device.offloaded == 0
    for row in (server, split):
        assert row.offloaded == 3
        # HTTP and the OIP header ride on every request, and an answer comes back.
        assert row.up_bytes > row.payload_bytes + 100 and row.down_bytes > 100
    assert server.payload_bytes == 64 and 0 < split.payload_bytes < server.payload_bytes  # 8x8 digits, raw
    assert split.test_accuracy is not None and 0 < split.test_accuracy <= 1
