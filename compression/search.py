"""RL search for a compressed student (Zhang et al. §IV, Algorithm 1; N2N-style REINFORCE).

One episode = N rollouts: the GRU policy samples one action per prunable layer, ``surgery.shrink``
turns the teacher into that student, a short distillation measures its validation accuracy A, and
the reward R (eq. 7) combines A with the compression C (eq. 5). After the N rollouts the policy takes
one REINFORCE step against an exponential-moving-average baseline (eqs. 8-10). The best student
seen, architecture *and* weights after its short distillation, is kept so that the final full
distillation continues from it.

    result = search(teacher, dataset, SearchConfig(episodes=50, rollouts=4))
    write_search_report(result, Path("artifacts/reports"))
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import torch
from pydantic import model_validator
from torch import Tensor, nn
from tqdm.auto import tqdm

from compression.budget import budget_bytes, project_to_budget
from compression.distill import DistillConfig, distill
from compression.policy import GRUPolicy
from compression.precision import PRECISIONS
from compression.surgery import ACTIONS, layer_states, shrink
from networks.family import build_model, model_bytes
from shared.run_config import ConfigModel

if TYPE_CHECKING:
    from shared.datasets import Dataset

log = logging.getLogger(__name__)


def compression_ratio(student_arch: dict, teacher_arch: dict) -> float:
    """eq. (5): C = 1 − size(student) / size(teacher), size = float32 parameter bytes."""
    teacher_size = model_bytes(teacher_arch)
    return 1.0 - model_bytes(student_arch) / teacher_size


def reward(c: float, a: float, *, alpha: float = 20.0, beta: float = 15.0, c0: float, a0: float) -> float:
    """eq. (7): R = exp(α(C − C0)) · exp(β(A − A0)); exactly 1 at C = C0, A = A0.

    ln R = α·C + β·A + const, so at the paper's α=20, β=15 one point of compression is worth
    4/3 points of accuracy. C0 and A0 only rescale R by a constant factor.
    """
    if not (math.isfinite(c) and c <= 1.0):
        raise ValueError(f"compression c must be finite and <= 1, got {c}")
    if not (math.isfinite(a) and 0.0 <= a <= 1.0):
        raise ValueError(f"accuracy a must be in [0, 1], got {a}")
    return math.exp(alpha * (c - c0)) * math.exp(beta * (a - a0))


def reinforce_update(
    policy: nn.Module,
    optimizer: torch.optim.Optimizer,
    log_probs: Tensor,
    rewards: Tensor,
    baseline: float,
    *,
    decay: float,
    max_grad_norm: float | None = None,
) -> tuple[float, float]:
    """One REINFORCE step over N rollouts; returns (loss, new baseline).

    eq. (8)-(9): ∇J ≈ (1/N) Σ_i (R_i − b) ∇ log π(a_i), so we minimise −mean((R − b)·log π).
    eq. (10): b ← λ·b + (1 − λ)·mean(R), applied *after* the step so the advantages of this batch
    are measured against the baseline of the batches before it.
    """
    if log_probs.ndim != 1 or log_probs.shape != rewards.shape or log_probs.numel() == 0:
        raise ValueError(
            f"log_probs and rewards must both have shape (N>0,), got {tuple(log_probs.shape)} "
            f"and {tuple(rewards.shape)}"
        )
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"baseline decay λ must be in [0, 1), got {decay}")
    if not (math.isfinite(baseline) and torch.isfinite(rewards).all()):
        raise ValueError(f"baseline {baseline} and rewards {rewards.tolist()} must be finite")
    rewards = rewards.detach().to(log_probs.dtype)
    advantages = rewards - baseline  # (N,)
    pg_loss = -(advantages * log_probs).mean()
    optimizer.zero_grad(set_to_none=True)
    pg_loss.backward()
    if max_grad_norm is not None:
        nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
    optimizer.step()
    new_baseline = decay * baseline + (1.0 - decay) * rewards.mean().item()
    return pg_loss.item(), new_baseline


class SearchConfig(ConfigModel):
    """RL compression-search settings (Algorithm 1)."""

    episodes: int = 50
    """policy updates; each evaluates `rollouts` students."""
    rollouts: int = 4
    """N: action sequences sampled per update (eq. 8)."""
    lr: float = 1e-4
    """Adam learning rate of the policy (the paper's value)."""
    alpha: float = 20.0
    """α of eq. (7): weight of compression C."""
    beta: float = 15.0
    """β of eq. (7): weight of accuracy A."""
    c0: float = 0.9
    """C0 of eq. (7): the compression at which R_C = 1 (ResNet-18 to about a tenth of its bytes)."""
    a0: float = 0.9
    """A0 of eq. (7): the accuracy at which R_A = 1 (short-budget students rarely beat it)."""
    baseline_decay: float = 0.9
    """λ of eq. (10): EMA decay of the reward baseline."""
    hidden_size: int = 64
    """GRU hidden units."""
    num_layers: int = 2
    """stacked GRU layers."""
    max_grad_norm: float | None = None
    """clip the policy gradient's norm to this value, if set."""
    episode_steps: int = 50
    """SP-KD steps each sampled student gets before its accuracy A is measured (eq. 7)."""
    episode_subset: int = 2048
    """training samples those short runs draw from."""
    inherit: bool = True
    """students start from the teacher's kept weights (surgery.shrink) rather than a fresh init."""
    size_budget: float | None = None
    """if set, every student is at most this fraction of the teacher's bytes (compression.budget)."""
    seed: int = 0
    """seeds the policy's init and its action sampling, and the per-rollout distillations."""
    device: str = "auto"
    """device for teacher and students during the per-rollout distillation."""
    precision: str = "auto"
    """arithmetic of the per-rollout distillation (compression.precision): fp32, bf16 or auto."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name in ("episodes", "rollouts", "hidden_size", "num_layers", "episode_steps", "episode_subset"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")
        if self.size_budget is not None and not 0.0 < self.size_budget <= 1.0:
            raise ValueError(f"size_budget must be None or in (0, 1], got {self.size_budget}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be None or > 0, got {self.max_grad_norm}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        return self

    def episode_distill(self) -> DistillConfig:
        """The short per-rollout distillation that measures A: `episode_steps` SP-KD steps on
        `episode_subset` samples, enough to rank students, cheap enough for hundreds of them (on
        digits, with a ResNet-18 w16 teacher, 21 such steps took inherited students to ~0.95 val accuracy)."""
        return DistillConfig(epochs=1, max_steps=self.episode_steps, batch_size=64, lr=0.02,
                             train_subset=self.episode_subset, device=self.device, precision=self.precision,
                             seed=self.seed)


@dataclass
class EpisodeRecord:
    """One rollout of one episode."""

    episode: int
    rollout: int
    reward: float
    compression: float
    accuracy: float
    student_bytes: int
    actions: list[float]
    """the actions applied: the sampled ones, lowered to fit the size budget if one is set."""
    sampled_actions: list[float]
    """the actions the policy sampled (their log-probability is `log_prob`)."""
    arch: dict[str, Any]
    baseline: float
    """the baseline b its advantage was measured against (eq. 9)."""
    log_prob: float
    entropy: float
    """summed per-layer entropy of the policy when it was sampled."""
    cached: bool
    """True when this action sequence was evaluated earlier in the search and its C, A reused."""


@dataclass
class SearchResult:
    """The best student found (Algorithm 1) and the full per-rollout log."""

    best_arch: dict[str, Any]
    best_actions: list[float]
    best_reward: float
    best_compression: float
    best_accuracy: float
    best_state_dict: dict[str, Tensor]
    """the best student's weights (CPU) after its short distillation."""
    history: list[EpisodeRecord]
    teacher_bytes: int = 0

    def best_model(self) -> nn.Module:
        """The best student rebuilt from ``best_arch`` with its distilled weights, in eval mode."""
        model = build_model(self.best_arch)
        model.load_state_dict(self.best_state_dict)
        return model.eval()


@dataclass
class _Evaluation:
    compression: float
    accuracy: float
    student_bytes: int
    arch: dict[str, Any]


def _evaluate_student(
    teacher: nn.Module, actions: list[float], dataset: Dataset, cfg: DistillConfig, *, inherit: bool
) -> tuple[_Evaluation, nn.Module]:
    student = shrink(teacher, actions, inherit=inherit)
    history = distill(student, teacher, dataset, cfg, progress=False)
    arch = student.arch
    evaluation = _Evaluation(
        compression=compression_ratio(arch, teacher.arch),
        accuracy=float(history[-1]["val_accuracy"]),
        student_bytes=model_bytes(arch),
        arch=arch,
    )
    return evaluation, student


def search(teacher: nn.Module, dataset: Dataset, cfg: SearchConfig, *, progress: bool = True) -> SearchResult:
    """Run Algorithm 1 and return the best student seen.

    The teacher's weights and mode are left as they were (distillation may move it to ``cfg.device``).
    """
    teacher_arch = teacher.arch
    states = torch.from_numpy(layer_states(teacher_arch))  # (T, 5) eq. (2)
    torch.manual_seed(cfg.seed)
    policy = GRUPolicy(
        state_dim=states.shape[1], hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
        num_actions=len(ACTIONS),
    )
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    # The policy samples from its own generator: distill() reseeds torch's global RNG every rollout.
    generator = torch.Generator().manual_seed(cfg.seed)
    episode_cfg = cfg.episode_distill()
    # distill() is seeded, so A is a function of the action sequence: a repeat is looked up, not retrained.
    cache: dict[tuple[float, ...], _Evaluation] = {}
    max_bytes = None if cfg.size_budget is None else budget_bytes(teacher_arch, cfg.size_budget)

    history: list[EpisodeRecord] = []
    best: EpisodeRecord | None = None
    best_state: dict[str, Tensor] = {}
    baseline: float | None = None
    bar = tqdm(range(cfg.episodes), desc="compression search", disable=not progress)
    for episode in bar:
        log_probs: list[Tensor] = []
        rewards: list[float] = []
        records: list[EpisodeRecord] = []
        for rollout in range(cfg.rollouts):
            idx, log_prob, entropy = policy.sample(states, generator=generator)  # (T,), (), ()
            sampled = [ACTIONS[i] for i in idx.tolist()]
            actions = sampled if max_bytes is None else project_to_budget(teacher_arch, sampled, max_bytes=max_bytes)
            key = tuple(actions)
            cached = key in cache
            student = None
            if not cached:
                cache[key], student = _evaluate_student(
                    teacher, actions, dataset, episode_cfg, inherit=cfg.inherit
                )
            ev = cache[key]
            r = reward(ev.compression, ev.accuracy, alpha=cfg.alpha, beta=cfg.beta, c0=cfg.c0, a0=cfg.a0)
            record = EpisodeRecord(
                episode=episode, rollout=rollout, reward=r, compression=ev.compression,
                accuracy=ev.accuracy, student_bytes=ev.student_bytes, actions=actions, sampled_actions=sampled,
                arch=ev.arch,
                baseline=math.nan, log_prob=log_prob.item(), entropy=entropy.item(), cached=cached,
            )
            # A cached sequence was evaluated before, so it can never be a new best.
            if student is not None and (best is None or r > best.reward):
                best = record
                best_state = {k: v.detach().cpu().clone() for k, v in student.state_dict().items()}
            log_probs.append(log_prob)
            rewards.append(r)
            records.append(record)

        if baseline is None:
            # Start b at the first batch's mean reward, so the first advantages are centred, not all > 0.
            baseline = sum(rewards) / len(rewards)
        for record in records:
            record.baseline = baseline
        _, baseline = reinforce_update(
            policy, optimizer, torch.stack(log_probs), torch.tensor(rewards), baseline,
            decay=cfg.baseline_decay, max_grad_norm=cfg.max_grad_norm,
        )
        history.extend(records)
        assert best is not None  # the first rollout of the first episode is always evaluated
        bar.set_postfix(best_R=f"{best.reward:.3f}", C=f"{best.compression:.3f}", A=f"{best.accuracy:.3f}")
        log.info("episode %d: mean R %.4f, best R %.4f (C %.3f, A %.3f)", episode,
                 sum(rewards) / len(rewards), best.reward, best.compression, best.accuracy)

    assert best is not None
    return SearchResult(
        best_arch=best.arch, best_actions=best.actions, best_reward=best.reward,
        best_compression=best.compression, best_accuracy=best.accuracy, best_state_dict=best_state,
        history=history, teacher_bytes=model_bytes(teacher_arch),
    )


_CSV_FIELDS = ("episode", "rollout", "reward", "compression", "accuracy", "student_bytes", "baseline",
               "log_prob", "entropy", "cached", "actions", "sampled_actions", "arch")


def _plot_rewards(history: list[EpisodeRecord], path: Path) -> None:
    # The object-oriented API with an explicit Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rollouts = max(r.rollout for r in history) + 1
    x = [r.episode + r.rollout / rollouts for r in history]
    rewards = [r.reward for r in history]
    running_best = [max(rewards[: i + 1]) for i in range(len(rewards))]
    ax.scatter(x, rewards, s=10, alpha=0.6, label="reward per rollout")
    ax.step(x, running_best, where="post", color="tab:green", label="running best")
    ax.step(x, [r.baseline for r in history], where="post", color="tab:orange", label="baseline b (eq. 10)")
    ax.set_xlabel("episode")
    # R is exponential in C and A (eq. 7), so rewards span orders of magnitude: plot ln R linearly.
    ax.set_yscale("log")
    ax.set_ylabel("reward R (eq. 7, log scale)")
    ax.set_title("RL compression search")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path)


def write_search_report(result: SearchResult, reports_dir: Path) -> list[Path]:
    """Write episodes.jsonl, episodes.csv and reward_over_episodes.png; return their paths."""
    if not result.history:
        raise ValueError("search result has an empty history; nothing to report")
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    rows = [dataclasses.asdict(r) for r in result.history]

    jsonl = reports_dir / "episodes.jsonl"
    with jsonl.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")

    table = reports_dir / "episodes.csv"
    with table.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            # Lists and dicts become one cell each: actions space-separated, arch as JSON.
            writer.writerow(row | {"actions": " ".join(f"{a:g}" for a in row["actions"]),
                                   "sampled_actions": " ".join(f"{a:g}" for a in row["sampled_actions"]),
                                   "arch": json.dumps(row["arch"], sort_keys=True)})

    plot = reports_dir / "reward_over_episodes.png"
    _plot_rewards(result.history, plot)
    return [jsonl, table, plot]
