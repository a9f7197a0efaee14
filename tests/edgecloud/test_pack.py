"""`edgecloud pack`: fewer bytes, fp16 weights, and a manifest whose figures are measured again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from compression.onnx_fp16 import to_fp16_storage
from edgecloud.cli import main
from offloading.bundle_figures import bundle_figures
from shared import bundle as B
from shared.datasets import load_dataset
from shared.onnx_session import batch_logits, open_session

pytestmark = pytest.mark.slow


def test_fp16_storage_halves_weights_and_keeps_the_interface(tiny_bundle: Path, tmp_path: Path) -> None:
    src = tiny_bundle / "teacher.onnx"
    n = to_fp16_storage(src, tmp_path / "t16.onnx", min_elements=16)
    assert n > 0
    model = onnx.load(str(tmp_path / "t16.onnx"))
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    full, half = batch_logits(open_session(src), x), batch_logits(open_session(tmp_path / "t16.onnx"), x)
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, full, atol=5e-2)


def test_pack_copies_what_is_served_and_measures_it_again(
    tiny_bundle: Path, tiny_test_split, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "packed"
    assert main(["pack", "--bundle", str(tiny_bundle), "--out", str(out), "--fp16", "teacher",
                 "--rebuild", "make it again"]) == 0
    assert "MB referenced by the manifest" in capsys.readouterr().out
    manifest = B.load_manifest(out)  # every sha256 verified
    assert manifest.models[manifest.teacher].checkpoint is None  # no torch checkpoint in a packed bundle
    assert not (out / "teacher.pt").exists()
    packed = manifest.metrics.model_dump()["packed"]
    assert packed["fp16"] == ["teacher"] and packed["rebuild"] == "make it again"
    # The manifest's figures are what the packed files compute on the test split.
    figures = bundle_figures(out, load_dataset(manifest.dataset, seed=0).test)
    for key in ("teacher_accuracy", "student_accuracy", "cooperative_accuracy", "offload_rate"):
        assert figures[key] == manifest.metrics.model_dump()[key], key
    assert manifest.models[manifest.teacher].metrics["storage"].startswith("fp16")
    readme = (out / "README.md").read_text()
    assert "make it again" in readme and "fp16" in readme
    assert f"cooperative_accuracy: {figures['cooperative_accuracy']:.4f}" in readme
    # A second pack into the same place is refused.
    assert main(["pack", "--bundle", str(tiny_bundle), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_pack_names_an_unknown_model(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pack", "--bundle", str(tiny_bundle), "--out", str(tmp_path / "p"), "--fp16", "nope"]) == 2
    assert "no model(s) nope" in capsys.readouterr().err
