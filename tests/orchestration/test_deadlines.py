"""Deadlines as the live agent keeps them: an offload that runs out of time is answered by the device."""

from __future__ import annotations

import numpy as np
import pytest

from orchestration.experiment import to_answered
from orchestration.learners import FAILURE_PENALTY, reward
from orchestration.policies import make_policy
from orchestration.profiles import Profiles
from orchestration.report import summarize
from orchestration.simulator import NetworkConfig, Scenario, Simulator
from shared.names import FallbackReason, Tier
from shared.traces import MIN_MBIT_S, Trace


def stall_from_5_to_15_s() -> Trace:
    """A 20 s trace (cycled): 10 Mbit/s, but nothing from 5 to 15 s."""
    t = np.arange(0.0, 20.0, 0.1)
    return Trace(name="stall", times_s=t, mbit_s=np.where((t >= 5.0) & (t < 15.0), MIN_MBIT_S, 10.0))


def run(profiles: Profiles, policy: str, *, deadline_ms: float | None, accuracy_req: float = 0.95):
    sc = Scenario(users=1, duration_s=20.0, rate_per_user=2.0, service_cv=0.0, accuracy_req=accuracy_req,
                  deadline_ms=deadline_ms)
    sim = Simulator(profiles, sc, [stall_from_5_to_15_s()], network=NetworkConfig(access_rtt_ms=20.0))
    sim_links, requests = sim.requests()
    # trace time = offset + t: the requests sent well into the stall, and those sent well clear of it
    offset = sim_links[0].offset_s
    stalled = {t for t, _, _ in requests if 5.0 <= (offset + t) % 20.0 < 14.4}
    clear = {t for t, _, _ in requests if not 4.0 <= (offset + t) % 20.0 < 15.5}
    return sim, sim.run(lambda u: make_policy(policy, profiles)), stalled, clear, len(requests)


def test_an_offload_sent_into_a_stall_is_answered_by_the_device_at_the_deadline(profiles: Profiles) -> None:
    sim, records, stalled, clear, n = run(profiles, "static:edge:teacher", deadline_ms=500.0)
    assert len(records) == n  # no request lost
    assert stalled  # the run does send requests into the stall
    # the fallback is the device's fastest variant meeting 0.95: mid (12 ms), so the device gives up
    # at 500 - 12 ms and answers at the deadline
    assert sim.fallback_variant(0.95) == "mid"
    assert sim.offload_budget_ms(0.95) == pytest.approx(488.0)
    into_stall = [r for r in records if r.arrival_s in stalled]
    for r in into_stall:
        assert r.fallback == FallbackReason.TIMEOUT
        assert r.variant == "mid" and r.tier is Tier.EDGE  # sent to the edge, answered by the device
        assert r.response_ms == pytest.approx(500.0, abs=1e-6)
        assert r.reward == pytest.approx(reward(500.0, accuracy=profiles.variants["mid"].accuracy,
                                                accuracy_req=0.95) - FAILURE_PENALTY)
    flowing = [r for r in records if r.arrival_s in clear]
    assert flowing and all(not r.fallback and r.variant == "teacher" and r.response_ms < 100.0 for r in flowing)
    row = summarize(to_answered(records))
    assert row["fallback_share"] == pytest.approx(sum(bool(r.fallback) for r in records) / len(records))
    assert row["fallback_share"] > 0.2 and row["fallbacks"] == sum(bool(r.fallback) for r in records)


def test_without_a_deadline_a_request_sent_into_a_stall_waits_it_out(profiles: Profiles) -> None:
    _, records, stalled, _, _ = run(profiles, "static:edge:teacher", deadline_ms=None)
    assert not any(r.fallback for r in records)
    # charged the stall's seconds (the trace reader's 1 kbit/s floor trickles 264 B through in about 2 s)
    assert max(r.response_ms for r in records if r.arrival_s in stalled) > 2000.0


def test_a_fallback_below_the_requirement_counts_as_missed(profiles: Profiles) -> None:
    # 0.999 is above every variant: the most accurate one (the teacher) answers, and misses it
    sim, records, _, _, _ = run(profiles, "static:edge:teacher", deadline_ms=500.0, accuracy_req=0.999)
    assert sim.fallback_variant(0.999) == "teacher"
    assert all(r.missed for r in records)
    assert any(r.fallback for r in records)
    assert summarize(to_answered(records))["requirement_missed"] == 1.0


def test_the_server_drops_work_whose_device_gave_up(profiles: Profiles, flat_trace: Trace) -> None:
    # An edge server too slow for its load (teacher: 200 ms a pass, 600 ms a batch of 8: about 13
    # requests/s for 20 offered). Without dropping, every queued request would be computed for nobody
    # and the queue would grow all run long (140 requests, 10 s of work, by 20 s); with the budget in
    # X-Deadline-Ms it drops expired work, so the server still answers some in time late in the run.
    slow_edge = profiles.with_tier_share(Tier.EDGE, 0.05)
    sc = Scenario(users=4, duration_s=30.0, rate_per_user=5.0, service_cv=0.0, deadline_ms=1500.0)
    records = Simulator(slow_edge, sc, [flat_trace]).run(lambda u: make_policy("static:edge:teacher", slow_edge))
    answered_late = [r for r in records if r.arrival_s > 20.0 and not r.fallback]
    assert answered_late  # the server still answers some in time
    # The deadline holds, up to the device's own queue: the reserve is one fallback pass (4 ms), and
    # two requests given up on within a few ms of each other queue on the device's one core.
    assert max(r.response_ms for r in records) <= 1500.0 + 4 * 4.0
    assert 0.5 < np.mean([bool(r.fallback) for r in records]) < 1.0
