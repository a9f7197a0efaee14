"""edgecloud.presets: preset sizing, the MNIST size budget and JSON overrides."""

from __future__ import annotations

import pytest

from edgecloud.presets import BuildConfig, apply_overrides, make_config


def test_fast_digits_scales_epochs_for_a_small_dataset() -> None:
    cfg = make_config("fast", dataset="digits", train_size=1_300)
    assert (cfg.teacher.family, cfg.teacher.arch) == ("resnet", {"depth": 18, "width": 16})
    # 10_000 / 1_300 rounds up to 8 epochs per preset epoch.
    assert cfg.teacher.epochs == 4 * 8
    # Issue 11's size target for digits: a student of at most 5% of the teacher's bytes.
    assert cfg.search.size_budget == 0.05
    assert cfg.offload.fold_epochs == cfg.distill.epochs // 2


def test_fast_mnist_sized_has_the_one_percent_budget_and_a_wider_teacher() -> None:
    cfg = make_config("fast", dataset="mnist", train_size=54_000)
    assert (cfg.teacher.arch["width"], cfg.teacher.epochs) == (32, 3)
    assert cfg.search.size_budget == 0.01  # the paper's MNIST student is 0.93% of its teacher
    assert (cfg.distill.epochs, cfg.distill.augment, cfg.offload.folds, cfg.offload.fold_epochs) == (14, True, 5, 2)


def test_paper_preset_is_the_papers_scale() -> None:
    cfg = make_config("paper", dataset="mnist", train_size=54_000, device="cuda")
    assert (cfg.teacher.arch, cfg.device) == ({"depth": 18, "width": 64}, "cuda")
    assert cfg.search.lr == 1e-4  # Algorithm 1's learning rate
    assert cfg.distill.epochs == 60


def test_unknown_preset_names_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown preset 'huge'; choose one of fast, paper"):
        make_config("huge", dataset="digits", train_size=100)


def test_overrides_merge_into_sections_and_round_trip() -> None:
    cfg = apply_overrides(make_config("fast", dataset="digits", train_size=1_300),
                          {"seed": 7, "teacher": {"epochs": 1}, "search": {"size_budget": 0.05}})
    assert (cfg.seed, cfg.teacher.epochs, cfg.teacher.arch["width"], cfg.search.size_budget) == (7, 1, 16, 0.05)
    assert BuildConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(("overrides", "message"), [
    ({"teachr": {}}, "unknown build setting 'teachr'"),
    ({"teacher": {"epoch": 1}}, "unknown teacher setting.s. epoch"),
    ({"search": 3}, "build setting 'search' must be an object"),
])
def test_overrides_refuse_typos_by_name(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_overrides(BuildConfig(), overrides)


def test_fast_cifar10_trains_a_width_32_resnet_with_crop_and_flip() -> None:
    cfg = make_config("fast", dataset="cifar10", train_size=45_000)
    assert (cfg.teacher.family, cfg.teacher.arch, cfg.teacher.augment) == (
        "resnet", {"depth": 18, "width": 32}, "crop-flip")
    # The paper's 675 KB student, as a share of this teacher's 11.2 MB.
    assert cfg.search.size_budget * 4 * 2_797_610 <= 675_000
    # SVHN's digits are not mirror-symmetric: no flip for them.
    assert make_config("paper", dataset="svhn", train_size=60_000).teacher.augment is True


def test_another_family_takes_its_own_preset_knobs_unless_given() -> None:
    base = make_config("fast", dataset="cifar10", train_size=45_000)
    alexnet = apply_overrides(base, {"teacher": {"family": "alexnet"}})
    assert (alexnet.teacher.family, alexnet.teacher.arch) == ("alexnet", {"width": 0.5})
    own = apply_overrides(base, {"teacher": {"family": "mobilenet", "arch": {"width": 0.5, "depth": 0.5}}})
    assert own.teacher.arch == {"width": 0.5, "depth": 0.5}
    with pytest.raises(ValueError, match="unknown model family 'vgg'"):
        apply_overrides(base, {"teacher": {"family": "vgg"}})


def test_old_build_json_teacher_width_and_depth_become_resnet_knobs() -> None:
    cfg = BuildConfig.from_dict({"teacher": {"depth": 34, "width": 8, "epochs": 2}})
    assert (cfg.teacher.family, cfg.teacher.arch, cfg.teacher.epochs) == ("resnet", {"depth": 34, "width": 8}, 2)
    assert apply_overrides(BuildConfig(), {"teacher": {"width": 4}}).teacher.arch == {"depth": 18, "width": 4}


def test_offload_defaults_learn_from_cross_fitted_mistakes_and_aim_at_the_teacher() -> None:
    o = make_config("fast", dataset="digits", train_size=1_300).offload
    assert (o.fit_source, o.rule, o.target_accuracy, o.budget) == ("crossfit", "target", None, 0.2)
    assert (o.features, o.calibrate, o.fusion) == ("confidence", True, True)


def test_build_json_from_before_the_rule_setting_still_loads() -> None:
    raw = BuildConfig().to_dict()
    del raw["offload"]["rule"]
    legacy = {**raw, "offload": {**raw["offload"], "use_boundary": True}}
    assert BuildConfig.from_dict(legacy).offload.rule == "boundary"
    legacy["offload"]["use_boundary"] = False
    assert BuildConfig.from_dict(legacy).offload.rule == "budget"


@pytest.mark.parametrize(("offload", "message"), [
    # The section is offloading.train.OffloaderConfig plus the fit set's settings: its checks are that class's.
    ({"fit_source": "test"}, "unknown offload fit_source 'test'"),
    ({"rule": "best"}, "offload: unknown operating-point rule 'best'"),
    ({"features": "pixels"}, "offload: unknown offloader features 'pixels'"),
    ({"folds": 1}, "folds must be >= 2, got 1"),
    ({"holdout_fraction": 0.0}, r"holdout_fraction must be in \(0, 1\), got 0.0"),
    ({"confidence_z": -0.5}, "offload: confidence_z must be finite and >= 0, got -0.5"),
    ({"confidence_z": float("nan")}, "offload: confidence_z must be finite and >= 0, got nan"),
    ({"bootstrap_draws": -1}, "offload: bootstrap_draws must be >= 0, got -1"),
    ({"rule": "boundary", "target_accuracy": 0.9}, "offload: target_accuracy=0.9 needs rule 'target'"),
])
def test_offload_settings_are_checked(offload: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_overrides(BuildConfig(), {"offload": offload})
