"""SAC and DQN learn the best action of a simple environment, and the trained actor runs without torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.traces import Trace
from splitting.dqn import DqnConfig, train_dqn
from splitting.env import EnvConfig, SplitEnv
from splitting.policy import MlpPolicy, save_mlp
from splitting.sac import SacConfig, mlp_layers, train_sac
from splitting.setup import SplitSetup


def _two_regime_env(setup: SplitSetup) -> SplitEnv:
    # 20 s at 5 Mbit/s, 20 s at 0.02: the best action depends on the measured bandwidth.
    trace = Trace(name="two", times_s=np.array([0.0, 20.0]), mbit_s=np.array([5.0, 0.02]))
    cfg = EnvConfig(episode_steps=50, deadline_ms=80.0, measure_noise=0.0, random_start=True)
    return SplitEnv(setup.cost_model(), [trace], setup.val_accuracy, cfg=cfg, seed=0)


def _greedy_reward(env: SplitEnv, choose) -> float:
    total = 0.0
    for start in (0.0, 25.0):
        obs, info = env.reset(options={"trace": 0, "start_s": start})
        for _ in range(30):
            obs, r, _, _, info = env.step(choose(obs, info["action_mask"]))
            total += r
    return total


@pytest.mark.slow
def test_sac_learns_and_its_numpy_actor_matches(profiled_bundle: Path, tmp_path: Path) -> None:
    setup = SplitSetup.load(profiled_bundle, need_spec=False)
    env = _two_regime_env(setup)
    agent, history = train_sac(env, SacConfig(total_steps=2500, learning_starts=300, batch_size=64, hidden=32,
                                              target_entropy_ratio=0.3), progress=False)
    assert history and np.isfinite(history[-1]["alpha"])
    policy = MlpPolicy.load(save_mlp(tmp_path / "sac.npz", mlp_layers(agent.actor), meta={}))
    rng = np.random.default_rng(0)
    random_reward = _greedy_reward(env, lambda o, m: int(rng.choice(np.flatnonzero(m))))
    assert _greedy_reward(env, policy.act) > random_reward
    import torch

    obs = np.random.default_rng(1).normal(size=(4, env.observation_space.shape[0])).astype(np.float32)
    with torch.no_grad():
        expected = agent.actor(torch.from_numpy(obs)).numpy()
    assert np.allclose(policy.scores(obs), expected, atol=1e-4)


@pytest.mark.slow
def test_dqn_learns(profiled_bundle: Path) -> None:
    setup = SplitSetup.load(profiled_bundle, need_spec=False)
    env = _two_regime_env(setup)
    q, _ = train_dqn(env, DqnConfig(total_steps=2500, learning_starts=300, batch_size=64, hidden=32),
                     progress=False)
    policy = MlpPolicy(mlp_layers(q), {})
    rng = np.random.default_rng(0)
    random_reward = _greedy_reward(env, lambda o, m: int(rng.choice(np.flatnonzero(m))))
    assert _greedy_reward(env, policy.act) > random_reward
