from __future__ import annotations

import logging

import numpy as np
import pytest

from offloading.filters import make_filter
from offloading.operating_point import (
    accuracy_offload_curve,
    choose_operating_point,
    cooperative_accuracy,
    paired_curve,
    threshold_curve,
)
from shared.bundle import OperatingPoint


def test_cooperative_accuracy_hand_check() -> None:
    offload = np.array([True, False, True, False])
    student = np.array([True, True, False, False])
    teacher = np.array([True, False, True, True])
    # take teacher, student, teacher, student -> right, right, right, wrong
    assert cooperative_accuracy(offload, student, teacher) == 0.75
    with pytest.raises(ValueError, match=r"student_correct must have shape \(4,\)"):
        cooperative_accuracy(offload, student[:3], teacher)
    with pytest.raises(ValueError, match="non-empty"):
        cooperative_accuracy(np.zeros(0, dtype=bool), student[:0], teacher[:0])
    with pytest.raises(ValueError, match="bool mask"):
        cooperative_accuracy(offload.astype(int), student, teacher)


def test_curve_hand_check_with_tied_scores() -> None:
    scores = np.array([0.9, 0.1, 0.5, 0.5])
    student = np.array([False, True, False, True])
    teacher = np.array([True, True, True, False])
    rates, accs = accuracy_offload_curve(scores, student, teacher)
    # The two 0.5 scores go together, so offloading exactly 2 samples is not achievable.
    np.testing.assert_allclose(rates, [0.0, 0.25, 0.75, 1.0])
    np.testing.assert_allclose(accs, [0.5, 0.75, 0.75, 0.75])
    thresholds, _, _ = threshold_curve(scores, student, teacher)
    for t, rate, acc in zip(thresholds, rates, accs, strict=True):
        assert (scores > t).mean() == rate
        assert cooperative_accuracy(scores > t, student, teacher) == acc


