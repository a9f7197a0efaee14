"""A small bundle with a real (briefly trained) ResNet teacher on digits, for the split tests.

The tiny bundle (tests/helpers/tiny_bundle.py) supplies the student, offloader and manifest; its
teacher checkpoint is replaced by a width-4 ResNet-18 trained for a few epochs on digits with the
bundle's own normalisation, so `edgecloud split build` has a torch teacher to grow branches on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from compression.data import make_loader
from networks.checkpoint import save_checkpoint
from networks.resnet import build_model, resnet_arch
from shared.bundle import load_manifest, write_manifest
from shared.datasets import load_dataset
from tests.helpers.tiny_bundle import make_tiny_bundle


def make_teacher_bundle(out_dir: Path, *, width: int = 4, epochs: int = 3, seed: int = 0) -> Path:
    out_dir = make_tiny_bundle(Path(out_dir), seed=seed)
    manifest = load_manifest(out_dir)
    torch.manual_seed(seed)
    model = build_model(resnet_arch(18, in_channels=1, num_classes=10, width=width, input_size=(8, 8)))
    data = load_dataset("digits", seed=seed)
    loader = make_loader(data.train, manifest.input.mean, manifest.input.std, batch_size=64, shuffle=True, seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    save_checkpoint(model, out_dir / "teacher.pt")
    teacher = manifest.models["teacher"].model_copy(update={"arch": model.arch})
    write_manifest(out_dir, manifest.model_copy(update={"models": {**manifest.models, "teacher": teacher}}))
    np.random.seed(seed)
    return out_dir
