"""`edgecloud split build` on natural images of any family: an AlexNet teacher on an image folder.

The build trains exits and bottlenecks with crop-flip augmentation, records every epoch's validation
accuracy of each exit and bottleneck path (what convergence is read from), and stores the test images'
encoded sizes as artifact `split_input_bytes` (the JPEG server-only baseline uploads them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgecloud.cli import main
from networks.checkpoint import save_checkpoint
from networks.family import build_model, default_arch
from shared import bundle as B
from splitting.inputs import read_input_bytes
from splitting.setup import ACCURACY_JSON

pytestmark = pytest.mark.slow


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 6)):
        for k in range(3):
            (root / split / f"c{k}").mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.integers(0, 256, size=3) + rng.normal(0, 30, (16, 16, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / f"c{k}" / f"{i:02d}.jpg", quality=90)
    return root


def test_split_build_of_an_alexnet_on_jpegs_records_convergence_and_file_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _folder(tmp_path / "images")
    torch.manual_seed(0)
    teacher = build_model(default_arch("alexnet", in_channels=3, num_classes=3, input_size=(16, 16), width=0.0625))
    save_checkpoint(teacher.eval(), tmp_path / "teacher.pt")
    out = tmp_path / "split"
    assert main(["split", "build", "--teacher", str(tmp_path / "teacher.pt"), "--dataset", "imagefolder",
                 "--data-dir", str(data), "--out", str(out), "--epochs", "2", "--max-train-samples", "0",
                 "--augment", "crop-flip", "--bottleneck-channels", "2", "--no-progress",
                 "--image-size", "16"]) == 0
    assert "| action |" in capsys.readouterr().out
    manifest = B.load_manifest(out)
    history = json.loads((out / ACCURACY_JSON).read_text())["train"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    # AlexNet has 5 stages: exits after 1-4 plus the teacher's own, bottlenecks at 1-4.
    assert set(history[-1]["val_accuracy"]) == {*(f"exit_{s}" for s in range(1, 6)),
                                                *(f"split_{p}" for p in range(1, 5))}
    sizes = read_input_bytes(out, manifest, raw_shape=manifest.input.shape)
    assert not sizes.is_default and len(sizes.per_sample) == 18 and len(sizes.samples) == 18
    assert sizes.samples[0][:2] == b"\xff\xd8"  # the JPEG files themselves, for timing the decode
    assert not (out / "split" / "train_state.pt").exists()
