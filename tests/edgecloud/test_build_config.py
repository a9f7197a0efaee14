"""The build's settings: each section is its stage's settings class, set in layers (preset < --config <
EDGECLOUD_BUILD__ variables < flags), device / precision / seed once at the top; no training here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compression.distill import DistillConfig
from compression.search import SearchConfig
from compression.teacher import TrainConfig
from edgecloud.cli import build_parser
from edgecloud.commands._offline import resolve_config
from edgecloud.pipeline import BUILD_JSON, load_config, save_config, update_config
from edgecloud.presets import BuildConfig, apply_overrides, make_config, resolve_build
from offloading.train import OffloaderConfig
from shared import bundle as B
from shared.datasets import load_dataset
from shared.run_config import ConfigError, Scope, env_layer, file_layer


def test_each_section_is_the_settings_class_of_its_stage_with_the_top_levels_device_seed_precision() -> None:
    cfg = apply_overrides(BuildConfig(), {"seed": 7, "device": "cpu", "precision": "fp32"})
    assert isinstance(cfg.teacher, TrainConfig) and type(cfg.search) is SearchConfig
    assert type(cfg.distill) is DistillConfig and isinstance(cfg.offload, OffloaderConfig)
    for section in (cfg.teacher, cfg.search, cfg.distill):
        assert (section.seed, section.device, section.precision) == (7, "cpu", "fp32")
    assert cfg.offload.seed == 7
    # The copies are derived, so build.json records them once, at the top.
    saved = cfg.to_dict()
    assert all("seed" not in saved[s] and "device" not in saved[s] for s in ("teacher", "search", "distill", "offload"))
    assert BuildConfig.from_dict(saved) == cfg
    assert cfg.search.episode_distill().seed == 7 and cfg.search.episode_distill().precision == "fp32"


def test_a_section_that_contradicts_the_top_level_names_both() -> None:
    with pytest.raises(ConfigError, match=r"teacher\.seed 2 contradicts seed 1"):
        apply_overrides(BuildConfig(), {"seed": 1, "teacher": {"seed": 2}})
    with pytest.raises(ConfigError, match=r"distill\.device 'cuda' contradicts device 'auto'"):
        apply_overrides(BuildConfig(), {"distill": {"device": "cuda"}})
    assert apply_overrides(BuildConfig(), {"seed": 3, "search": {"seed": 3}}).search.seed == 3  # agreeing is fine


def test_the_builds_own_defaults_stay_where_they_applied() -> None:
    # The final distillation's SP-KD weight is 300; the search's short episodes keep Tung & Mori's 3000.
    cfg = BuildConfig()
    assert (cfg.distill.gamma, cfg.distill.epochs) == (300.0, 6) and DistillConfig().gamma == 3000.0
    assert cfg.search.episode_distill().gamma == 3000.0
    assert (cfg.search.episodes, cfg.search.lr, SearchConfig().lr) == (10, 1e-2, 1e-4)
    assert cfg.teacher.epochs == 4 and TrainConfig().epochs == 10
    # ... also under a section given in part (a preset's, a file's): its other fields are the build's.
    partial = BuildConfig.from_dict({"search": {"episodes": 3}, "distill": {"epochs": 2}})
    assert (partial.search.lr, partial.distill.gamma) == (1e-2, 300.0)
    mnist = make_config("fast", dataset="mnist", train_size=54_000)
    assert (mnist.distill.gamma, mnist.search.lr, mnist.search.episode_steps) == (300.0, 1e-2, 40)


def _args(tmp_path: Path, flags: list[str], config: dict | None = None) -> object:
    argv = ["build", "--out", str(tmp_path / "bundle"), *flags]
    if config is not None:
        (tmp_path / "build.json").write_text(json.dumps(config))
        argv += ["--config", str(tmp_path / "build.json")]
    return build_parser().parse_args(argv)


def test_build_layers_preset_file_variables_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    preset, _ = resolve_config(_args(tmp_path, []))
    assert (preset.teacher.epochs, preset.search.size_budget) == (32, 0.05)  # fast on digits: scaled epochs
    file = {"teacher": {"epochs": 2}, "search": {"size_budget": 0.3}, "seed": 7}
    cfg, dataset = resolve_config(_args(tmp_path, [], file))
    assert (cfg.teacher.epochs, cfg.search.size_budget, cfg.seed) == (2, 0.3, 7)  # the file over the preset
    # The dataset is split with the seed the layers give, the one build.json records.
    assert np.array_equal(dataset.test.y, load_dataset("digits", seed=7).test.y)
    monkeypatch.setenv("EDGECLOUD_BUILD__TEACHER__EPOCHS", "3")
    monkeypatch.setenv("EDGECLOUD_BUILD__SEARCH__SIZE_BUDGET", "0.25")
    monkeypatch.setenv("EDGECLOUD_BUILD__SEED", "8")
    cfg, _ = resolve_config(_args(tmp_path, [], file))
    assert (cfg.teacher.epochs, cfg.search.size_budget, cfg.seed) == (3, 0.25, 8)  # the variables over the file
    cfg, _ = resolve_config(_args(tmp_path, ["--size-budget", "0.2", "--seed", "9"], file))
    assert (cfg.teacher.epochs, cfg.search.size_budget, cfg.seed) == (3, 0.2, 9)  # the flags over the variables
    assert cfg.teacher.seed == cfg.distill.seed == 9


def test_a_variable_can_pick_the_preset_and_the_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGECLOUD_BUILD__PRESET", "paper")
    monkeypatch.setenv("EDGECLOUD_BUILD__TEACHER__FAMILY", "alexnet")
    cfg, _ = resolve_config(_args(tmp_path, []))
    assert (cfg.preset, cfg.teacher.family, cfg.teacher.arch) == ("paper", "alexnet", {"width": 1.0})
    monkeypatch.setenv("EDGECLOUD_BUILD__TEACHER__EPOCS", "3")
    with pytest.raises(ConfigError, match=r"EDGECLOUD_BUILD__TEACHER__EPOCS: unknown teacher setting\(s\) epocs"):
        resolve_config(_args(tmp_path, []))


def test_a_stage_changes_only_its_own_sections_whatever_the_layer(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    save_config(tmp_path, apply_overrides(BuildConfig(), {"teacher": {"epochs": 2}}))
    (tmp_path / "offload.json").write_text(json.dumps({"offload": {"budget": 0.3}}))
    layers = [file_layer(tmp_path / "offload.json"),
              env_layer(Scope.BUILD, {"EDGECLOUD_BUILD__OFFLOAD__BUDGET": "0.1"})]
    assert update_config(tmp_path, layers, sections=("offload",)).offload.budget == 0.1
    saved = json.loads((tmp_path / B.REPORTS / BUILD_JSON).read_text())
    assert saved["offload"]["budget"] == 0.1 and load_config(tmp_path).offload.budget == 0.1
    # An earlier stage's setting may be repeated (one set of variables for every stage), not changed.
    same = env_layer(Scope.BUILD, {"EDGECLOUD_BUILD__TEACHER__EPOCHS": "2"})
    assert update_config(tmp_path, [same], sections=("offload",)).teacher.epochs == 2
    changed = env_layer(Scope.BUILD, {"EDGECLOUD_BUILD__TEACHER__EPOCHS": "5", "EDGECLOUD_BUILD__SEED": "1"})
    with pytest.raises(ValueError, match="settings seed, teacher belong to an earlier stage"):
        update_config(tmp_path, [changed], sections=("offload",))
    assert load_config(tmp_path).teacher.epochs == 2


def test_resolve_build_over_a_saved_config_keeps_what_the_layers_leave(tmp_path: Path) -> None:
    base = make_config("fast", dataset="digits", train_size=1_300)
    (tmp_path / "c.json").write_text(json.dumps({"distill": {"gamma": 100.0}}))
    cfg = resolve_build([file_layer(tmp_path / "c.json")], base=base)
    assert cfg.distill.gamma == 100.0 and cfg.distill.epochs == base.distill.epochs
    assert cfg.teacher == base.teacher and cfg.offload == base.offload
