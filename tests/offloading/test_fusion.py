from __future__ import annotations

import numpy as np
import pytest

from offloading.fusion import FusionParams, fuse, fused_log_probabilities
from offloading.fusion_tuning import tune_fusion


def test_hand_example_student_confident_teacher_unsure() -> None:
    student = np.array([[4.0, 0.0, 0.0]])  # p ≈ (0.96, 0.02, 0.02)
    teacher = np.array([[0.0, 0.3, 0.0]])  # p ≈ (0.31, 0.39, 0.31): a weak vote for class 1
    assert fuse(student, teacher, FusionParams(student_weight=0.0)).tolist() == [1]  # the paper's answer
    assert fuse(student, teacher, FusionParams(student_weight=0.5)).tolist() == [0]
    assert fuse(student, teacher, FusionParams(student_weight=1.0)).tolist() == [0]
    # A hot teacher temperature flattens its vote further; a cold one sharpens it past the student's.
    assert fuse(student, teacher, FusionParams(student_weight=0.2, teacher_temperature=0.01)).tolist() == [1]


def test_fused_probabilities_are_the_weighted_average() -> None:
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    params = FusionParams(student_weight=0.3, student_temperature=2.0, teacher_temperature=0.5)
    p_s = np.exp(s / 2.0) / np.exp(s / 2.0).sum(1, keepdims=True)
    p_t = np.exp(t / 0.5) / np.exp(t / 0.5).sum(1, keepdims=True)
    np.testing.assert_allclose(np.exp(fused_log_probabilities(s, t, params)), 0.3 * p_s + 0.7 * p_t)
    # The manifest's mapping (with the tuning's record alongside) gives the same labels.
    record = {"student_weight": 0.3, "student_temperature": 2.0, "teacher_temperature": 0.5, "val_samples": 9}
    np.testing.assert_array_equal(fuse(s, t, record), fuse(s, t, params))
    assert fuse(s, t, params).dtype == np.int64


def test_extreme_logits_stay_finite() -> None:
    s = np.array([[1e4, -1e4], [-1e4, 1e4]])
    t = np.array([[-1e4, 1e4], [-1e4, 1e4]])
    log_p = fused_log_probabilities(s, t, FusionParams(student_weight=0.6))
    assert np.all(np.isfinite(log_p))  # log-space averaging: no exp underflow to log 0
    assert fuse(s, t, FusionParams(student_weight=0.6)).tolist() == [0, 1]


@pytest.mark.parametrize(("call", "message"), [
    (lambda: FusionParams(student_weight=1.5), r"student_weight must be in \[0, 1\], got 1.5"),
    (lambda: FusionParams(teacher_temperature=0.0), "teacher_temperature must be finite and > 0"),
    (lambda: fuse(np.zeros((2, 3)), np.zeros((2, 4)), FusionParams()), "must have one shape"),
    (lambda: fuse(np.full((1, 3), np.nan), np.zeros((1, 3)), FusionParams()), "NaN"),
    (lambda: fuse(np.zeros((1, 3)), np.zeros((1, 3)), {"student_weight": 0.5}), "lack.*student_temperature"),
])
def test_bad_fusion_inputs_raise(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def _complementary(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A teacher that is right but unsure on 80% of samples and confidently wrong on none; a student
    that is right and sure on half of the teacher's mistakes: fusion should fix those."""
    k = 5
    y = rng.integers(0, k, size=n)
    other = (y + 1) % k
    teacher = rng.normal(0.0, 0.1, size=(n, k))
    t_wrong = rng.random(n) < 0.2
    teacher[np.arange(n), np.where(t_wrong, other, y)] += 0.8  # weak votes, right or wrong
    student = rng.normal(0.0, 0.1, size=(n, k))
    s_right = np.where(t_wrong, rng.random(n) < 0.5, rng.random(n) < 0.7)
    student[np.arange(n), np.where(s_right, y, other)] += np.where(s_right, 5.0, 0.5)
    return student, teacher, y


def test_tuning_picks_a_weight_that_helps_when_the_networks_complement() -> None:
    rng = np.random.default_rng(3)
    s_val, t_val, y_val = _complementary(600, rng)
    hardness = rng.random(600)
    tuning = tune_fusion(s_val, t_val, y_val, hardness=hardness, threshold=0.5)
    assert tuning.samples == int((hardness > 0.5).sum())
    assert tuning.params.student_weight > 0.0
    assert tuning.fused_accuracy > tuning.teacher_accuracy
    s_test, t_test, y_test = _complementary(600, rng)
    assert (fuse(s_test, t_test, tuning.params) == y_test).mean() > (t_test.argmax(1) == y_test).mean()
    entry = tuning.to_manifest()
    assert entry["student_weight"] == tuning.params.student_weight and entry["val_samples"] == tuning.samples


def test_tuning_keeps_the_teacher_when_the_student_adds_nothing() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, size=300)
    teacher = rng.normal(size=(300, 4))
    teacher[np.arange(300), y] += 6.0  # always right, confidently
    student = rng.normal(size=(300, 4))  # noise
    tuning = tune_fusion(student, teacher, y, hardness=np.zeros(300), threshold=1.0, min_samples=50)
    assert tuning.samples == 50  # none above the threshold: the 50 hardest instead
    assert tuning.params.student_weight == 0.0
