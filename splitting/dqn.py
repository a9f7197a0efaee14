"""DQN baseline for the split planner (torch, offline only): Mnih et al. (2015) with a target network,
epsilon-greedy exploration decayed linearly, the Huber loss, and masked argmax over valid actions
(double-DQN target, van Hasselt et al. 2016). Same MLP shape and environment as the SAC planner, so
the comparison is of the algorithms, not of what they see.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from splitting.env import SplitEnv
from splitting.sac import OffPolicyConfig, ReplayBuffer, collect, mlp

log = logging.getLogger(__name__)


@dataclass
class DqnConfig(OffPolicyConfig):
    """DQN hyper-parameters (the shared ones, discount included, as SAC's)."""

    epsilon_start: float = 1.0
    """exploration at the start"""
    epsilon_end: float = 0.02
    """exploration after the decay"""
    epsilon_fraction: float = 0.5
    """share of total_steps over which epsilon decays"""
    target_every: int = 500
    """steps between target-network copies"""


def train_dqn(env: SplitEnv, cfg: DqnConfig, *, progress: bool = True) -> tuple[torch.nn.Sequential,
                                                                                 list[dict[str, Any]]]:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(cfg.seed)
    n_obs, n_actions = env.observation_space.shape[0], len(env.space)
    q = mlp(n_obs, n_actions, cfg.hidden)
    q_target = copy.deepcopy(q)
    optimizer = torch.optim.Adam(q.parameters(), lr=cfg.lr)
    buffer = ReplayBuffer(cfg.buffer_size, n_obs, n_actions, rng)
    obs, info = env.reset(seed=cfg.seed)
    mask = info["action_mask"]
    history: list[dict[str, Any]] = []
    window: list[float] = []
    loss_value = float("nan")
    for step in tqdm(range(1, cfg.total_steps + 1), desc="DQN", disable=not progress, leave=False):
        decay = min(1.0, step / (cfg.epsilon_fraction * cfg.total_steps))
        epsilon = cfg.epsilon_start + decay * (cfg.epsilon_end - cfg.epsilon_start)
        if step <= cfg.learning_starts or rng.random() < epsilon:
            action = int(rng.choice(np.flatnonzero(mask)))
        else:
            with torch.no_grad():
                scores = q(torch.from_numpy(obs[None]))[0].numpy()
            action = int(np.argmax(np.where(mask, scores, -np.inf)))
        obs, mask = collect(env, buffer, obs, action, window)
        if step > cfg.learning_starts:
            b_obs, b_act, b_rew, b_next, b_done, b_mask = buffer.sample(cfg.batch_size)
            with torch.no_grad():
                best = q(b_next).masked_fill(~b_mask, -1e9).argmax(1, keepdim=True)
                target = b_rew + cfg.gamma * (1 - b_done) * q_target(b_next).gather(1, best).squeeze(1)
            loss = F.smooth_l1_loss(q(b_obs).gather(1, b_act[:, None]).squeeze(1), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_value = float(loss)
        if step % cfg.target_every == 0:
            q_target.load_state_dict(q.state_dict())
        if step % 1000 == 0:
            history.append({"step": step, "mean_reward": float(np.mean(window)), "loss": loss_value,
                            "epsilon": epsilon})
            log.info("DQN step %d: reward %.3f loss %.4f", step, history[-1]["mean_reward"], loss_value)
            window = []
    return q, history
