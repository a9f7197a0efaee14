"""One server of the runtime hosting three models at once (the teacher and two students), as a real process.

tritonclient (a client nobody here wrote) drives the three concurrently; each model has its own
batcher and its own metrics, and unloading and reloading one does not disturb the other two.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from shared.bundle import load_manifest
from shared.preprocess import normalize
from testbed.services import Service, free_port, start_service, stop_service, wait_ready
from tests.cloud_server.helpers import metric
from tests.helpers.tiny_bundle import add_student

httpclient = pytest.importorskip("tritonclient.http")
pytestmark = pytest.mark.slow

MODELS = ("teacher", "student", "student-b")


@pytest.fixture(scope="module")
def bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("multi") / "bundle"))
    return add_student(copy, "student-b", c=1.0, max_iter=200)


@pytest.fixture(scope="module")
def server(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_service("cloud", ["cloud", "serve", "--bundle", str(bundle), "--models", ",".join(MODELS),
                                      "--threads", "1", "--max-queue-delay-ms", "5"],
                            port=free_port(), log_dir=tmp_path_factory.mktemp("logs"))
    try:
        wait_ready(service)
        yield service
    finally:
        stop_service(service)


def _reference(bundle: Path, name: str, x: np.ndarray) -> np.ndarray:
    manifest = load_manifest(bundle)
    session = ort.InferenceSession(str(bundle / manifest.models[name].file), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": normalize(x, manifest.input.mean, manifest.input.std)})[0]


def _infer(client: object, name: str, x: np.ndarray) -> np.ndarray:
    tensor = httpclient.InferInput("input", list(x.shape), "UINT8")
    tensor.set_data_from_numpy(x, binary_data=True)
    outputs = [httpclient.InferRequestedOutput("logits", binary_data=True)]
    return client.infer(name, [tensor], outputs=outputs).as_numpy("logits")  # type: ignore[attr-defined]


def _client(service: Service) -> object:
    return httpclient.InferenceServerClient(url=service.url.removeprefix("http://"), network_timeout=30.0)


def _hammer(service: Service, name: str, x: np.ndarray, stop: threading.Event, answers: list[np.ndarray],
            errors: list[str]) -> None:
    """One tritonclient user sending 1-sample requests to `name` until `stop` is set."""
    client = _client(service)
    try:
        i = 0
        while not stop.is_set():
            sample = x[i % len(x)][None]
            try:
                answers.append(_infer(client, name, sample))
            except Exception as err:
                errors.append(f"{name}: {type(err).__name__}: {err}")
            i += 1
    finally:
        client.close()  # type: ignore[attr-defined]


def test_three_models_serve_concurrently_each_with_its_own_batcher_and_metrics(
        server: Service, bundle: Path, tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:24]
    client = _client(server)
    try:
        assert all(client.is_model_ready(name) for name in MODELS)  # type: ignore[attr-defined]
        index = {entry["name"]: entry["state"] for entry in client.get_model_repository_index()}  # type: ignore
        assert {name: index[name] for name in MODELS} == dict.fromkeys(MODELS, "READY")
    finally:
        client.close()  # type: ignore[attr-defined]

    results: dict[tuple[str, int], list[np.ndarray]] = {(name, u): [] for name in MODELS for u in range(2)}
    errors: list[str] = []

    def user(name: str, number: int) -> None:
        local = _client(server)
        try:
            for i in range(len(x)):
                results[(name, number)].append(_infer(local, name, x[i:i + 1]))
        except Exception as err:
            errors.append(f"{name}: {err}")
        finally:
            local.close()  # type: ignore[attr-defined]

    threads = [threading.Thread(target=user, args=(name, u)) for name in MODELS for u in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    for name in MODELS:
        expected = _reference(bundle, name, x)
        for u in range(2):  # each user sent all 24 samples, one per request, in order
            np.testing.assert_allclose(np.concatenate(results[(name, u)]), expected, rtol=1e-4, atol=1e-4)
    # The two students really are different models, and each answer came from its own graph.
    assert not np.allclose(_reference(bundle, "student", x), _reference(bundle, "student-b", x))

    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for name in MODELS:
        assert metric(text, "edgecloud_model_batch_size_sum", {"model": name}) == 2 * len(x), name
        assert metric(text, "edgecloud_model_requests_total", {"model": name, "code": "200"}) == 2 * len(x), name
        assert metric(text, "edgecloud_model_compute_seconds_count", {"model": name}) >= 1


def test_unloading_and_reloading_one_model_does_not_disturb_the_others(
        server: Service, tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:16]
    stop = threading.Event()
    answers: dict[str, list[np.ndarray]] = {"teacher": [], "student": []}
    errors: list[str] = []
    users = [threading.Thread(target=_hammer, args=(server, name, x, stop, answers[name], errors))
             for name in answers]
    for thread in users:
        thread.start()
    client = _client(server)
    try:
        client.unload_model("student-b")  # type: ignore[attr-defined]
        assert not client.is_model_ready("student-b")  # type: ignore[attr-defined]
        with pytest.raises(Exception, match="unknown model 'student-b': it was unloaded"):
            _infer(client, "student-b", x[:1])
        index = {e["name"]: e for e in client.get_model_repository_index()}  # type: ignore[attr-defined]
        assert index["student-b"]["state"] == "UNAVAILABLE" and index["student-b"]["reason"] == "unloaded"
        assert index["teacher"]["state"] == "READY"
        client.load_model("student-b")  # type: ignore[attr-defined]
        assert client.is_model_ready("student-b")  # type: ignore[attr-defined]
        assert _infer(client, "student-b", x[:2]).shape == (2, 10)
    finally:
        stop.set()
        for thread in users:
            thread.join(timeout=60)
        client.close()  # type: ignore[attr-defined]
    assert not errors, errors[:5]
    assert len(answers["teacher"]) > 0 and len(answers["student"]) > 0
