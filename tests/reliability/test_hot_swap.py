"""Hot swap on real processes under load: `POST /v2/repository/models/{name}/load` and SIGHUP, edge and cloud.

A second bundle (another cloud model, another operating point) is swapped in while
clients stream at the edge and hammer the cloud directly; no request fails, no offload falls back,
every answer is right for the bundle serving at that moment, and no request mixes two models. Loads
that must fail (missing, tampered, incompatible bundles, bad bodies) leave the old model answering.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from cloud_server.main import create_app
from cloud_server.settings import CloudSettings
from serving.repository import reload_on_sighup
from shared.bundle import STUDENT_ONNX, TEACHER_ONNX, file_entry, load_manifest, write_manifest
from shared.oip import decode_response, encode_request
from tests.reliability.checks import log, summarise
from tests.reliability.services import Managed
from tests.reliability.traffic import Outcome, Reference, Traffic, tally, window, wrong_answers

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture(scope="module")
def other_bundle(tiny_bundle: Path, pool: np.ndarray, reference: Reference,
                 tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, different bundle with the same input shape and classes, made in milliseconds from the first.

    Its cloud model is the first bundle's student (so cloud answers change wherever student and
    teacher disagree) and its operating point offloads 35% instead of 20% (so edge decisions change).
    """
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("other") / "tiny-other"))
    shutil.copyfile(bundle / STUDENT_ONNX, bundle / TEACHER_ONNX)
    manifest = load_manifest(bundle, verify=False)  # teacher.onnx was just replaced: re-hash it below
    manifest.files[TEACHER_ONNX] = file_entry(bundle / TEACHER_ONNX)
    scores = reference.engine.filter.scores(reference.engine.logits(pool))  # (P,)
    point = manifest.operating_point.model_copy(update={"threshold": float(np.quantile(scores, 0.65))})
    write_manifest(bundle, manifest.with_operating_point(point))
    return bundle


@pytest.fixture(scope="module")
def other_reference(other_bundle: Path) -> Reference:
    return Reference(other_bundle)


@dataclass
class CloudHammer:
    """Clients posting batches straight at the cloud's teacher, recording (sent, done, status, idx, labels)."""

    cloud_url: str
    pool: np.ndarray
    clients: int = 4
    batch: int = 8
    results: list[tuple[float, float, int, np.ndarray, np.ndarray | None]] = field(default_factory=list)
    _stopping: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _next: itertools.count[int] = field(default_factory=itertools.count)

    async def _client(self) -> None:
        async with httpx.AsyncClient(timeout=10.0) as http:
            while not self._stopping:
                idx = (np.arange(self.batch) + next(self._next) * self.batch) % len(self.pool)
                body, headers = encode_request({"input": self.pool[idx]}, outputs=("label",))
                sent = time.monotonic()
                response = await http.post(f"{self.cloud_url}/v2/models/teacher/infer", content=body, headers=headers)
                labels = decode_response(response.content, response.headers)[1]["label"] \
                    if response.status_code == 200 else None
                self.results.append((sent, time.monotonic(), response.status_code, idx, labels))
                await asyncio.sleep(0.01)

    def start(self) -> CloudHammer:
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self.clients)]
        return self

    async def stop(self) -> None:
        self._stopping = True
        await asyncio.gather(*self._tasks)


async def _load(http: httpx.AsyncClient, service: Managed, model: str, bundle: Path | None = None,
                body: bytes | None = None) -> httpx.Response:
    if body is None:
        body = json.dumps({"parameters": {"bundle": str(bundle)}}).encode() if bundle is not None else b""
    return await http.post(f"{service.url}/v2/repository/models/{model}/load", content=body,
                           headers={"Content-Type": "application/json"})


def _reloads(service: Managed) -> int:
    return service.log_tail(10**7).count("SIGHUP: bundle")


