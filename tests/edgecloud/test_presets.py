"""edgecloud.presets: preset sizing, the MNIST size budget and JSON overrides."""

from __future__ import annotations

import pytest

from edgecloud.presets import BuildConfig, apply_overrides, make_config


def test_fast_digits_scales_epochs_for_a_small_dataset() -> None:
    cfg = make_config("fast", dataset="digits", train_size=1_300)
    assert cfg.teacher.width == 16
    # 10_000 / 1_300 rounds up to 8 epochs per preset epoch.
    assert cfg.teacher.epochs == 4 * 8
    assert cfg.search.size_budget is None


def test_fast_mnist_sized_has_the_two_percent_budget_and_a_wider_teacher() -> None:
    cfg = make_config("fast", dataset="mnist", train_size=54_000)
    assert (cfg.teacher.width, cfg.teacher.epochs) == (32, 3)
    assert cfg.search.size_budget == 0.02


def test_paper_preset_is_the_papers_scale() -> None:
    cfg = make_config("paper", dataset="mnist", train_size=54_000, device="cuda")
    assert (cfg.teacher.width, cfg.teacher.depth, cfg.device) == (64, 18, "cuda")
    assert cfg.search.lr == 1e-4  # Algorithm 1's learning rate
    assert cfg.distill.epochs == 60


def test_unknown_preset_names_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown preset 'huge'; choose one of fast, paper"):
        make_config("huge", dataset="digits", train_size=100)


def test_overrides_merge_into_sections_and_round_trip() -> None:
    cfg = apply_overrides(make_config("fast", dataset="digits", train_size=1_300),
                          {"seed": 7, "teacher": {"epochs": 1}, "search": {"size_budget": 0.05}})
    assert (cfg.seed, cfg.teacher.epochs, cfg.teacher.width, cfg.search.size_budget) == (7, 1, 16, 0.05)
    assert BuildConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(("overrides", "message"), [
    ({"teachr": {}}, "unknown build setting 'teachr'"),
    ({"teacher": {"epoch": 1}}, "unknown teacher setting.s. epoch"),
    ({"search": 3}, "build setting 'search' must be an object"),
])
def test_overrides_refuse_typos_by_name(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_overrides(BuildConfig(), overrides)
