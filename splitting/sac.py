"""Discrete Soft Actor-Critic with automatic temperature and action masks (torch, offline only).

After Christodoulou (2019), "Soft Actor-Critic for Discrete Action Settings", the variant Niu et al.
use. With a discrete action set the expectations over actions are exact sums over the policy's
probabilities, so no reparameterisation is needed:

    critic target  y = r + gamma (1 - done) sum_a' pi(a'|s') [min_i Q'_i(s', a') - alpha log pi(a'|s')]
    critic loss    (Q_i(s, a) - y)^2, i = 1, 2 (clipped double Q, Fujimoto et al. 2018)
    actor loss     sum_a pi(a|s) [alpha log pi(a|s) - min_i Q_i(s, a)]
    alpha loss     -log(alpha) (target_entropy - H(pi(.|s)))

Invalid actions get logit -inf (probability 0) and are left out of every sum. The target entropy
is `target_entropy_ratio * log(#valid actions)`: Christodoulou's 0.98 asks for an almost uniform
policy, which a planner with a few clearly better actions cannot reach, so alpha grows without bound
and the policy never sharpens (the divergence the issue describes). We tune the ratio
(docs/results.md); the actor's layers are saved for the torch-free device (splitting/policy.py).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from splitting.env import SplitEnv

log = logging.getLogger(__name__)


@dataclass
class OffPolicyConfig:
    """What every replay-buffer learner here (discrete SAC, the DQN baseline) is configured with."""

    total_steps: int = 30_000
    """environment steps"""
    learning_starts: int = 1_000
    """uniformly random (valid) actions before learning starts"""
    buffer_size: int = 100_000
    """replay capacity"""
    batch_size: int = 256
    """transitions per update"""
    gamma: float = 0.5
    """discount: the planner's choice mostly matters now, and a little through what it measures next"""
    lr: float = 3e-4
    """Adam learning rate (SAC: of actor, critics and temperature)"""
    hidden: int = 128
    """units in each of the two hidden layers"""
    seed: int = 0
    """seeds torch, numpy and the environment"""


@dataclass
class SacConfig(OffPolicyConfig):
    """Discrete SAC hyper-parameters."""

    tau: float = 0.01
    """Polyak rate of the target critics"""
    target_entropy_ratio: float = 0.3
    """target entropy = ratio * log(#valid actions); 0.98 (Christodoulou) diverges here"""
    initial_alpha: float = 0.2
    """starting temperature"""


