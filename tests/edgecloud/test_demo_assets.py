"""What `make demo` reads from the repository is what its manifests say, the pretrained bundle's figures are
what its files compute on the CIFAR-10 test split, and the demo's three parts run (issues 22 and 25)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecloud.cli import main
from edgecloud.demo import SAMPLE, SAMPLE_SHA256, DemoInputs
from edgecloud.demo_sim import TRACES
from offloading.bundle_figures import bundle_figures
from shared.bundle import load_manifest, sha256_file
from shared.datasets import load_for_bundle

REPO_ROOT = Path(__file__).resolve().parents[2]
CIFAR_DIR = REPO_ROOT.parent / "shared" / "data" / "cifar10"
# Byte-for-byte copies of two of ../shared/data/traces/cellular-up-test (data/traces/README.md).
TRACE_SHA256 = {
    "ATT-LTE-driving-2016_01": "99d8b0e73855bd99713711cabfe003fc2b932047bc7d2bc1ceec5bf7e0afc6dc",
    "TMobile-UMTS-driving_03": "85ca61ba85c38dc32a368a27e4acdc225c140e7c4cd9ec8bd609569cd0c6a6d8",
}
BUNDLES = {"cooperation": DemoInputs().cooperation, "split": DemoInputs().split, "variants": DemoInputs().variants}
# Issue 22 asks "at most ~20 MB" of the cooperation bundle. The split bundle holds the backbone several times
# over (each head and tail is a whole ONNX file: 58 MB in float32), so it is stored in fp16 and allowed more.
MAX_BUNDLE_BYTES = {"cooperation": 20 * 1024 * 1024, "split": 32 * 1024 * 1024, "variants": 20 * 1024 * 1024}


def test_the_embedded_images_and_traces_are_the_published_ones() -> None:
    assert sha256_file(SAMPLE) == SAMPLE_SHA256
    assert {p.name for p in TRACES.iterdir()} == set(TRACE_SHA256)
    for name, digest in TRACE_SHA256.items():
        assert sha256_file(TRACES / name) == digest, name


@pytest.mark.parametrize("part", sorted(BUNDLES))
def test_each_pretrained_bundle_verifies_and_is_small(part: str) -> None:
    bundle = BUNDLES[part]
    manifest = load_manifest(bundle, verify=True)  # every file's sha256
    assert manifest.dataset == "cifar10"
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    assert size <= MAX_BUNDLE_BYTES[part], f"{bundle}: {size / 1e6:.1f} MB"
    assert (bundle / "README.md").is_file(), "each bundle says how it was rebuilt"


@pytest.mark.slow
def test_the_cooperation_bundle_figures_are_what_its_files_compute_on_the_test_split() -> None:
    bundle = BUNDLES["cooperation"]
    manifest = load_manifest(bundle)
    test = load_for_bundle(manifest, data_dir=CIFAR_DIR).test
    assert len(test.y) == 10_000
    figures = bundle_figures(bundle, test)
    recorded = manifest.metrics.model_dump()
    for key in ("teacher_accuracy", "student_accuracy", "cooperative_accuracy", "offload_rate"):
        assert figures[key] == recorded[key], key


@pytest.mark.slow
def test_the_demo_runs_its_three_parts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    for heading in ("## 1. Cooperative inference", "## 2. Split inference", "## 3. Orchestration"):
        assert heading in out
    for row in ("| edge_only |", "| cloud_only |", "| cooperation |"):
        assert row in out
    cooperation = json.loads((tmp_path / "cooperation" / "report.json").read_text())
    assert cooperation["payload"] == "files" and 500 < cooperation["payload_bytes_per_sample"] < 3072
    assert (tmp_path / "split" / "report.json").is_file()
    assert list((tmp_path / "orchestration").glob("*.png"))
