"""Hedged offloads (`...+hedge`): each offload races the device's own fallback pass, first answer wins."""

from __future__ import annotations

import numpy as np
import pytest

from orchestration.experiment import SimSpec, expand, simulate, to_answered
from orchestration.learners import reward
from orchestration.policies import PolicyError, fallback_variant, make_policy, predicted_ms
from orchestration.report import best_static, summarize
from orchestration.simulator import NetworkConfig, Scenario, Simulator
from orchestration.state import Observation, ServerLoad
from shared.names import FallbackReason, Tier
from shared.traces import MIN_MBIT_S, Trace


def stalling_trace() -> Trace:
    """100 ms samples: 2 s at 5 Mbit/s, then 1.5 s of nothing."""
    t = np.arange(0.0, 40.0, 0.1)
    return Trace(name="stalls", times_s=t, mbit_s=np.maximum(np.where((t % 3.5) < 2.0, 5.0, 0.0), MIN_MBIT_S))


def simulator(profiles, trace, **scenario) -> Simulator:
    sc = Scenario(**{"users": 4, "duration_s": 20.0, "rate_per_user": 5.0, "service_cv": 0.0, "accuracy_req": 0.98,
                     **scenario})
    return Simulator(profiles, sc, [trace], network=NetworkConfig(access_rtt_ms=20.0, wan_rtt_ms=60.0))


def responses(sim: Simulator, name: str, profiles):
    return sim.run(lambda u: make_policy(name, profiles, seed=u))


@pytest.mark.parametrize("deadline_ms", [None, 400.0])
def test_a_hedged_offload_is_never_later_than_the_device_alone(profiles, deadline_ms) -> None:
    # Same requests, same device queue (every hedge queues the same fallback pass all-end runs), no
    # compute noise: request by request, the race answers no later than the device on its own, and
    # sooner whenever the link is flowing and the server is quick.
    sim = simulator(profiles, stalling_trace(), deadline_ms=deadline_ms)
    alone = responses(sim, "all-end", profiles)
    hedged = responses(sim, "all-edge+hedge", profiles)
    assert [(r.user, r.arrival_s) for r in alone] == [(r.user, r.arrival_s) for r in hedged]
    a = np.array([r.response_ms for r in alone])
    h = np.array([r.response_ms for r in hedged])
    assert np.all(h <= a + 1e-9)
    # the server wins while the link flows (the teacher: 40 ms here, ~31 there), the device in the stalls
    assert np.mean(h < a - 1.0) > 0.3
    device_won = [r for r in hedged if r.fallback == FallbackReason.LOCAL_FIRST]
    assert len(device_won) > 10
    for r in device_won:  # answered by the fallback variant, and not charged as a failure
        assert r.variant == fallback_variant(profiles, 0.98) == "teacher" and r.tier is Tier.EDGE
        assert r.reward == pytest.approx(reward(r.response_ms, accuracy=profiles.variants[r.variant].accuracy,
                                                accuracy_req=0.98))
    # no timeout fallbacks: the device's pass is the fallback, there is nothing to abandon
    assert not [r for r in hedged if r.fallback and r.fallback != FallbackReason.LOCAL_FIRST]


def test_the_report_does_not_count_a_won_race_as_a_fallback(profiles) -> None:
    sim = simulator(profiles, stalling_trace())
    row = summarize(to_answered(responses(sim, "all-edge+hedge", profiles)))
    assert row["fallback_share"] == 0.0
    assert 0.0 < row["local_first_share"] < 1.0
    assert row["tier_share"]["edge"] == 1.0


def test_a_late_server_answer_still_informs_the_device(profiles) -> None:
    # In a stall the device wins; the server's answer that comes later is the only news of that tier,
    # and greedy+hedge needs it: without it, its view of the edge would freeze at the last win.
    sim = simulator(profiles, stalling_trace(), users=1)
    seen: list[float] = []

    class Spy:
        hedge = True
        name = "spy"

        def choose(self, obs, actions):
            seen.append(obs.net_ms[Tier.EDGE])
            return make_policy("all-edge", profiles).choose(obs, actions)

        def update(self, decision, r, next_obs=None):
            return None

    records = sim.run(lambda u: Spy())
    assert any(r.fallback == FallbackReason.LOCAL_FIRST for r in records)
    # a stall's late answers raise the estimate well above a flowing link's ~21 ms
    assert max(seen) > 100.0


def test_greedy_prices_a_hedged_offload_as_the_sooner_of_the_two(profiles) -> None:
    obs = Observation(net_ms={Tier.EDGE: 500.0, Tier.CLOUD: 80.0}, accuracy_req=0.95, local_busy_ms=5.0,
                      load={Tier.EDGE: ServerLoad(), Tier.CLOUD: ServerLoad()})
    # the device's fallback for 0.95 is `mid` (12 ms): hedged, a 500 ms link costs at most 5 + 12 ms
    assert fallback_variant(profiles, 0.95) == "mid"
    assert predicted_ms(profiles, obs, (Tier.EDGE, "mid")) == 503.0
    assert predicted_ms(profiles, obs, (Tier.EDGE, "mid"), hedge=True) == 17.0
    assert predicted_ms(profiles, obs, (Tier.END, "mid"), hedge=True) == 17.0


def test_hedged_names(profiles) -> None:
    for name in ("all-edge+hedge", "qlearning+hedge", "linucb+hedge", "greedy+hedge", "static:edge:mid+hedge"):
        policy = make_policy(name, profiles)
        assert policy.hedge and policy.name == name
    assert not make_policy("all-edge", profiles).hedge
    with pytest.raises(PolicyError, match="myopic oracle cannot hedge"):
        make_policy("myopic-oracle+hedge", profiles)
    with pytest.raises(PolicyError, match="unknown policy"):
        make_policy("fastest+hedge", profiles)
    with pytest.raises(PolicyError, match="once is enough"):
        make_policy("greedy+hedge+hedge", profiles)


def test_the_issues_static_reference_leaves_hedged_policies_apart() -> None:
    rows = {"static-map": {"mean_response_ms": 30.0, "requirement_missed": 0.0},
            "all-edge+hedge": {"mean_response_ms": 20.0, "requirement_missed": 0.0},
            "static:edge:a+hedge": {"mean_response_ms": 25.0, "requirement_missed": 0.0},
            "qlearning+hedge": {"mean_response_ms": 10.0, "requirement_missed": 0.0}}
    assert best_static(rows) == "static-map"
    assert best_static(rows, hedged=True) == "all-edge+hedge"


def test_a_hedged_static_mapping_runs_after_the_pairs_it_is_chosen_on(profiles, tmp_path, flat_trace) -> None:
    names = expand(["static-map+hedge", "greedy"], profiles, (0.9, 0.95))
    assert names[0] == "greedy" and names[-1] == "static-map+hedge"
    assert all(n.startswith("static:") for n in names[1:-1])
    spec = SimSpec(bundle=tmp_path, users=2, traces=tmp_path, accuracy_req=0.98, scenario="steady", duration_s=10.0,
                   seeds=1, policies=["static-map", "static-map+hedge", "all-edge+hedge"])
    report = simulate(spec, profiles=profiles, traces=[flat_trace])
    rows = report["policies"]
    assert rows["static-map+hedge"]["mapping"] == rows["static-map"]["mapping"]
    assert report["comparison"]["best_static_hedged"] in ("static-map+hedge", "all-edge+hedge")
    assert not report["comparison"]["best_static"].endswith("+hedge")
