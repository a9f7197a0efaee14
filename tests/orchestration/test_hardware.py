"""The tiers' machines: a Pi 4 calibrated against its published time, one edge core, a faster wider cloud."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from orchestration.hardware import TierHardware, apply, reference_variant
from orchestration.policies import make_policy
from orchestration.profiles import Profiles
from orchestration.simulator import Scenario, Simulator
from shared.names import Tier
from shared.traces import Trace
from testbed.slowdown import PI4_CIFAR10


def test_the_device_is_a_pi4_calibrated_on_the_reference_variant(profiles: Profiles) -> None:
    out, record = apply(profiles, TierHardware())
    # every fixture variant is far below 675 KB: the nearest to the published student is the largest
    assert record["device"]["reference"] == "teacher"
    # the reference runs on the device exactly as long as the published Pi 4 time
    assert out.variants["teacher"].compute_ms(Tier.END) == pytest.approx(PI4_CIFAR10.ms_per_image)
    k = record["device"]["slowdown"]
    assert k == pytest.approx(PI4_CIFAR10.ms_per_image / profiles.host_ms("teacher"))
    assert record["device"]["calibrated"] and record["device"]["cpu_share"] == pytest.approx(1 / k)
    for name in profiles.variants:  # one k for every variant
        assert out.variants[name].compute_ms(Tier.END) == pytest.approx(k * profiles.host_ms(name))
        assert out.variants[name].compute_ms(Tier.EDGE) == pytest.approx(profiles.host_ms(name))


def test_the_reference_and_k_are_settings(profiles: Profiles) -> None:
    out, record = apply(profiles, TierHardware(device_reference="small"))
    assert out.variants["small"].compute_ms(Tier.END) == pytest.approx(PI4_CIFAR10.ms_per_image)
    out, record = apply(profiles, TierHardware(device_slowdown=10.0))
    assert not record["device"]["calibrated"] and record["device"]["slowdown"] == 10.0
    assert out.variants["mid"].compute_ms(Tier.END) == pytest.approx(10 * profiles.host_ms("mid"))
    with pytest.raises(ValueError, match="device_reference 'huge'"):
        apply(profiles, TierHardware(device_reference="huge"))
    with pytest.raises(ValueError, match="cloud_speed"):
        TierHardware(cloud_speed=0.0)


def test_an_int8_copy_is_not_the_default_reference(profiles: Profiles) -> None:
    # an int8 copy sized right at 675 KB: the Pi's relative speed on int8 is another matter
    int8 = dataclasses.replace(profiles.variants["mid"], name="mid-int8", bits=8, bytes=675_000)
    family = dataclasses.replace(profiles, variants={**profiles.variants, "mid-int8": int8})
    assert reference_variant(family, TierHardware()) == "teacher"


def test_the_cloud_is_faster_and_wider_than_the_edge(profiles: Profiles) -> None:
    out, record = apply(profiles, TierHardware())
    assert record["cloud"] == {"cores": 4, "speed": 2.0} and record["edge"]["cores"] == 1
    for v in out.variants.values():
        assert v.compute_ms(Tier.CLOUD) == pytest.approx(v.compute_ms(Tier.EDGE) / 2)
    assert out.tiers[Tier.CLOUD].cores == 4 and out.tiers[Tier.EDGE].cores == 1


def test_more_cloud_cores_shorten_its_queue(profiles: Profiles, flat_trace: Trace) -> None:
    # 16 users x 20 req/s of the teacher: 1.2 s of work a second even in full batches of 8 (30 ms
    # each), so one core queues without end; four keep up
    sc = Scenario(users=16, duration_s=10.0, rate_per_user=20.0, service_cv=0.0, deadline_ms=None)
    means = {}
    for cores in (1, 4):
        family = profiles.with_tier_share(Tier.CLOUD, 1.0, cores=cores)
        records = Simulator(family, sc, [flat_trace]).run(lambda u, f=family: make_policy("static:cloud:teacher", f))
        means[cores] = np.mean([r.response_ms for r in records])
    assert means[4] < 0.5 * means[1]
