from __future__ import annotations

import numpy as np
import pytest

from orchestration.change import PageHinkley
from orchestration.learners import LinUCB, QConfig, QLearning, reward
from orchestration.state import Observation, ServerLoad, StateSpace
from shared.names import Tier

ACTIONS = [(Tier.END, "small"), (Tier.EDGE, "small"), (Tier.CLOUD, "small")]


def run_bandit(learner, costs: dict, steps: int, obs: Observation | None = None, rng=None) -> list:
    rng = rng or np.random.default_rng(0)
    obs = obs or Observation()
    chosen = []
    for _ in range(steps):
        d = learner.choose(obs, ACTIONS)
        ms = costs[d.action] * (1 + 0.05 * rng.standard_normal())
        learner.update(d, reward(ms, accuracy=1.0, accuracy_req=0.0), obs)
        chosen.append(d.action)
    return chosen


def test_reward_is_minus_latency_with_an_accuracy_penalty() -> None:
    assert reward(50.0, accuracy=0.99, accuracy_req=0.98) == pytest.approx(-0.5)
    # one point below the requirement costs the penalty (20 per point) on top of the latency
    assert reward(50.0, accuracy=0.97, accuracy_req=0.98) == pytest.approx(-0.5 - 20.0)
    with pytest.raises(ValueError, match="response_ms"):
        reward(float("nan"), accuracy=1.0, accuracy_req=0.0)


def test_qlearning_converges_to_the_fastest_action_and_exploration_decays() -> None:
    learner = QLearning(StateSpace(), QConfig(seed=1))
    chosen = run_bandit(learner, {ACTIONS[0]: 30.0, ACTIONS[1]: 10.0, ACTIONS[2]: 80.0}, 600)
    late = chosen[-200:]
    assert late.count(ACTIONS[1]) / len(late) > 0.9
    assert learner.epsilon < 0.1


def test_qlearning_restarts_exploration_and_moves_when_the_best_action_changes() -> None:
    learner = QLearning(StateSpace(), QConfig(seed=2))
    run_bandit(learner, {ACTIONS[0]: 30.0, ACTIONS[1]: 10.0, ACTIONS[2]: 80.0}, 600)
    eps_before = learner.epsilon
    # the edge server becomes slow (users joined): the device is now best
    chosen = run_bandit(learner, {ACTIONS[0]: 30.0, ACTIONS[1]: 300.0, ACTIONS[2]: 80.0}, 400)
    assert learner.changes >= 1
    assert chosen[-150:].count(ACTIONS[0]) / 150 > 0.85
    assert eps_before < QConfig().epsilon_start


def test_qlearning_keeps_separate_values_per_state() -> None:
    space = StateSpace()
    learner = QLearning(space, QConfig(seed=3, epsilon_start=0.2))
    idle, loaded = Observation(), Observation(load={Tier.EDGE: ServerLoad(queue_depth=50, service_ms=2.0),
                                                    Tier.CLOUD: ServerLoad()})
    assert space.encode(idle) != space.encode(loaded)
    rng = np.random.default_rng(0)
    for _ in range(1500):
        obs = idle if rng.random() < 0.5 else loaded
        d = learner.choose(obs, ACTIONS[:2])
        edge_ms = 10.0 if obs is idle else 200.0
        ms = {ACTIONS[0]: 30.0, ACTIONS[1]: edge_ms}[d.action]
        learner.update(d, reward(ms, accuracy=1.0, accuracy_req=0.0), obs)
    q_idle, q_loaded = learner.q[space.encode(idle)], learner.q[space.encode(loaded)]
    assert max(q_idle, key=q_idle.get) == ACTIONS[1]
    assert max(q_loaded, key=q_loaded.get) == ACTIONS[0]


