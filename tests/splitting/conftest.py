"""Fixtures of the split tests: one small bundle with real segments, profiles and planners, built once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from splitting.profile import Profile, SegmentTiming, store
from splitting.segments import head_name, tail_name


@pytest.fixture(scope="session")
def split_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits bundle with a width-4 ResNet teacher and its split (1 epoch of heads and bottlenecks)."""
    import torch

    from shared.datasets import load_dataset
    from splitting.build import build_split
    from splitting.train import SplitTrainConfig
    from tests.helpers.split_bundle import make_teacher_bundle

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("split")
    src = make_teacher_bundle(root / "src", epochs=2)
    cfg = SplitTrainConfig(epochs=1, max_train_samples=600, threads=1)
    build_split(src, root / "split", load_dataset("digits"), cfg=cfg, progress=False)
    return root / "split"


def synthetic_profiles(bundle: Path, *, device_scale: float = 10.0) -> None:
    """Store made-up (but plausible) device and server profiles: deeper segments cost more."""
    timing = lambda ms: SegmentTiming(median_ms=ms, p90_ms=ms * 1.2, mean_ms=ms, runs=1)  # noqa: E731
    device = {head_name(p): timing(device_scale * p) for p in range(1, 5)}
    device |= {tail_name(p): timing(device_scale * (4 - p)) for p in range(1, 4)}
    device |= {f"quantize_{p}_{b}": timing(0.05) for p in range(1, 4) for b in (8, 4, 2)}
    server = {tail_name(p): timing(0.5 * (4 - p)) for p in range(1, 4)} | {"teacher": timing(2.0)}
    store(bundle, Profile(role="device", where="synthetic (test)", segments=device))
    store(bundle, Profile(role="server", where="synthetic (test)", segments=server))


@pytest.fixture(scope="session")
def profiled_bundle(split_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The split bundle with synthetic profiles (so latencies do not depend on the test machine)."""
    import shutil

    out = tmp_path_factory.mktemp("profiled") / "bundle"
    shutil.copytree(split_bundle, out)
    synthetic_profiles(out)
    return out


def rng() -> np.random.Generator:
    return np.random.default_rng(0)
