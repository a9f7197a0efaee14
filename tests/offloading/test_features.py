from __future__ import annotations

import numpy as np
import pytest

from offloading.features import check_logits, logit_features


def test_features_are_the_logits_as_float64() -> None:
    logits = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], dtype=np.float32)
    feats = logit_features(logits)
    assert feats.dtype == np.float64
    assert feats.shape == (2, 3)
    np.testing.assert_allclose(feats, logits)
    feats[0, 0] = 99.0  # a copy: the caller's logits stay untouched
    assert logits[0, 0] == 1.0


def test_empty_batch_is_allowed() -> None:
    assert logit_features(np.zeros((0, 4))).shape == (0, 4)


@pytest.mark.parametrize(
    ("logits", "message"),
    [
        (np.zeros(5), r"2-D \(N, K\), got shape \(5,\)"),
        (np.zeros((2, 3, 4)), r"2-D \(N, K\), got shape \(2, 3, 4\)"),
        (np.zeros((4, 1)), r"K >= 2\), got K=1"),
        (np.array([[0.0, 1.0], [np.nan, 0.0]]), r"NaN \(first at row 1\)"),
        (np.array([[np.inf, 1.0]]), r"Inf \(first at row 0\)"),
        (np.array([["a", "b"]]), r"numeric"),
    ],
)
def test_bad_logits_raise_naming_the_problem(logits: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        logit_features(logits)
    with pytest.raises(ValueError, match=message):
        check_logits(logits)
