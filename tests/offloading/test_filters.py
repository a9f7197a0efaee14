from __future__ import annotations

import numpy as np
import pytest

from offloading.filters import FILTERS, OffloadFilter, RandomFilter, make_filter
from offloading.models import make_model
from shared.bundle import OperatingPoint

PEAKED = [8.0, 0.0, 0.0]
FLAT = [0.0, 0.0, 0.0]
TWO_WAY = [3.0, 3.0, -3.0]
LOGITS = np.array([PEAKED, FLAT, TWO_WAY])


@pytest.fixture(scope="module")
def offloader() -> object:
    """An SVM offloader that learned "flat logits = student wrong"."""
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 0.3, size=(60, 3))
    x[:30, 0] += 6.0  # peaked rows: right
    return make_model("svm").fit(x, np.r_[np.zeros(30), np.ones(30)].astype(int))


def test_registry_names() -> None:
    assert set(FILTERS) == {"max_softmax", "entropy", "margin", "random", "edge_only", "cloud_only", "sl"}


def test_max_softmax_offloads_the_flat_sample() -> None:
    f = make_filter("max_softmax", threshold=0.6)
    scores = f.scores(LOGITS)
    np.testing.assert_allclose(scores[1], 2 / 3)  # 1 − 1/3
    np.testing.assert_allclose(scores[0], 1 - np.exp(8) / (np.exp(8) + 2))
    np.testing.assert_array_equal(f.decide(LOGITS), [False, True, False])  # two-way tie scores just over 0.5


def test_entropy_is_ln_k_for_flat_logits() -> None:
    scores = make_filter("entropy").scores(LOGITS)
    np.testing.assert_allclose(scores[1], np.log(3))
    assert scores[0] < scores[2] < scores[1]
    np.testing.assert_array_equal(make_filter("entropy", threshold=0.5).decide(LOGITS), [False, True, True])


def test_margin_scores_minus_top1_top2_gap() -> None:
    scores = make_filter("margin").scores(LOGITS)
    np.testing.assert_allclose(scores[1:], [0.0, 0.0], atol=1e-12)  # flat and two-way: no gap
    p = np.exp(8) / (np.exp(8) + 2)
    np.testing.assert_allclose(scores[0], -(p - (1 - p) / 2))
    np.testing.assert_array_equal(make_filter("margin", threshold=-0.1).decide(LOGITS), [False, True, True])


def test_large_logits_do_not_overflow() -> None:
    big = np.array([[1000.0, 0.0], [1000.0, 1000.0]])
    for name in ("max_softmax", "entropy", "margin"):
        assert np.all(np.isfinite(make_filter(name).scores(big)))


def test_random_filter_rate_and_seed() -> None:
    logits = np.zeros((20_000, 2))
    decisions = RandomFilter.with_rate(0.3, seed=5).decide(logits)
    assert abs(decisions.mean() - 0.3) < 0.015
    np.testing.assert_array_equal(decisions, RandomFilter.with_rate(0.3, seed=5).decide(logits))
    assert not np.array_equal(decisions, RandomFilter.with_rate(0.3, seed=6).decide(logits))
    assert make_filter("random", threshold=0.7, seed=5).decide(logits).tolist() == decisions.tolist()
    with pytest.raises(ValueError, match="probability"):
        RandomFilter.with_rate(1.5)


def test_edge_only_and_cloud_only() -> None:
    assert not make_filter("edge_only").decide(LOGITS).any()
    assert make_filter("cloud_only").decide(LOGITS).all()
    assert make_filter("edge_only", threshold=-1e9).decide(LOGITS).tolist() == [False] * 3  # ignores it


def test_sl_filter_uses_the_offloader(offloader: object) -> None:
    f = make_filter("sl", offloader=offloader, threshold=0.0)
    np.testing.assert_allclose(f.scores(LOGITS), offloader.decision_function(LOGITS))
    np.testing.assert_array_equal(f.decide(LOGITS)[:2], [False, True])
    with pytest.raises(ValueError, match="needs a fitted offloader"):
        make_filter("sl", threshold=0.0)
    with pytest.raises(ValueError, match="neither decision_function nor predict_proba"):
        make_filter("sl", offloader=object())


@pytest.mark.parametrize("name", sorted(FILTERS))
@pytest.mark.parametrize(
    ("logits", "message"),
    [
        (np.zeros(3), "2-D"),
        (np.zeros((3, 1)), "K=1"),
        (np.array([[0.0, np.nan]]), "NaN"),
        (np.array([[0.0, -np.inf]]), "Inf"),
    ],
)
def test_every_filter_rejects_bad_logits(name: str, logits: np.ndarray, message: str, offloader: object) -> None:
    f = make_filter(name, threshold=0.5, offloader=offloader)
    with pytest.raises(ValueError, match=message):
        f.decide(logits)
    with pytest.raises(ValueError, match=message):
        f.scores(logits)


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_every_filter_answers_an_empty_batch_with_an_empty_mask(name: str, offloader: object) -> None:
    f = make_filter(name, threshold=0.5, offloader=offloader)
    assert isinstance(f, OffloadFilter)
    mask = f.decide(np.zeros((0, 3)))
    assert mask.shape == (0,) and mask.dtype == bool
    assert f.scores(np.zeros((0, 3))).shape == (0,)


def test_deciding_needs_a_threshold() -> None:
    with pytest.raises(ValueError, match="'entropy' has no threshold"):
        make_filter("entropy").decide(LOGITS)
    with pytest.raises(ValueError, match="must be finite"):
        make_filter("margin", threshold=float("nan"))


def test_make_filter_from_an_operating_point(offloader: object) -> None:
    op = OperatingPoint(filter="max_softmax", threshold=0.5, budget=0.2, val_offload_rate=0.2, val_accuracy=0.9)
    f = make_filter(op)
    assert f.name == "max_softmax" and f.threshold == 0.5
    assert make_filter(op, threshold=0.9).threshold == 0.9  # the edge's override wins
    g = make_filter({"filter": "sl", "threshold": 0.0}, offloader=offloader)
    np.testing.assert_array_equal(g.decide(LOGITS)[:2], [False, True])
    with pytest.raises(ValueError, match=r"unknown offload filter 'nope'.*'max_softmax'"):
        make_filter("nope")
    with pytest.raises(ValueError, match="unknown offload filter None"):
        make_filter(object())
