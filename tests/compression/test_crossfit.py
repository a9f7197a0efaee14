"""Cross-fitting: every training sample's logits come from a student that was not trained on it."""

from __future__ import annotations

import numpy as np
import pytest

from compression.crossfit import fold_indices, holdout_indices, out_of_fold_logits, with_train_subset
from compression.distill import DistillConfig


def test_folds_partition_the_indices() -> None:
    parts = fold_indices(103, 5, seed=0)
    assert len(parts) == 5 and {len(p) for p in parts} <= {20, 21}
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(103))
    assert all(np.all(np.diff(p) > 0) for p in parts)
    # Seeded: the same seed, the same folds; another seed, other folds.
    assert all(np.array_equal(a, b) for a, b in zip(parts, fold_indices(103, 5, seed=0), strict=True))
    assert not np.array_equal(parts[0], fold_indices(103, 5, seed=1)[0])


def test_holdout_is_a_seeded_disjoint_split() -> None:
    kept, held = holdout_indices(50, 0.2, seed=3)
    assert len(held) == 10 and len(kept) == 40
    np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(50))


@pytest.mark.parametrize(("call", "message"), [
    (lambda: fold_indices(10, 1, seed=0), "at least 2 folds, got 1"),
    (lambda: fold_indices(3, 5, seed=0), "cannot split 3 samples into 5 folds"),
    (lambda: holdout_indices(10, 1.0, seed=0), r"in \(0, 1\), got 1.0"),
    (lambda: holdout_indices(3, 0.01, seed=0), "leaves an empty side"),
])
def test_bad_splits_raise(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_out_of_fold_logits_come_from_students_that_did_not_see_the_sample(digits, tiny_model) -> None:
    from compression.distill import distill
    from compression.surgery import prunable_layers, shrink
    from compression.teacher import predict_logits

    teacher = tiny_model(width=4)
    actions = [0.4] * len(prunable_layers(teacher.arch))
    student = shrink(teacher, actions, inherit=True)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    cfg = DistillConfig(epochs=1, max_steps=3, batch_size=32, device="cpu")
    logits = out_of_fold_logits(student, teacher, digits, cfg, folds=3, seed=0, progress=False)
    n = len(digits.train.y)
    assert logits.shape == (n, len(digits.classes)) and logits.dtype == np.float32
    assert np.all(np.isfinite(logits)) and np.all(np.abs(logits).sum(axis=1) > 0)  # every row filled
    # The starting student is untouched: every fold distils its own copy.
    assert all((before[k] == v).all() for k, v in student.state_dict().items())
    # Fold k's rows are what a copy distilled on the other folds (with seed + k) says about them.
    held = fold_indices(n, 3, seed=0)[1]
    fold_student = shrink(teacher, actions, inherit=True)
    fold_student.load_state_dict(before)
    fit = np.setdiff1d(np.arange(n), held)
    distill(fold_student, teacher, with_train_subset(digits, fit), DistillConfig(
        epochs=1, max_steps=3, batch_size=32, device="cpu", seed=1), progress=False)
    expected = predict_logits(fold_student, digits.train.x[held], digits.mean, digits.std)
    np.testing.assert_allclose(logits[held], expected, rtol=1e-5, atol=1e-5)
