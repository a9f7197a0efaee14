"""`edgecloud eval` and `edgecloud demo` against real cloud and edge processes (tiny bundle).

Every number in the report is checked against an offline recomputation with onnxruntime and the
pickled offloader on the same samples: the live system must answer exactly what the models say.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgecloud.cli import main
from shared.bundle import load_manifest, load_offloader
from shared.datasets import load_dataset, normalize
from testbed.services import Service, running

pytestmark = pytest.mark.slow
LIMIT = 300
FIELDS = {"accuracy", "runtime_s", "offload_rate", "p50_ms", "p99_ms", "bytes_sent", "samples", "answered"}


@pytest.fixture(scope="module")
def services(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service]]:
    with running(tiny_bundle, log_dir=tmp_path_factory.mktemp("logs")) as pair:
        yield pair


def _expected(bundle: Path, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and offload rate of each strategy, computed offline from the bundle's own files."""
    manifest = load_manifest(bundle)
    xs = normalize(x, manifest.input.mean, manifest.input.std)

    def logits(name: str) -> np.ndarray:
        session = ort.InferenceSession(str(bundle / name), providers=["CPUExecutionProvider"])
        return session.run(["logits"], {"input": xs})[0]

    s_logits, t_logits = logits("student.onnx"), logits("teacher.onnx")
    offload = load_offloader(bundle, manifest).decision_function(s_logits) > manifest.operating_point.threshold
    coop = np.where(offload, t_logits.argmax(1), s_logits.argmax(1))
    return {"edge_only": float(np.mean(s_logits.argmax(1) == y)), "cloud_only": float(np.mean(t_logits.argmax(1) == y)),
            "cooperation": float(np.mean(coop == y)), "offload_rate": float(offload.mean())}


