"""Every model family through the same commands: build, tables, a served teacher; and the paper preset's smoke run.

A family is chosen by configuration alone (`{"teacher": {"family": ...}}`); nothing else changes. The
paper preset (ResNet-18 at width 64, the paper's epochs) is meant for a GPU; until one is available it
runs here for one epoch of each stage on a small image folder, so its wiring is tested at paper scale.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cloud_server.main import create_app
from cloud_server.settings import CloudSettings
from edgecloud.cli import main
from shared import bundle as B
from shared.oip import decode_response, encode_request

pytestmark = pytest.mark.slow

_SMALL = {
    "search": {"episodes": 1, "rollouts": 2, "episode_steps": 2, "episode_subset": 256, "size_budget": 0.5},
    "distill": {"epochs": 1},
    "offload": {"budget": 0.25, "folds": 2, "fold_epochs": 1, "bootstrap_draws": 0},
}
_FAMILIES = {
    "alexnet": {"family": "alexnet", "arch": {"width": 0.125}, "epochs": 1, "batch_size": 64},
    "mobilenet": {"family": "mobilenet", "arch": {"width": 0.25, "depth": 0.34}, "epochs": 1, "batch_size": 64},
}


@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_a_family_builds_tabulates_and_serves_through_the_same_commands(
    family: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"teacher": _FAMILIES[family], **_SMALL}))
    out = tmp_path / "bundle"
    assert main(["build", "--out", str(out), "--config", str(config), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Table II" in printed and "Stage times" in printed
    manifest = B.load_manifest(out)
    teacher, student = manifest.models[manifest.teacher], manifest.models[manifest.student]
    assert teacher.arch["family"] == student.arch["family"] == family
    assert 0 < manifest.metrics.student_bytes <= 0.5 * manifest.metrics.teacher_bytes
    # The cloud serves the family's teacher from its ONNX graph like any other.
    x = np.zeros((2, *manifest.input.shape), dtype=np.uint8)
    with TestClient(create_app(CloudSettings(bundle=out, threads=1))) as client:
        body, headers = encode_request({"input": x})
        reply = client.post(f"/v2/models/{manifest.teacher}/infer", content=body, headers=headers)
    assert reply.status_code == 200, reply.text
    _, outputs = decode_response(reply.content, reply.headers)
    assert outputs["logits"].shape == (2, 10)


def _image_folder(root: Path, per_class: int) -> Path:
    """A CIFAR-shaped folder of seeded noise images, 10 classes, each class its own mean colour."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", max(2, per_class // 4))):
        for k in range(10):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True)
            base = rng.integers(0, 256, size=3)
            for i in range(n):
                pixels = np.clip(base + rng.normal(0, 40, size=(32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def test_paper_preset_runs_one_epoch_of_every_stage_on_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    """The paper preset's width-64 ResNet-18, its search and distillation settings, cut to one epoch."""
    data = _image_folder(tmp_path / "images", per_class=12)
    config = tmp_path / "paper.json"
    config.write_text(json.dumps({
        "teacher": {"epochs": 1},
        "search": {"episodes": 1, "rollouts": 1, "episode_steps": 1, "episode_subset": 64},
        "distill": {"epochs": 1},
        "offload": {"folds": 2, "fold_epochs": 1, "bootstrap_draws": 0},
    }))
    out = tmp_path / "bundle"
    assert main(["build", "--dataset", "imagefolder", "--data-dir", str(data), "--out", str(out), "--preset",
                 "paper", "--config", str(config), "--device", "cpu", "--no-progress"]) == 0
    manifest = B.load_manifest(out)
    build = json.loads((out / B.REPORTS / "build.json").read_text())
    assert build["preset"] == "paper" and build["teacher"]["arch"] == {"depth": 18, "width": 64}
    assert build["teacher"]["augment"] == "crop-flip" and build["search"]["lr"] == 1e-4
    assert manifest.models[manifest.teacher].metrics["bytes"] == 4 * 11_173_962  # the width-64 ResNet-18
    assert manifest.dataset == "imagefolder" and manifest.input.shape == [3, 32, 32]
    assert "Table I" in capsys.readouterr().out
