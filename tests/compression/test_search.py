"""compression.search: eqs. (5)-(10), REINFORCE on a toy problem, and a real digits search."""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from compression import search as search_module
from compression.distill import DistillConfig
from compression.policy import GRUPolicy
from compression.search import (
    SearchConfig,
    compression_ratio,
    reinforce_update,
    reward,
    search,
    write_search_report,
)
from compression.surgery import ACTIONS, derive_arch, prunable_layers
from compression.teacher import evaluate
from networks.resnet import build_model, param_count, resnet_arch
from shared.datasets import Dataset


def _arch(width: int = 8) -> dict:
    return resnet_arch(18, in_channels=1, num_classes=10, width=width, input_size=(8, 8))


# ---- eq. (5) -------------------------------------------------------------------------------------


def test_compression_ratio_is_one_minus_the_byte_ratio() -> None:
    teacher = _arch()
    assert compression_ratio(teacher, teacher) == 0.0
    student = derive_arch(teacher, [0.4] * len(prunable_layers(teacher)))
    expected = 1.0 - param_count(student) / param_count(teacher)
    assert compression_ratio(student, teacher) == pytest.approx(expected, rel=1e-12)
    assert 0.0 < compression_ratio(student, teacher) < 1.0
    # A half-width teacher has roughly a quarter of the conv weights: C close to 3/4.
    assert compression_ratio(_arch(4), teacher) == pytest.approx(0.75, abs=0.02)


# ---- eq. (7) -------------------------------------------------------------------------------------


def test_reward_hand_values() -> None:
    assert reward(0.9, 0.9, c0=0.9, a0=0.9) == pytest.approx(1.0)
    assert reward(0.5, 0.7, c0=0.5, a0=0.7) == pytest.approx(1.0)
    # exp(20 * 0.05) * exp(15 * -0.05) = exp(0.25)
    assert reward(0.95, 0.85, c0=0.9, a0=0.9) == pytest.approx(math.exp(0.25), rel=1e-12)
    assert reward(0.8, 1.0, alpha=2.0, beta=3.0, c0=0.9, a0=0.9) == pytest.approx(math.exp(-0.2 + 0.3))


def test_reward_is_strictly_increasing_in_compression_and_accuracy() -> None:
    grid = [i / 10 for i in range(11)]
    for a in grid:
        by_c = [reward(c, a, c0=0.9, a0=0.9) for c in grid]
        assert all(lo < hi for lo, hi in itertools.pairwise(by_c))
    for c in grid:
        by_a = [reward(c, a, c0=0.9, a0=0.9) for a in grid]
        assert all(lo < hi for lo, hi in itertools.pairwise(by_a))


@pytest.mark.parametrize(("c", "a", "message"), [(1.2, 0.5, "compression c"), (0.5, 1.1, "accuracy a"),
                                                 (math.nan, 0.5, "compression c")])
def test_reward_rejects_impossible_inputs(c: float, a: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        reward(c, a, c0=0.9, a0=0.9)


# ---- eqs. (8)-(10) -------------------------------------------------------------------------------


def test_reinforce_update_returns_the_pg_loss_and_the_ema_baseline() -> None:
    torch.manual_seed(0)
    policy = GRUPolicy(hidden_size=8)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.1)
    states = torch.rand(4, 5)
    log_probs = torch.stack([policy.log_prob(states, torch.tensor(a)) for a in ([0, 1, 2, 3], [5, 5, 5, 5])])
    rewards = torch.tensor([1.0, 3.0])
    loss, new_b = reinforce_update(policy, optimizer, log_probs, rewards, 1.5, decay=0.9)
    assert new_b == pytest.approx(0.9 * 1.5 + 0.1 * 2.0)  # eq. (10)
    expected = -((rewards - 1.5) * log_probs.detach()).mean().item()  # eqs. (8)-(9)
    assert loss == pytest.approx(expected, rel=1e-6)
    # The better-than-baseline sequence became more likely, the worse one less likely.
    with torch.no_grad():
        assert policy.log_prob(states, torch.tensor([5, 5, 5, 5])) > log_probs[1]
        assert policy.log_prob(states, torch.tensor([0, 1, 2, 3])) < log_probs[0]


def test_reinforce_update_rejects_bad_inputs() -> None:
    policy = GRUPolicy(hidden_size=4)
    optimizer = torch.optim.Adam(policy.parameters())
    with pytest.raises(ValueError, match=r"\(3,\) and \(2,\)"):
        reinforce_update(policy, optimizer, torch.zeros(3), torch.zeros(2), 0.0, decay=0.9)
    with pytest.raises(ValueError, match="decay λ must be in"):
        reinforce_update(policy, optimizer, torch.zeros(2), torch.zeros(2), 0.0, decay=1.0)


