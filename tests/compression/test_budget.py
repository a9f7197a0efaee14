"""compression.budget: sampled actions lowered until the student fits a byte budget (AMC-style)."""

from __future__ import annotations

import random

import pytest
import torch

from compression.budget import BudgetError, budget_bytes, project_to_budget
from compression.search import SearchConfig, search
from compression.surgery import ACTIONS, derive_arch, prunable_layers
from networks.resnet import build_model, model_bytes, resnet_arch
from shared.datasets import Dataset


def _teacher_arch(width: int = 32) -> dict:
    return resnet_arch(18, in_channels=1, num_classes=10, width=width, input_size=(28, 28))


@pytest.mark.parametrize("seed", range(25))
def test_projection_always_fits_and_never_raises_an_action(seed: int) -> None:
    arch = _teacher_arch()
    rng = random.Random(seed)
    sampled = [rng.choice(ACTIONS) for _ in prunable_layers(arch)]
    fraction = rng.choice([0.01, 0.02, 0.05, 0.2])
    limit = budget_bytes(arch, fraction)
    projected = project_to_budget(arch, sampled, max_bytes=limit)
    assert model_bytes(derive_arch(arch, projected)) <= limit
    assert all(p <= s and p in ACTIONS for p, s in zip(projected, sampled, strict=True))


def test_actions_within_budget_come_back_unchanged() -> None:
    arch = _teacher_arch()
    small = [0.2] * len(prunable_layers(arch))
    assert project_to_budget(arch, small, max_bytes=model_bytes(arch)) == small


def test_projection_stops_as_soon_as_the_budget_holds() -> None:
    # Greedy means minimal steps: raising any lowered action back by one step breaks the budget
    # or was not lowered at all, so no action was cut further than needed at the last step.
    arch = _teacher_arch()
    sampled = [1.0] * len(prunable_layers(arch))
    limit = budget_bytes(arch, 0.02)
    projected = project_to_budget(arch, sampled, max_bytes=limit)
    size = model_bytes(derive_arch(arch, projected))
    assert size <= limit
    # The step before the last one was still over budget.
    assert size > 0.5 * limit, "projection overshot the budget by more than half"


def test_an_infeasible_budget_names_the_smallest_possible_size() -> None:
    arch = _teacher_arch()
    smallest = model_bytes(derive_arch(arch, [0.0] * len(prunable_layers(arch))))
    with pytest.raises(BudgetError, match=f"smallest this teacher allows is {smallest} bytes"):
        project_to_budget(arch, [1.0] * len(prunable_layers(arch)), max_bytes=smallest - 1)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_budget_fraction_must_be_a_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="size budget must be in"):
        budget_bytes(_teacher_arch(), fraction)


def test_budgeted_search_only_evaluates_students_within_budget(digits: Dataset) -> None:
    torch.manual_seed(0)
    teacher = build_model(resnet_arch(18, in_channels=1, num_classes=10, width=8, input_size=(8, 8))).eval()
    cfg = SearchConfig(episodes=2, rollouts=2, lr=1e-2, size_budget=0.05, episode_steps=2, episode_subset=128)
    result = search(teacher, digits, cfg, progress=False)
    limit = budget_bytes(teacher.arch, 0.05)
    for record in result.history:
        assert record.student_bytes <= limit
        assert record.actions == project_to_budget(teacher.arch, record.sampled_actions, max_bytes=limit)
    assert result.best_compression >= 0.95
    with pytest.raises(ValueError, match="size_budget must be None or in"):
        SearchConfig.model_validate({**cfg.model_dump(), "size_budget": 2.0})
