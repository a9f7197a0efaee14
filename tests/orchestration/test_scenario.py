"""Requests carry their own requirement, which switches per user; users join and leave; the static mapping."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from orchestration.experiment import SimSpec, best_mapping, simulate
from orchestration.hardware import TierHardware
from orchestration.learners import Action, Decision
from orchestration.policies import Policy, StaticMapping, make_policy
from orchestration.profiles import Profiles
from orchestration.report import Answered, best_static
from orchestration.scenario import RequirementMix, Scenario, churn, requirement_schedules, resolve_levels
from orchestration.simulator import Simulator
from orchestration.state import Observation
from shared.names import Tier
from shared.traces import Trace

MIX = RequirementMix(levels=(0.0, 0.95, 0.98), weights=(0.3, 0.3, 0.4), switch_s=5.0)


def test_each_user_switches_between_the_levels_over_time() -> None:
    sc = Scenario(users=20, duration_s=60.0, requirements=MIX, seed=3)
    schedules = requirement_schedules(sc)
    assert schedules[0].times_s[0] == 0.0
    assert np.mean([len(s.times_s) for s in schedules]) == pytest.approx(60.0 / 5.0, rel=0.3)  # mean 5 s a level
    drawn = np.concatenate([s.levels for s in schedules])
    assert set(drawn) <= set(MIX.levels)
    for level, weight in zip(MIX.levels, MIX.probabilities, strict=True):
        assert np.mean(drawn == level) == pytest.approx(weight, abs=0.12)
    assert all(len(set(s.levels)) > 1 for s in schedules[:5])  # one user's application changes over time
    again = requirement_schedules(sc)  # its own stream: the same draws every time
    assert all(np.array_equal(a.levels, b.levels) for a, b in zip(schedules, again, strict=True))
    one = requirement_schedules(Scenario(users=2, accuracy_req=0.9))
    assert [s.at(30.0) for s in one] == [0.9, 0.9]


def test_requirement_mixes_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="levels"):
        RequirementMix(levels=(0.9, 1.2))
    with pytest.raises(ValueError, match="weight"):
        RequirementMix(levels=(0.8, 0.9), weights=(1.0,))
    with pytest.raises(ValueError, match="deadline_ms"):
        Scenario(deadline_ms=0.0)


def test_levels_resolve_from_fractions_percentages_and_offsets_from_the_teacher() -> None:
    assert resolve_levels([0.8, 88.0, -0.009], teacher_accuracy=0.93) == (0.8, 0.88, 0.921)
    with pytest.raises(ValueError, match="outside"):
        resolve_levels([-0.99], teacher_accuracy=0.5)


class Recorder(Policy):
    """all-end, noting what each request required and what the radio said."""

    def __init__(self, profiles: Profiles) -> None:
        self.inner = make_policy("all-end", profiles)
        self.seen: list[tuple[float, float | None, float]] = []

    def choose(self, obs: Observation, actions: Sequence[Action]) -> Decision:
        self.seen.append((obs.accuracy_req, obs.uplink_mbit_s, obs.stalled_ms))
        return self.inner.choose(obs, actions)


def test_each_request_carries_its_users_current_requirement(profiles: Profiles, flat_trace: Trace) -> None:
    sc = Scenario(users=3, duration_s=30.0, rate_per_user=4.0, service_cv=0.0, requirements=MIX)
    recorders = [Recorder(profiles) for _ in range(3)]
    records = Simulator(profiles, sc, [flat_trace]).run(lambda u: recorders[u])
    schedules = requirement_schedules(sc)
    for r in records:
        assert r.accuracy_req == schedules[r.user].at(r.arrival_s)
        # all-end answers each level with the device's fastest variant meeting it: never a miss
        assert profiles.variants[r.variant].accuracy >= r.accuracy_req and not r.missed
    seen = [s for rec in recorders for s in rec.seen]
    assert {req for req, _, _ in seen} == set(MIX.levels)
    assert all(mbit == pytest.approx(10.0) and stalled == 0.0 for _, mbit, stalled in seen)


def test_a_static_pair_misses_the_levels_above_its_variant(profiles: Profiles, flat_trace: Trace) -> None:
    sc = Scenario(users=3, duration_s=30.0, rate_per_user=4.0, requirements=MIX)
    records = Simulator(profiles, sc, [flat_trace]).run(lambda u: make_policy("static:edge:mid", profiles))
    accuracy = profiles.variants["mid"].accuracy
    assert [r.missed for r in records] == [r.accuracy_req > accuracy for r in records]
    assert 0.2 < np.mean([r.missed for r in records]) < 0.7


def test_the_static_mapping_takes_per_level_the_fastest_pair_meeting_it(profiles: Profiles) -> None:
    # per level, made-up runs: the edge is fastest for the low level, the device for the others
    def runs_of(name: str, ms_by_level: dict[float, float]) -> list[Answered]:
        tier, variant = name.split(":")[1:]
        return [Answered(arrival_s=0.0, response_ms=ms, tier=Tier(tier), variant=variant, correct=True,
                         reward=-ms / 100, accuracy_req=level) for level, ms in ms_by_level.items()]

    runs = {"static:edge:small": runs_of("static:edge:small", {0.0: 5.0, 0.95: 1.0, 0.98: 1.0}),
            "static:end:mid": runs_of("static:end:mid", {0.0: 9.0, 0.95: 7.0, 0.98: 7.0}),
            "static:end:teacher": runs_of("static:end:teacher", {0.0: 30.0, 0.95: 20.0, 0.98: 8.0}),
            "greedy": runs_of("static:edge:small", {0.0: 0.1, 0.95: 0.1, 0.98: 0.1})}
    mapping = best_mapping(runs, profiles, MIX.levels)
    # small is fastest everywhere but meets only 0; mid meets 0.95 only; 0.98 needs the teacher;
    # greedy is not a static pair and is never a candidate
    assert mapping == {0.0: (Tier.EDGE, "small"), 0.95: (Tier.END, "mid"), 0.98: (Tier.END, "teacher")}
    policy = StaticMapping(mapping)
    assert policy.choose(Observation(accuracy_req=0.95), []).action == (Tier.END, "mid")
    assert policy.choose(Observation(accuracy_req=0.96), []).action == (Tier.END, "teacher")  # the level above
    assert policy.describe() == {"0": "edge:small", "0.95": "end:mid", "0.98": "end:teacher"}


def test_the_best_static_policy_may_not_miss_requirements(profiles: Profiles, flat_trace: Trace,
                                                          tmp_path: Path) -> None:
    spec = SimSpec(bundle=tmp_path, users=3, traces=tmp_path, requirements=MIX, duration_s=20.0, seeds=1,
                   scenario="steady", policies=["greedy", "all-edge", "static", "static-map"],
                   hardware=TierHardware(device_slowdown=4.0))
    report = simulate(spec, profiles=profiles, traces=[flat_trace])
    policies = report["policies"]
    mapped = policies["static-map"]
    assert set(mapped["mapping"]) == {"0", "0.95", "0.98"} and mapped["requirement_missed"] == 0.0
    best = report["comparison"]["best_static"]
    assert policies[best]["requirement_missed"] <= 0.01
    # a pair that misses (small, mid) may be faster, but it is not the reference
    fastest = min((k for k in policies if k.startswith("static:")), key=lambda k: policies[k]["mean_response_ms"])
    assert policies[fastest]["requirement_missed"] > 0.01 and best != fastest
    assert best == best_static(policies)
    assert report["comparison"]["best_static_pair"].endswith(":teacher")  # the only pairs meeting 0.98
    assert report["requirements"]["levels"] == list(MIX.levels) and report["deadline_ms"] == 1000.0
    assert report["hardware"]["device"]["slowdown"] == 4.0
    for row in policies.values():
        assert {"requirement_missed", "fallback_share", "levels"} <= set(row)


def test_users_join_and_leave_in_churn(profiles: Profiles, flat_trace: Trace) -> None:
    sc = churn(8, duration_s=40.0, rate_per_user=3.0)
    records = Simulator(profiles, sc, [flat_trace]).run(lambda u: make_policy("all-end", profiles))
    users = lambda lo, hi: {r.user for r in records if lo <= r.arrival_s < hi}  # noqa: E731
    assert users(0, 10) == set(range(4))
    assert users(10, 20) == set(range(8))
    assert users(20, 30) == {0, 1}  # most left
    assert users(30, 40) == set(range(8))  # and came back
    assert sc.change_times == [10.0, 20.0, 30.0]


def test_the_learners_settings_reach_every_users_learner_and_bad_ones_fail_at_start(
        profiles: Profiles, flat_trace: Trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import asdict

    import orchestration.experiment as experiment
    from orchestration.learners import QConfig
    from orchestration.spec import QLearningSettings

    # The spec's defaults are the learner's (kept in two places so that the spec stays numpy-free).
    defaults = asdict(QConfig())
    assert QLearningSettings().model_dump() == {k: defaults[k] for k in QLearningSettings.model_fields}
    made: list[QConfig] = []

    def recording(name: str, profiles: Profiles, **kw: object) -> Policy:
        policy = make_policy(name, profiles, **kw)  # type: ignore[arg-type]
        made.append(policy.learner.cfg)  # type: ignore[attr-defined]
        return policy

    monkeypatch.setattr(experiment, "make_policy", recording)
    base = dict(bundle=tmp_path, users=3, traces=tmp_path, requirements=MIX, duration_s=20.0, seeds=2,
                scenario="steady", policies=["qlearning"])
    simulate(SimSpec(**base, qlearning={"epsilon_start": 0.0, "epsilon_min": 0.0}), profiles=profiles,
             traces=[flat_trace])
    runs = made[1:]  # the first: the check that the name is known, before any run
    assert len(runs) == 2 * 3 and all(c.epsilon_start == 0.0 and c.epsilon_min == 0.0 for c in made)
    assert len({c.seed for c in runs}) == len(runs)  # each user of each seed its own learner
    with pytest.raises(ValueError, match="epsilon"):
        SimSpec(**base, qlearning={"epsilon_min": 0.5, "epsilon_start": 0.1})