def test_reinforce_learns_the_action_with_the_known_higher_reward() -> None:
    # Toy: 3 layers, reward = fraction of layers choosing action index 5.
    torch.manual_seed(0)
    policy = GRUPolicy(hidden_size=16)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    states = torch.rand(3, 5, generator=generator)
    with torch.no_grad():
        before = torch.softmax(policy(states), dim=1)[:, 5]
    baseline = 0.0
    for _ in range(40):
        samples = [policy.sample(states, generator=generator) for _ in range(8)]
        log_probs = torch.stack([s[1] for s in samples])
        rewards = torch.tensor([(s[0] == 5).float().mean().item() for s in samples])
        _, baseline = reinforce_update(policy, optimizer, log_probs, rewards, baseline, decay=0.8)
    with torch.no_grad():
        after = torch.softmax(policy(states), dim=1)[:, 5]
    assert torch.all(before < 0.2)
    assert torch.all(after > 0.6), after
    assert torch.equal(policy.greedy(states), torch.full((3,), 5))
    assert baseline > 0.5  # the EMA tracks the rising mean reward


# ---- the search ----------------------------------------------------------------------------------


def _tiny_search_config(**overrides: object) -> SearchConfig:
    return SearchConfig(**{"episodes": 2, "rollouts": 2, "lr": 1e-2, "device": "cpu", "episode_steps": 3,
                           "episode_subset": 128, **overrides})


def test_the_episode_distillation_is_derived_from_the_search_settings() -> None:
    cfg = SearchConfig(episode_steps=7, episode_subset=300, device="cpu", precision="fp32", seed=4)
    assert cfg.episode_distill() == DistillConfig(epochs=1, max_steps=7, batch_size=64, lr=0.02, train_subset=300,
                                                  device="cpu", precision="fp32", seed=4)
    assert cfg.episode_distill().gamma == 3000.0  # Tung & Mori's weight, kept for the short episodes
    with pytest.raises(ValueError, match="episode_steps must be >= 1, got 0"):
        SearchConfig(episode_steps=0)


def test_search_smoke_returns_a_buildable_best_student_and_writes_reports(
    digits: Dataset, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    teacher = build_model(_arch(width=4)).eval()
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    result = search(teacher, digits, _tiny_search_config(), progress=False)

    assert [(r.episode, r.rollout) for r in result.history] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert result.best_reward == max(r.reward for r in result.history)
    assert result.best_compression == pytest.approx(compression_ratio(result.best_arch, teacher.arch))
    assert len(result.best_actions) == len(prunable_layers(teacher.arch))
    assert set(result.best_actions) <= set(ACTIONS)
    assert result.best_arch == derive_arch(teacher.arch, result.best_actions)
    for r in result.history:
        assert r.reward == pytest.approx(reward(r.compression, r.accuracy, c0=0.9, a0=0.9))
    # The best student's distilled weights load into its arch and reproduce its accuracy.
    best = result.best_model()
    assert best.arch == result.best_arch
    acc = evaluate(best, digits.val, digits.mean, digits.std, device="cpu")
    assert acc == pytest.approx(result.best_accuracy)
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())

    paths = write_search_report(result, tmp_path / "reports")
    assert [p.name for p in paths] == ["episodes.jsonl", "episodes.csv", "reward_over_episodes.png"]
    lines = [json.loads(line) for line in paths[0].read_text().splitlines()]
    assert len(lines) == 4
    assert {"episode", "rollout", "reward", "compression", "accuracy", "student_bytes", "actions",
            "arch"} <= lines[0].keys()
    assert lines[3]["reward"] == pytest.approx(result.history[3].reward)
    with paths[1].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert [float(a) for a in rows[0]["actions"].split()] == result.history[0].actions
    assert json.loads(rows[0]["arch"]) == result.history[0].arch
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_search_distils_a_repeated_action_sequence_only_once(
    digits: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    teacher = build_model(_arch(width=4)).eval()
    fixed = torch.full((len(prunable_layers(teacher.arch)),), 3)

    def always_the_same(self: GRUPolicy, states: torch.Tensor, *, generator: object = None) -> tuple:
        return fixed, self.log_prob(states, fixed), self.distribution(states).entropy().sum()

    calls: list[list[float]] = []
    real = search_module._evaluate_student

    def counting(*args: object, **kwargs: object) -> tuple:
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(GRUPolicy, "sample", always_the_same)
    monkeypatch.setattr(search_module, "_evaluate_student", counting)
    result = search(teacher, digits, _tiny_search_config(rollouts=3), progress=False)
    assert calls == [[ACTIONS[3]] * len(fixed)]
    assert [r.cached for r in result.history] == [False] + [True] * 5
    assert len({r.reward for r in result.history}) == 1


def test_search_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="rollouts must be >= 1, got 0"):
        SearchConfig(rollouts=0)
    with pytest.raises(ValueError, match="baseline_decay must be in"):
        SearchConfig(baseline_decay=1.0)