def _val(synthetic: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    logits = synthetic["student_logits"]["val"]
    labels = synthetic["labels"]["val"]
    student = logits.argmax(1) == labels
    teacher = synthetic["teacher_logits"]["val"].argmax(1) == labels
    return make_filter("max_softmax").scores(logits), student, teacher


@pytest.mark.parametrize("budget", [0.0, 0.05, 0.2, 0.5, 1.0])
def test_budget_is_respected_and_accuracy_maximised(synthetic: dict, budget: float) -> None:
    scores, student, teacher = _val(synthetic)
    op = choose_operating_point(scores, student, teacher, filter_name="max_softmax", rule="budget", budget=budget)
    # The manifest's OperatingPoint fields (+ target_reached, reason), so the bundle can be built from it.
    assert OperatingPoint(**op).model_dump() == op and op["rule"] == "budget"
    assert op["filter"] == "max_softmax" and op["budget"] == budget and op["target_accuracy"] is None
    assert op["val_offload_rate"] <= budget
    rates, accs = accuracy_offload_curve(scores, student, teacher)
    assert op["val_accuracy"] == accs[rates <= budget].max()
    # The stored threshold reproduces the stored numbers.
    offload = scores > op["threshold"]
    assert offload.mean() == op["val_offload_rate"]
    assert cooperative_accuracy(offload, student, teacher) == op["val_accuracy"]


def test_target_accuracy_is_hit_at_the_lowest_rate(synthetic: dict) -> None:
    scores, student, teacher = _val(synthetic)
    target = 0.85
    op = choose_operating_point(scores, student, teacher, filter_name="max_softmax", rule="target",
                                target_accuracy=target)
    assert op["val_accuracy"] >= target and op["target_reached"] and op["target_source"] == "user"
    rates, accs = accuracy_offload_curve(scores, student, teacher)
    assert op["val_offload_rate"] == rates[accs >= target].min()
    assert student.mean() < target  # the target needed offloading at all


def test_unreachable_target_gives_the_best_accuracy_with_a_warning(
    synthetic: dict, caplog: pytest.LogCaptureFixture
) -> None:
    scores, student, teacher = _val(synthetic)
    with caplog.at_level(logging.WARNING, logger="offloading.operating_point"):
        op = choose_operating_point(scores, student, teacher, filter_name="max_softmax", rule="target",
                                    target_accuracy=1.0)
    assert op["target_reached"] is False
    _, accs = accuracy_offload_curve(scores, student, teacher)
    assert op["val_accuracy"] == accs.max() < 1.0
    assert "unreachable" in caplog.text


def test_the_default_target_is_the_teachers_accuracy_capped_by_the_budget(synthetic: dict) -> None:
    scores, student, teacher = _val(synthetic)
    rates, accs = accuracy_offload_curve(scores, student, teacher)
    op = choose_operating_point(scores, student, teacher, filter_name="max_softmax", rule="target")
    assert op["target_accuracy"] == teacher.mean() and op["target_source"] == "teacher"
    assert op["target_reached"] and op["val_offload_rate"] == rates[accs >= teacher.mean()].min()
    assert "reaches the teacher's validation accuracy" in op["reason"] and "no budget" in op["reason"]
    # A budget below that rate caps it: the best accuracy within the budget, flagged as not reached.
    capped = choose_operating_point(scores, student, teacher, filter_name="max_softmax", rule="target",
                                    budget=op["val_offload_rate"] / 2)
    assert capped["target_reached"] is False and capped["val_offload_rate"] <= op["val_offload_rate"] / 2
    assert capped["val_accuracy"] == accs[rates <= op["val_offload_rate"] / 2].max()


def test_rules_and_their_settings_are_checked() -> None:
    args = (np.array([0.1, 0.2]), np.array([True, False]), np.array([True, True]))
    with pytest.raises(ValueError, match="rule 'budget' needs a budget"):
        choose_operating_point(*args, filter_name="sl", rule="budget")
    with pytest.raises(ValueError, match="'boundary' needs the classifier's decision boundary"):
        choose_operating_point(*args, filter_name="sl", rule="boundary", budget=0.2)
    with pytest.raises(ValueError, match="only used by rule 'target', not 'budget'"):
        choose_operating_point(*args, filter_name="sl", rule="budget", budget=0.2, target_accuracy=0.9)
    with pytest.raises(ValueError, match="'best' is not a valid Rule"):
        choose_operating_point(*args, filter_name="sl", rule="best", budget=0.2)
    with pytest.raises(ValueError, match=r"budget must be in \[0, 1\], got 1.5"):
        choose_operating_point(*args, filter_name="sl", rule="budget", budget=1.5)
    with pytest.raises(ValueError, match="NaN or Inf"):
        choose_operating_point(np.array([np.nan, 0.2]), *args[1:], filter_name="sl", rule="budget", budget=0.2)


def test_constant_scores_offload_all_or_nothing() -> None:
    scores = np.full(4, 0.3)
    student = np.array([True, False, False, True])
    teacher = np.ones(4, dtype=bool)
    op = choose_operating_point(scores, student, teacher, filter_name="entropy", rule="budget", budget=0.9)
    assert op["val_offload_rate"] == 0.0 and not (scores > op["threshold"]).any()
    op = choose_operating_point(scores, student, teacher, filter_name="entropy", rule="budget", budget=1.0)
    assert op["val_offload_rate"] == 1.0 and op["threshold"] < 0.3 and op["val_accuracy"] == 1.0


def test_boundary_within_budget_is_kept() -> None:
    scores = np.array([2.0, 0.5, -0.1, -1.0, -2.0, -3.0, 0.0, 1.0, -0.5, -4.0])
    student = np.array([False, False, True, True, True, True, True, False, True, True])
    teacher = np.ones(10, dtype=bool)
    op = choose_operating_point(scores, student, teacher, filter_name="sl", rule="boundary", budget=0.5,
                                boundary=0.0)
    assert OperatingPoint(**op).model_dump() == op
    # score > 0: 2.0, 0.5 and 1.0 (0.0 itself stays, as sklearn's predict keeps it negative)
    assert op["rule"] == "boundary" and op["threshold"] == 0.0 and op["val_offload_rate"] == 0.3
    assert op["val_accuracy"] == 1.0 and op["budget"] == 0.5


def test_boundary_over_budget_falls_back_to_the_budget_rule(caplog: pytest.LogCaptureFixture) -> None:
    scores = np.linspace(1.0, -1.0, 10)  # 5 of 10 above the boundary 0
    student = np.array([False, True, False, True, True, True, True, True, True, True])
    teacher = np.ones(10, dtype=bool)
    with caplog.at_level(logging.INFO, logger="offloading.operating_point"):
        op = choose_operating_point(scores, student, teacher, filter_name="sl", rule="boundary", budget=0.3,
                                    boundary=0.0)
    assert op["rule"] == "budget" and op["val_offload_rate"] <= 0.3
    assert "decision boundary offloads more than the budget" in op["reason"]
    assert op["val_accuracy"] == 1.0 and op["val_offload_rate"] == 0.3  # the first three fix both errors
    assert "more than the budget" in caplog.text
    by_budget = choose_operating_point(scores, student, teacher, filter_name="sl", rule="budget", budget=0.3)
    assert by_budget["rule"] == "budget" and by_budget["threshold"] == op["threshold"]


def test_boundary_needs_a_finite_value_and_without_a_budget_is_uncapped() -> None:
    args = (np.array([0.1, -0.2]), np.array([True, False]), np.array([True, True]))
    with pytest.raises(ValueError, match="boundary must be finite"):
        choose_operating_point(*args, filter_name="sl", rule="boundary", budget=0.5, boundary=float("nan"))
    op = choose_operating_point(*args, filter_name="sl", rule="boundary", boundary=-1.0)
    assert op["rule"] == "boundary" and op["val_offload_rate"] == 1.0 and op["budget"] is None


def test_paired_curve_counts_wins_and_losses_against_the_teacher() -> None:
    scores = np.array([0.9, 0.1, 0.5, 0.5])
    student = np.array([False, True, False, True])
    teacher = np.array([True, True, True, False])
    curve = paired_curve(scores, student, teacher)
    # Offloading none: the student beats the teacher on sample 3 and loses on 0 and 2.
    np.testing.assert_array_equal(curve.wins, [1, 1, 0, 0])
    np.testing.assert_array_equal(curve.losses, [2, 1, 0, 0])
    np.testing.assert_allclose(curve.accs, [0.5, 0.75, 0.75, 0.75])  # = teacher + (b − c) / N
    # z = 0: cooperation ≥ teacher (b ≥ c); z = 1 also needs b − c ≥ √(b + c): only the cuts with b = c = 0.
    np.testing.assert_array_equal(curve.confident(0.0), [False, True, True, True])
    np.testing.assert_array_equal(curve.confident(1.0), [False, False, True, True])


def test_confidence_z_asks_validation_for_a_margin_over_the_teacher() -> None:
    # Student and teacher tie on validation (8 of 10 each), wrong on different samples; the
    # offloader ranks the student's two mistakes first and third.
    student = np.array([False, True, False] + [True] * 7)
    teacher = np.array([True, False, True] + [True] * 5 + [False, True])
    scores = np.linspace(1.0, 0.1, 10)
    plain = choose_operating_point(scores, student, teacher, filter_name="sl", rule="target")
    assert plain["val_offload_rate"] == 0.0 and plain["confidence_z"] == 0.0  # 8 of 10 is the teacher's 8
    sure = choose_operating_point(scores, student, teacher, filter_name="sl", rule="target", confidence_z=1.0)
    # Offloading the top 1: b = 2 (samples 1, 8), c = 1 (sample 2), 1 < √3. The top 2 give sample 1
    # to the teacher, who is wrong on it: b = c = 1. The top 3: b = 1 (sample 8), c = 0, 1 ≥ √1.
    assert sure["val_offload_rate"] == 0.3 and sure["val_accuracy"] == 0.9 and sure["target_reached"]
    assert "with confidence z = 1" in sure["reason"] and OperatingPoint(**sure).confidence_z == 1.0
    # A user's target of 0.85: offloading sample 0 gives 0.9, whose bound with z = 0.5 is
    # 0.9 − 0.5·√(0.9·0.1/10) = 0.853; no rate beats 0.9, so with z = 1 (bound 0.805) it is not reached.
    user = choose_operating_point(scores, student, teacher, filter_name="sl", rule="target", target_accuracy=0.85,
                                  confidence_z=0.5, budget=0.5)
    assert user["val_offload_rate"] == 0.1 and user["target_source"] == "user" and user["target_reached"]
    unsure = choose_operating_point(scores, student, teacher, filter_name="sl", rule="target", target_accuracy=0.85,
                                    confidence_z=1.0, budget=0.5)
    assert not unsure["target_reached"]
    with pytest.raises(ValueError, match="confidence_z must be finite and >= 0, got -1"):
        choose_operating_point(scores, student, teacher, filter_name="sl", rule="target", confidence_z=-1.0)