def test_eval_reports_what_the_models_compute(
    services: tuple[Service, Service], tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud, edge = services
    out = tmp_path / "eval"
    assert main(["eval", "--bundle", str(tiny_bundle), "--edge-url", edge.url, "--cloud-url", cloud.url,
                 "--limit", str(LIMIT), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| cooperation |" in printed and "cooperation / edge-only runtime" in printed

    report = json.loads((out / "report.json").read_text())
    manifest = load_manifest(tiny_bundle)
    assert report["teacher_accuracy"] == manifest.metrics.teacher_accuracy
    assert report["student_accuracy"] == manifest.metrics.student_accuracy
    strategies = report["strategies"]
    assert set(strategies) == {"edge_only", "cloud_only", "cooperation"}
    test = load_dataset("digits", seed=0).test
    want = _expected(tiny_bundle, test.x[:LIMIT], test.y[:LIMIT])
    pixel_bytes = int(np.prod(manifest.input.shape))
    for name, row in strategies.items():
        assert row.keys() >= FIELDS, name
        assert row["samples"] == row["answered"] == LIMIT
        assert row["accuracy"] == pytest.approx(want[name]), name
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["runtime_s"] > 0
    assert strategies["edge_only"]["offload_rate"] == 0.0 and strategies["edge_only"]["bytes_sent"] == 0
    assert strategies["cloud_only"]["offload_rate"] == 1.0
    # Every offloaded sample costs at least its raw uint8 pixels on the wire.
    assert strategies["cloud_only"]["bytes_sent"] >= LIMIT * pixel_bytes
    assert strategies["cooperation"]["offload_rate"] == pytest.approx(want["offload_rate"])
    assert 0 < strategies["cooperation"]["bytes_sent"] < strategies["cloud_only"]["bytes_sent"]
    for name in ("report.md", "accuracy_vs_offload.png", "latency_cdf.png"):
        assert (out / name).is_file(), name
    assert "| cooperation |" in (out / "report.md").read_text()



def test_repeat_interleaves_rounds_and_reports_the_median_round(
    services: tuple[Service, Service], tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud, edge = services
    out = tmp_path / "eval"
    limit = 64
    assert main(["eval", "--bundle", str(tiny_bundle), "--edge-url", edge.url, "--cloud-url", cloud.url,
                 "--limit", str(limit), "--repeat", "3", "--strategies", "edge_only,cooperation",
                 "--out", str(out), "--no-progress"]) == 0
    assert "median of 3 interleaved rounds" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["repeat"] == 3
    test = load_dataset("digits", seed=0).test
    want = _expected(tiny_bundle, test.x[:limit], test.y[:limit])
    for name, row in report["strategies"].items():
        rounds = row["runtimes_s"]
        assert len(rounds) == 3 and all(t > 0 for t in rounds), name
        assert row["runtime_s"] == sorted(rounds)[1], name  # the median round's own numbers
        assert row["answered"] == limit and row["accuracy"] == pytest.approx(want[name]), name
    assert main(["eval", "--bundle", str(tiny_bundle), "--edge-url", edge.url, "--repeat", "0",
                 "--out", str(out)]) == 2
    assert "repeat must be >= 1" in capsys.readouterr().err

def _png_folder(root: Path, x: np.ndarray, y: np.ndarray, split: str) -> None:
    """Digits as a user's image folder: <split>/<class>/<i>.png, grey, lossless."""
    from shared.image_codec import encode_image

    for i, (sample, label) in enumerate(zip(x, y, strict=True)):
        folder = root / split / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:04d}.png").write_bytes(encode_image(sample))


def test_eval_sends_image_files_and_the_edge_forwards_them(
    services: tuple[Service, Service], tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _cloud, edge = services
    digits = load_dataset("digits", seed=0)
    root = tmp_path / "photos"
    _png_folder(root, digits.train.x[:200], digits.train.y[:200], "train")
    _png_folder(root, digits.test.x[:120], digits.test.y[:120], "test")
    reports = {}
    for payload in ("files", "pixels"):
        out = tmp_path / payload
        assert main(["eval", "--bundle", str(tiny_bundle), "--edge-url", edge.url, "--dataset", "imagefolder",
                     "--data-dir", str(root), "--payload", payload, "--out", str(out), "--no-progress"]) == 0
        reports[payload] = json.loads((out / "report.json").read_text())
    assert "requests carry image files" in capsys.readouterr().out
    files, pixels = reports["files"], reports["pixels"]
    assert files["payload"] == "files" and pixels["payload"] == "pixels"
    assert pixels["payload_bytes_per_sample"] == 64  # 1x8x8 uint8
    # The folder is read at the bundle's 8x8 and PNG is lossless: both payloads are the same samples.
    test = load_dataset("imagefolder", data_dir=root, image_size=(8, 8)).test
    want = _expected(tiny_bundle, test.x, test.y)
    png_bytes = sum(p.stat().st_size for p in (root / "test").rglob("*.png"))
    assert files["payload_bytes_per_sample"] == pytest.approx(png_bytes / 120)
    for report in (files, pixels):
        for name, row in report["strategies"].items():
            assert row["answered"] == 120 and row["accuracy"] == pytest.approx(want[name]), name
    # Cloud-only forwards every file as it came: the wire carries at least all of them.
    assert files["strategies"]["cloud_only"]["bytes_sent"] >= png_bytes
    assert main(["eval", "--bundle", str(tiny_bundle), "--edge-url", edge.url, "--payload", "files",
                 "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "has no image files to send; use --payload pixels" in capsys.readouterr().err


def test_eval_names_an_unreachable_edge(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import edgecloud.evaluation.run as run_module

    real = run_module.wait_ready
    monkeypatch.setattr(run_module, "wait_ready", lambda url, timeout_s=60.0: real(url, timeout_s=0.5))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["eval", "--bundle", str(tiny_bundle), "--edge-url", f"http://127.0.0.1:{port}",
                 "--out", str(tmp_path), "--no-progress"]) == 2
    assert f"http://127.0.0.1:{port} did not become ready" in capsys.readouterr().err


def _demo_dir(tiny_bundle: Path, tmp_path: Path) -> Path:
    # A verified bundle already in place: the demo reuses it instead of building (its cache path).
    shutil.copytree(tiny_bundle, tmp_path / "demo" / "bundle")
    return tmp_path / "demo"


def test_demo_serves_the_cached_bundle_and_prints_the_table(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _demo_dir(tiny_bundle, tmp_path)
    assert main(["demo", "--build", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for strategy in ("edge_only", "cloud_only", "cooperation"):
        assert f"| {strategy} |" in printed
    # The student's size against the teacher's (the tiny bundle has no build settings, so no target).
    assert "student size: " in printed and "of the teacher's parameter bytes" in printed
    report = json.loads((out / "eval" / "report.json").read_text())
    assert all(r["answered"] == r["samples"] for r in report["strategies"].values())


def _listening(url: str) -> bool:
    host, port = re.match(r"http://([\d.]+):(\d+)", url).groups()  # type: ignore[union-attr]
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


def test_demo_stops_both_services_on_ctrl_c(tiny_bundle: Path, tmp_path: Path) -> None:
    out = _demo_dir(tiny_bundle, tmp_path)
    log = tmp_path / "demo.log"
    with log.open("wb") as handle:
        # A slow cloud (every batch waits 300 ms for company) keeps the evaluation running well past
        # the moment both services are seen and the Ctrl-C is sent; on a quiet machine the tiny
        # bundle's evaluation could otherwise finish first and exit 0.
        env = {**os.environ, "EDGECLOUD_MAX_QUEUE_DELAY_MS": "300"}
        # A terminal's foreground job has Ctrl-C live; a test run started in the background (`make test &`)
        # inherits SIGINT ignored, and Popen would pass that on. Give the demo the terminal's disposition.
        argv = [sys.executable, "-m", "edgecloud", "demo", "--build", "--out", str(out), "--no-progress"]
        demo = subprocess.Popen(argv,
                                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        urls: list[str] = []
        while time.monotonic() < deadline and not urls:
            urls = re.findall(r"(?:cloud|edge) at (http://[\d.:]+)", log.read_text(errors="replace"))
            time.sleep(0.2)
        assert len(urls) == 2, log.read_text(errors="replace")
        assert all(_listening(u) for u in urls)
        os.killpg(demo.pid, signal.SIGINT)  # what a Ctrl-C in the terminal sends to the foreground group
        assert demo.wait(timeout=60) == 130
        assert not any(_listening(u) for u in urls), "a service outlived the demo"
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