async def test_swap_under_load_by_request_then_back_by_sighup(
        cloud: Managed, edge: Managed, pool: np.ndarray, reference: Reference, other_bundle: Path,
        other_reference: Reference) -> None:
    traffic = Traffic(edge.url, pool).start()
    hammer = CloudHammer(cloud.url, pool).start()
    marks: dict[str, float] = {}
    try:
        async with httpx.AsyncClient(timeout=60.0) as http:
            await traffic.more(400)
            marks["cloud_load"] = time.monotonic()
            reply = await _load(http, cloud, "teacher", other_bundle)
            assert reply.status_code == 200, reply.text
            assert reply.json()["bundle"] == str(other_bundle) and reply.json()["name"] == "teacher"
            marks["cloud_swapped"] = time.monotonic()
            await traffic.more(400)
            marks["edge_load"] = time.monotonic()
            reply = await _load(http, edge, "edge", other_bundle)
            assert reply.status_code == 200, reply.text
            assert reply.json()["bundle"] == str(other_bundle) and reply.json()["name"] == "edge"
            marks["edge_swapped"] = time.monotonic()
            await traffic.more(400)
            # SIGHUP reloads the bundle each server was started with: back to the first one.
            reloads = _reloads(cloud), _reloads(edge)
            marks["sighup"] = time.monotonic()
            cloud.signal(signal.SIGHUP)
            edge.signal(signal.SIGHUP)
            await traffic.until(lambda: _reloads(cloud) > reloads[0] and _reloads(edge) > reloads[1],
                                timeout_s=30, what="both servers to log their SIGHUP reload")
            marks["reloaded"] = time.monotonic()
            await traffic.more(400)
    finally:
        outcomes = await traffic.stop()
        await hammer.stop()
        async with httpx.AsyncClient(timeout=60.0) as http:  # leave both on the configured bundle
            await _load(http, cloud, "teacher")
            await _load(http, edge, "edge")
    summarise("hot swap under load (edge traffic)", outcomes)
    start = min(marks.values())
    log.info("hot swap marks (s from the cloud load): %s", {k: round(v - start, 3) for k, v in marks.items()})
    assert "reloaded" in marks
    for service in (cloud, edge):
        assert "reloading" not in service.log_tail(10**7), service.log_tail()

    # Zero failed requests, and not one offload fell back: the cloud never refused or dropped one.
    assert all(o.ok for o in outcomes) and len(outcomes) > 100
    assert tally(outcomes)[1] == {}
    a, b = reference, other_reference
    # Each answer is right for the bundles serving when it was asked (edge bundle, cloud bundle).
    phases: list[tuple[list[Outcome], Reference, Reference]] = [
        (window(outcomes, done_before=marks["cloud_load"]), a, a),
        (window(outcomes, sent_after=marks["cloud_swapped"], done_before=marks["edge_load"]), a, b),
        (window(outcomes, sent_after=marks["edge_swapped"], done_before=marks["sighup"]), b, b),
        (window(outcomes, sent_after=marks["reloaded"]), a, a),
    ]
    for i, (phase, edge_ref, cloud_ref) in enumerate(phases):
        assert phase, f"phase {i} has no answers"
        assert not wrong_answers(phase, pool, edge_ref, cloud=cloud_ref), f"phase {i}"
    # During a swap an answer comes from one bundle or the other, never anything else.
    combos = [(a, a), (a, b), (b, b), (b, a)]
    for o in outcomes:
        assert any(not wrong_answers([o], pool, e, cloud=c) for e, c in combos), f"request {o.batch}"
    # The swap really happened: with bundle B at the edge some answers are wrong for bundle A.
    assert wrong_answers(phases[2][0], pool, a)

    # Straight at the cloud: every request answered, and each by exactly one teacher.
    assert hammer.results and all(status == 200 for _, _, status, _, _ in hammer.results)
    teacher_a = a.expected(pool).teacher
    teacher_b = b.expected(pool).teacher
    by = {"a": 0, "b": 0}
    for sent, done, _, idx, labels in hammer.results:
        is_a, is_b = np.array_equal(labels, teacher_a[idx]), np.array_equal(labels, teacher_b[idx])
        assert is_a or is_b, f"cloud answer {labels} matches neither teacher"
        if done < marks["cloud_load"] or sent > marks["reloaded"]:
            assert is_a
        elif marks["cloud_swapped"] < sent and done < marks["sighup"]:
            assert is_b
        by["a" if is_a else "b"] += not (is_a and is_b)
    assert by["a"] > 0 and by["b"] > 0, by


