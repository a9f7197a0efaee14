"""What a device observes: its requirement, its own uplink (rate and stalls), the edge server's load and its age."""

from __future__ import annotations

import numpy as np
import pytest

from orchestration.learners import LinUCB, QConfig, QLearning, reward
from orchestration.links import NetworkConfig, UserLink
from orchestration.policies import state_space
from orchestration.profiles import Profiles
from orchestration.scenario import Phase, Scenario
from orchestration.state import FEATURES, Observation, ServerLoad, StateSpace
from shared.names import Tier
from shared.traces import MIN_MBIT_S, Trace

ACTIONS = [(Tier.END, "small"), (Tier.EDGE, "small")]


def test_the_radio_reports_the_recent_rate_and_how_long_the_link_has_stalled() -> None:
    t = np.arange(0.0, 10.0, 0.1)
    trace = Trace(name="t", times_s=t, mbit_s=np.where((t >= 4.0) & (t < 6.0), MIN_MBIT_S, 2.0))
    sc = Scenario(users=1, phases=[Phase(0.0, 1), Phase(30.0, 1, bandwidth_scale=0.5)])
    link = UserLink(trace, 0.0, sc, NetworkConfig())
    assert link.recent_mbit_s(3.0) == pytest.approx(2.0)
    assert link.recent_mbit_s(4.5) == pytest.approx(1.0, abs=1e-3)  # half the last second stalled
    assert link.stalled_ms(3.9) == 0.0
    assert link.stalled_ms(5.25) == pytest.approx(1250.0)  # since 4.0 s
    assert link.stalled_ms(16.0) == pytest.approx(0.0)  # the next pass flows again at 6 s (trace time)
    assert link.stalled_ms(15.5) == pytest.approx(1500.0)  # ... and stalls from 14 s, the second pass
    assert link.recent_mbit_s(33.0) == pytest.approx(1.0)  # the phase halves the rate


def test_a_stall_that_wraps_around_the_traces_end_is_counted_whole() -> None:
    t = np.arange(0.0, 5.0, 0.1)
    trace = Trace(name="t", times_s=t, mbit_s=np.where((t < 1.0) | (t >= 4.0), MIN_MBIT_S, 2.0))
    link = UserLink(trace, 0.0, Scenario(users=1), NetworkConfig())
    assert link.stalled_ms(5.5) == pytest.approx(1500.0)  # stalled since 4.0 s, through the wrap


def test_the_state_tells_uplink_rate_stall_and_a_stale_load_apart() -> None:
    space = StateSpace(request_bytes=1100)
    base = Observation(uplink_mbit_s=5.0)
    slow = Observation(uplink_mbit_s=0.1)
    stalled = Observation(uplink_mbit_s=0.1, stalled_ms=300.0)
    unknown = Observation()
    states = {space.encode(o) for o in (base, slow, stalled, unknown)}
    assert len(states) == 4
    # the edge's load report goes stale: a learner no longer trusts the old queue
    fresh = Observation(now_s=10.0, load={Tier.EDGE: ServerLoad(queue_depth=20, service_ms=5.0),
                                          Tier.CLOUD: ServerLoad()})
    fresh.load_at_s[Tier.EDGE] = 9.5
    old = Observation(now_s=20.0, load=fresh.load, load_at_s=dict(fresh.load_at_s))
    assert space.encode(fresh)[2] == 3 and space.encode(old)[2] == len(space.wait_edges_ms) + 1
    # the bandit's context: finite and bounded even in a stall (the upload time is capped at 1 s)
    x = space.features(Observation(uplink_mbit_s=MIN_MBIT_S, stalled_ms=2000.0))
    assert x.shape == (FEATURES,) and np.all(np.isfinite(x)) and x.max() <= 10.0
    assert space.features(old)[3] == 0.0 and space.features(old)[-1] == 1.0


def test_the_requirement_has_its_own_rows(profiles: Profiles) -> None:
    space = state_space(profiles)
    assert space.request_bytes == profiles.request_bytes
    acc = sorted(v.accuracy for v in profiles.variants.values())
    # all variants; all but the smallest; only the teacher: each set of feasible variants its own rows
    reqs = (0.0, (acc[0] + acc[1]) / 2, (acc[1] + acc[2]) / 2)
    assert len({space.encode(Observation(accuracy_req=req))[4] for req in reqs}) == 3
    assert space.encode(Observation(accuracy_req=acc[1]))[4] == space.encode(Observation(accuracy_req=reqs[1]))[4]


def test_qlearning_learns_to_leave_a_stalled_link() -> None:
    # a flowing link: the edge server is faster; stalled: the device is (the edge would wait it out)
    learner = QLearning(StateSpace(), QConfig(seed=6))
    rng = np.random.default_rng(0)
    flowing, stalled = Observation(uplink_mbit_s=2.0), Observation(uplink_mbit_s=MIN_MBIT_S, stalled_ms=500.0)
    for _ in range(2000):
        obs = stalled if rng.random() < 0.3 else flowing
        d = learner.choose(obs, ACTIONS)
        ms = {ACTIONS[0]: 30.0, ACTIONS[1]: 800.0 if obs is stalled else 10.0}[d.action]
        learner.update(d, reward(ms, accuracy=1.0, accuracy_req=0.0), obs)
    q_flow, q_stall = learner.q[StateSpace().encode(flowing)], learner.q[StateSpace().encode(stalled)]
    assert max(q_flow, key=q_flow.get) == ACTIONS[1]
    assert max(q_stall, key=q_stall.get) == ACTIONS[0]


def test_linucb_learns_to_leave_a_stalled_link() -> None:
    learner = LinUCB(StateSpace())
    rng = np.random.default_rng(1)
    right = 0
    for step in range(1500):
        stalled = rng.random() < 0.3
        obs = Observation(uplink_mbit_s=MIN_MBIT_S if stalled else 2.0, stalled_ms=500.0 if stalled else 0.0)
        d = learner.choose(obs, ACTIONS)
        costs = {ACTIONS[0]: 30.0, ACTIONS[1]: 800.0 if stalled else 10.0}
        learner.update(d, reward(costs[d.action], accuracy=1.0, accuracy_req=0.0), obs)
        right += step >= 1000 and d.action == min(costs, key=costs.get)
    assert right / 500 > 0.85