def test_linucb_follows_the_context() -> None:
    learner = LinUCB(StateSpace())
    rng = np.random.default_rng(0)
    right = 0
    for step in range(1500):
        wait = float(rng.uniform(0, 100))
        obs = Observation(load={Tier.EDGE: ServerLoad(queue_depth=int(wait), service_ms=1.0), Tier.CLOUD: ServerLoad()})
        d = learner.choose(obs, ACTIONS[:2])
        costs = {ACTIONS[0]: 40.0, ACTIONS[1]: 5.0 + wait}
        learner.update(d, reward(costs[d.action], accuracy=1.0, accuracy_req=0.0), obs)
        if step >= 1000:
            right += d.action == min(costs, key=costs.get)
    assert right / 500 > 0.85


def test_page_hinkley_signals_a_step_but_not_noise() -> None:
    rng = np.random.default_rng(0)
    detector = PageHinkley()
    assert not any(detector.update(-0.3 + 0.02 * rng.standard_normal()) for _ in range(2000))
    fired = [detector.update(-1.5 + 0.02 * rng.standard_normal()) for _ in range(50)]
    assert any(fired)


def test_page_hinkley_works_in_units_of_the_streams_own_spread() -> None:
    # the same heavy-tailed stream and the same 2x slowdown, at 1.5 ms and at 150 ms: the same verdicts
    delays = []
    for scale in (0.015, 1.5):
        rng = np.random.default_rng(1)
        detector = PageHinkley()
        assert not any(detector.update(-scale * rng.lognormal(0, 0.5)) for _ in range(5000))
        delays.append(next(i for i in range(1000) if detector.update(-2 * scale * rng.lognormal(0, 0.5))))
    assert delays[0] == delays[1] < 60
    # a constant stream is not noise-free "infinite evidence" until it moves
    detector = PageHinkley()
    assert not any(detector.update(-0.3) for _ in range(500))
    assert any(detector.update(-0.31) for _ in range(50))


def test_configs_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="alpha"):
        QConfig(alpha=0.0)
    with pytest.raises(ValueError, match="epsilon"):
        QConfig(epsilon_min=0.5, epsilon_start=0.1)
    with pytest.raises(ValueError, match="threshold"):
        PageHinkley(threshold=0.0)
    with pytest.raises(ValueError, match="min_std"):
        PageHinkley(min_std=0.0)


def test_guided_exploration_skips_actions_the_model_predicts_far_worse_after_the_start() -> None:
    predicted = {ACTIONS[0]: 5.0, ACTIONS[1]: 12.0, ACTIONS[2]: 500.0}
    learner = QLearning(StateSpace(), QConfig(seed=4, epsilon_min=0.2, model_prior=False, epsilon_decay_steps=60.0,
                                              explore_within=4.0),
                        predict=lambda obs, a: predicted[a])
    early = run_bandit(learner, {ACTIONS[0]: 5.0, ACTIONS[1]: 12.0, ACTIONS[2]: 500.0}, 60)
    late = run_bandit(learner, {ACTIONS[0]: 5.0, ACTIONS[1]: 12.0, ACTIONS[2]: 500.0}, 400)
    assert ACTIONS[2] in early  # right after the start every action is explored (or tried once)
    assert ACTIONS[2] not in late  # afterwards, only actions within 4x of the best prediction
    assert late.count(ACTIONS[1]) > 0  # ... which are still explored
    with pytest.raises(ValueError, match="explore_within"):
        QConfig(explore_within=0.5)


def test_model_prior_starts_where_the_latency_model_points_and_learns_past_it() -> None:
    predicted = {ACTIONS[0]: 5.0, ACTIONS[1]: 12.0, ACTIONS[2]: 500.0}
    learner = QLearning(StateSpace(), QConfig(seed=5, epsilon_start=0.0, epsilon_min=0.0),
                        predict=lambda obs, a: predicted[a])
    assert learner.choose(Observation(), ACTIONS).action == ACTIONS[0]
    # the model is wrong: the device is slow in truth; the learner moves to the edge server
    chosen = run_bandit(learner, {ACTIONS[0]: 50.0, ACTIONS[1]: 12.0, ACTIONS[2]: 500.0}, 100)
    assert chosen[-20:] == [ACTIONS[1]] * 20