@pytest.fixture(scope="module")
def broken_bundles(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Bundles that must not load: not there, no manifest, tampered files, a corrupt graph, other classes."""
    root = tmp_path_factory.mktemp("broken")
    tampered = Path(shutil.copytree(tiny_bundle, root / "tampered"))
    for name in (STUDENT_ONNX, TEACHER_ONNX):
        (tampered / name).write_bytes((tampered / name).read_bytes() + b"\x00")
    corrupt = Path(shutil.copytree(tiny_bundle, root / "corrupt"))  # hashes match, the graphs are junk
    manifest = load_manifest(corrupt, verify=False)
    for name in (STUDENT_ONNX, TEACHER_ONNX):
        (corrupt / name).write_bytes(b"this is not an onnx graph")
        manifest.files[name] = file_entry(corrupt / name)
    write_manifest(corrupt, manifest)
    other_classes = Path(shutil.copytree(tiny_bundle, root / "other-classes"))
    manifest = load_manifest(other_classes)
    write_manifest(other_classes, manifest.model_copy(update={"classes": [f"c{i}" for i in range(10)]}))
    no_manifest = root / "no-manifest"
    no_manifest.mkdir()
    yield {"missing": root / "not-there", "no_manifest": no_manifest, "tampered": tampered, "corrupt": corrupt,
           "other_classes": other_classes}


# (case, expected status, words the error must contain)
FAILED_LOADS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("missing", 400, ("does not exist",)),
    ("no_manifest", 400, ("no manifest.json",)),
    ("tampered", 422, ("tampered",)),
    ("corrupt", 422, ("onnxruntime cannot load",)),
    ("other_classes", 409, ("classes", "restart")),
)


@pytest.mark.parametrize(("target", "model"), [("cloud", "teacher"), ("edge", "edge")])
async def test_failed_loads_leave_the_old_model_serving(
        target: str, model: str, cloud: Managed, edge: Managed, pool: np.ndarray, reference: Reference,
        broken_bundles: dict[str, Path]) -> None:
    service = cloud if target == "cloud" else edge
    traffic = Traffic(edge.url, pool).start()
    try:
        async with httpx.AsyncClient(timeout=60.0) as http:
            await traffic.more(200)
            for case, status, words in FAILED_LOADS:
                reply = await _load(http, service, model, broken_bundles[case])
                assert reply.status_code == status, (case, reply.text)
                error = reply.json()["error"]
                assert "previous bundle keeps serving" in error and all(w in error for w in words), (case, error)
                index = (await http.post(f"{service.url}/v2/repository/index")).json()
                assert index[0]["name"] == model and index[0]["state"] == "READY"
                assert str(broken_bundles[case]) in index[0]["reason"], index
                await traffic.more(50)  # the old model still answers, rightly (checked below)
            for body, words in ((b"{not json", ("not JSON",)), (b'{"parameters": {"bundel": "/x"}}', ("bundel",)),
                                (b'{"parameters": {"bundle": 7}}', ("bundle",)), (b"[1]", ("object",))):
                reply = await _load(http, service, model, body=body)
                assert reply.status_code == 400 and all(w in reply.json()["error"] for w in words), reply.text
            reply = await _load(http, service, "no-such-model", reference.engine.bundle)
            assert reply.status_code == 404 and "no-such-model" in reply.json()["error"]
            # A good load (empty body: the configured bundle) clears the failure from the index.
            reply = await _load(http, service, model)
            assert reply.status_code == 200, reply.text
            index = (await http.post(f"{service.url}/v2/repository/index")).json()
            assert index == [{"name": model, "version": "1", "state": "READY", "reason": ""}]
            await traffic.more(200)
    finally:
        outcomes = await traffic.stop()
    summarise(f"failed loads on the {target}", outcomes)
    assert all(o.ok for o in outcomes)
    assert not wrong_answers(outcomes, pool, reference)
    assert tally(outcomes)[1] == {}  # and the cloud never failed an offload meanwhile


async def test_sighup_runs_the_reload_and_survives_its_failure(caplog: pytest.LogCaptureFixture) -> None:
    """The handler both servers install: each SIGHUP starts one reload; a failing one is logged, not raised."""
    calls: list[str] = []

    async def reload() -> None:
        calls.append("reload")
        if len(calls) == 2:
            raise RuntimeError("bundle gone")

    with caplog.at_level(logging.INFO, logger="serving.repository"), \
            reload_on_sighup(reload, what="bundle /srv/b"):
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGHUP)
            await asyncio.sleep(0.2)
    assert calls == ["reload", "reload"]
    assert "SIGHUP: bundle /srv/b reloaded" in caplog.text
    assert "reloading bundle /srv/b failed, the previous bundle keeps serving: bundle gone" in caplog.text
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL  # handler removed with the block


def test_cloud_repository_needs_the_token(tiny_bundle: Path) -> None:
    """A load opens files the caller names, so the cloud guards it like inference."""
    app = create_app(CloudSettings(bundle=tiny_bundle, threads=1, token="s3cret"))
    with TestClient(app) as client:
        for path in ("/v2/repository/index", "/v2/repository/models/teacher/load"):
            assert client.post(path).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert client.post("/v2/repository/index", headers=auth).json()[0]["state"] == "READY"
        reply = client.post("/v2/repository/models/teacher/load", headers=auth)
        assert reply.status_code == 200 and reply.json()["bundle"] == str(tiny_bundle)
