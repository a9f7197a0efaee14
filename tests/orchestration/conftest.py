from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestration.profiles import DEFAULT_TIERS, Profiles, VariantProfile
from shared.names import Tier
from shared.traces import Trace


def variant(name: str, accuracy: float, end: float, server: float, n: int = 400, seed: int = 0) -> VariantProfile:
    """A synthetic variant: `end` ms on the device, `server` ms on the edge server and the cloud."""
    rng = np.random.default_rng(seed)
    correct = rng.random(n) < accuracy
    lat = {Tier.END: end, Tier.EDGE: server, Tier.CLOUD: server}
    return VariantProfile(name=name, accuracy=float(correct.mean()), bytes=int(end * 1000), latency_ms=lat,
                          batch_ms={t: 3 * v for t, v in lat.items()}, correct=correct)


@pytest.fixture()
def profiles() -> Profiles:
    """Small: fast on the device, inaccurate; teacher: slow on the device, accurate."""
    return Profiles(variants={"small": variant("small", 0.90, end=4.0, server=1.0, seed=1),
                              "mid": variant("mid", 0.96, end=12.0, server=3.0, seed=2),
                              "teacher": variant("teacher", 0.985, end=40.0, server=10.0, seed=3)},
                    tiers=dict(DEFAULT_TIERS), teacher="teacher", request_bytes=264)


@pytest.fixture()
def flat_trace() -> Trace:
    """A constant 10 Mbit/s link."""
    return Trace(name="flat", times_s=np.arange(0.0, 100.0), mbit_s=np.full(100, 10.0))


@pytest.fixture(scope="session")
def variant_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> Path:
    from tests.helpers.tiny_variants import make_variant_bundle

    return make_variant_bundle(tmp_path_factory.mktemp("variants") / "bundle", source=tiny_bundle)