def mlp(n_in: int, n_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


def mlp_layers(net: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W (in, out), b) per Linear, for splitting.policy.save_mlp."""
    return [(m.weight.detach().cpu().numpy().T.copy(), m.bias.detach().cpu().numpy().copy())
            for m in net if isinstance(m, nn.Linear)]


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, n_actions: int, rng: np.random.Generator) -> None:
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.dones = np.zeros(capacity, np.float32)
        self.next_masks = np.zeros((capacity, n_actions), bool)
        self.capacity, self.size, self.pos, self.rng = capacity, 0, 0, rng

    def add(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, done: bool,
            next_mask: np.ndarray) -> None:
        i = self.pos
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.next_obs[i], self.dones[i], self.next_masks[i] = next_obs, float(done), next_mask
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, n: int) -> tuple[Tensor, ...]:
        idx = self.rng.integers(0, self.size, size=n)
        return (torch.from_numpy(self.obs[idx]), torch.from_numpy(self.actions[idx]),
                torch.from_numpy(self.rewards[idx]), torch.from_numpy(self.next_obs[idx]),
                torch.from_numpy(self.dones[idx]), torch.from_numpy(self.next_masks[idx]))


def collect(env: SplitEnv, buffer: ReplayBuffer, obs: np.ndarray, action: int,
            rewards: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """One environment step stored in ``buffer`` (its reward appended to ``rewards``); the next
    observation and action mask, from a fresh episode when this one ended."""
    next_obs, reward, terminated, truncated, info = env.step(action)
    buffer.add(obs, action, reward, next_obs, terminated, info["action_mask"])
    rewards.append(reward)
    obs, mask = next_obs, info["action_mask"]
    if terminated or truncated:
        obs, info = env.reset()
        mask = info["action_mask"]
    return obs, mask


def masked_log_probs(logits: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """(probabilities, log-probabilities) over valid actions; invalid ones get p = 0 and log p = 0."""
    logits = logits.masked_fill(~mask, -1e9)
    log_p = F.log_softmax(logits, dim=-1)
    p = log_p.exp() * mask
    return p, log_p * mask


class DiscreteSAC:
    def __init__(self, obs_dim: int, n_actions: int, valid: np.ndarray, cfg: SacConfig) -> None:
        torch.manual_seed(cfg.seed)
        self.cfg = cfg
        self.actor = mlp(obs_dim, n_actions, cfg.hidden)
        self.q1, self.q2 = mlp(obs_dim, n_actions, cfg.hidden), mlp(obs_dim, n_actions, cfg.hidden)
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.log_alpha = torch.tensor(math.log(cfg.initial_alpha), requires_grad=True)
        self.target_entropy = cfg.target_entropy_ratio * math.log(int(valid.sum()))
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)
        self.q_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=cfg.lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.lr)

    @property
    def alpha(self) -> float:
        return self.log_alpha.exp().item()

    def sample_action(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> int:
        with torch.no_grad():
            p, _ = masked_log_probs(self.actor(torch.from_numpy(obs[None])), torch.from_numpy(mask[None]))
        probs = p[0].numpy().astype(np.float64)
        return int(rng.choice(len(probs), p=probs / probs.sum()))

    def update(self, batch: tuple[Tensor, ...], valid: Tensor) -> dict[str, float]:
        obs, actions, rewards, next_obs, dones, next_masks = batch
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            p_next, logp_next = masked_log_probs(self.actor(next_obs), next_masks)
            q_next = torch.min(self.q1_target(next_obs), self.q2_target(next_obs))
            v_next = (p_next * (q_next - alpha * logp_next)).sum(-1)
            y = rewards + self.cfg.gamma * (1 - dones) * v_next
        q1 = self.q1(obs).gather(1, actions[:, None]).squeeze(1)
        q2 = self.q2(obs).gather(1, actions[:, None]).squeeze(1)
        q_loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()

        mask = valid.expand(len(obs), -1)
        p, logp = masked_log_probs(self.actor(obs), mask)
        with torch.no_grad():
            q_min = torch.min(self.q1(obs), self.q2(obs)).masked_fill(~mask, 0.0)
        actor_loss = (p * (alpha * logp - q_min)).sum(-1).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()

        entropy = -(p * logp).sum(-1).detach()
        alpha_loss = -(self.log_alpha * (self.target_entropy - entropy)).mean()
        self.alpha_opt.zero_grad()
        alpha_loss.backward()
        self.alpha_opt.step()

        with torch.no_grad():
            for net, target in ((self.q1, self.q1_target), (self.q2, self.q2_target)):
                for w, wt in zip(net.parameters(), target.parameters(), strict=True):
                    wt.mul_(1 - self.cfg.tau).add_(self.cfg.tau * w)
        return {"q_loss": q_loss.item(), "actor_loss": actor_loss.item(), "alpha": self.alpha,
                "entropy": float(entropy.mean())}


def train_sac(env: SplitEnv, cfg: SacConfig, *, progress: bool = True,
              checkpoint: Callable[[int, list[tuple[np.ndarray, np.ndarray]]], None] | None = None,
              checkpoint_every: int = 5000) -> tuple[DiscreteSAC, list[dict[str, Any]]]:
    """Train on `env` (the training traces); returns the agent and a log every 1000 steps. `checkpoint`
    gets the actor's layers (`mlp_layers`) every `checkpoint_every` steps once learning has started, and
    at the end (splitting/select.py keeps the one the weight rule would pick)."""
    rng = np.random.default_rng(cfg.seed)
    torch.set_num_threads(1)
    valid = env.space.valid
    agent = DiscreteSAC(env.observation_space.shape[0], len(env.space), valid, cfg)
    buffer = ReplayBuffer(cfg.buffer_size, env.observation_space.shape[0], len(env.space), rng)
    valid_t = torch.from_numpy(valid)[None]
    obs, info = env.reset(seed=cfg.seed)
    mask = info["action_mask"]
    history: list[dict[str, Any]] = []
    window: list[float] = []
    stats: dict[str, float] = {}
    for step in tqdm(range(1, cfg.total_steps + 1), desc="SAC", disable=not progress, leave=False):
        if step <= cfg.learning_starts:
            action = int(rng.choice(np.flatnonzero(mask)))
        else:
            action = agent.sample_action(obs, mask, rng)
        obs, mask = collect(env, buffer, obs, action, window)
        if step > cfg.learning_starts:
            stats = agent.update(buffer.sample(cfg.batch_size), valid_t)
        if step % 1000 == 0:
            record = {"step": step, "mean_reward": float(np.mean(window)), **stats}
            history.append(record)
            log.info("SAC step %d: reward %.3f alpha %.4f entropy %.3f", step, record["mean_reward"],
                     stats.get("alpha", float("nan")), stats.get("entropy", float("nan")))
            window = []
        if checkpoint is not None and step > cfg.learning_starts and (
                step % checkpoint_every == 0 or step == cfg.total_steps):
            checkpoint(step, mlp_layers(agent.actor))
    return agent, history
