from __future__ import annotations

import numpy as np
import pytest

from offloading.filters import FILTERS, make_filter
from offloading.models import CANDIDATES, offloader_scores
from offloading.train import OffloaderConfig, OffloaderResult, train_offloader
from shared.bundle import OperatingPoint


@pytest.fixture(scope="module")
def result(synthetic: dict) -> OffloaderResult:
    return train_offloader(**synthetic, cfg=OffloaderConfig())


def _random_accuracy(result: OffloaderResult, rate: float) -> float:
    # Offloading a random fraction ρ: expected accuracy is the student's blended with the teacher's.
    return (1 - rate) * result.student_test_accuracy + rate * result.teacher_test_accuracy


def test_sl_offloader_beats_random_at_the_same_offload_rate(result: OffloaderResult) -> None:
    assert result.model_name == "svm"
    assert 0.1 <= result.test_offload_rate <= 0.3
    assert result.test_accuracy > _random_accuracy(result, result.test_offload_rate) + 0.05
    # ... and along the whole curve, not just at the operating point.
    curve = result.curves["sl"]
    inside = (curve.rates > 0.05) & (curve.rates < 0.5)
    assert np.all(curve.accs[inside] > _random_accuracy(result, curve.rates[inside]))


def test_operating_point_is_chosen_on_val_within_budget(result: OffloaderResult, synthetic: dict) -> None:
    op = result.operating_point
    assert OperatingPoint(**op).threshold == op["threshold"]
    assert op["filter"] == "sl" and op["budget"] == 0.2 and op["val_offload_rate"] <= 0.2
    # The SVM's own boundary (decision_function 0) offloads more than 20% of val here, so the budget decides.
    val_scores = offloader_scores(result.model, synthetic["student_logits"]["val"])
    assert (val_scores > 0.0).mean() > 0.2 and op["rule"] == "budget"
    # The shipped model + threshold reproduce the reported test numbers through the filter registry.
    f = make_filter(op, offloader=result.model)
    offload = f.decide(synthetic["student_logits"]["test"])
    assert offload.mean() == result.test_offload_rate
    labels = synthetic["labels"]["test"]
    s_ok = synthetic["student_logits"]["test"].argmax(1) == labels
    t_ok = synthetic["teacher_logits"]["test"].argmax(1) == labels
    assert np.where(offload, t_ok, s_ok).mean() == result.test_accuracy


def test_all_six_candidates_are_compared(result: OffloaderResult, synthetic: dict) -> None:
    assert [row.name for row in result.candidates] == list(CANDIDATES)
    for row in result.candidates:
        assert row.size_kb > 0.5 and row.fit_seconds >= 0
        assert 0.65 < row.test_balanced_accuracy <= 1.0  # well above chance (0.5)
        assert 0.0 <= row.test_accuracy <= 1.0
    assert [row.name for row in result.qbc_vs_random] == list(CANDIDATES)
    assert all(0.5 < row.random_balanced_accuracy <= 1.0 for row in result.qbc_vs_random)
    # The default candidate's row describes the shipped model.
    svm = next(row for row in result.candidates if row.name == "svm")
    labels = synthetic["labels"]["test"]
    wrong = synthetic["student_logits"]["test"].argmax(1) != labels
    predicted = result.model.predict(synthetic["student_logits"]["test"]).astype(bool)
    assert svm.test_accuracy == (predicted == wrong).mean()


def test_training_set_is_balanced_by_qbc(result: OffloaderResult) -> None:
    assert result.n_random + result.n_qbc == result.n_complex
    assert result.n_random == int(np.floor(0.5 * result.n_complex + 0.5))


def test_every_filter_has_a_test_curve_and_a_row(result: OffloaderResult) -> None:
    assert set(result.curves) == set(FILTERS)
    assert {row.name for row in result.filters} == set(FILTERS)
    edge, cloud = result.curves["edge_only"], result.curves["cloud_only"]
    assert (edge.rates.tolist(), edge.accs.tolist()) == ([0.0], [result.student_test_accuracy])
    assert (cloud.rates.tolist(), cloud.accs.tolist()) == ([1.0], [result.teacher_test_accuracy])
    for name in ("max_softmax", "entropy", "margin", "sl"):
        curve = result.curves[name]
        assert curve.rates[0] == 0.0 and curve.rates[-1] == 1.0
        assert np.all(np.diff(curve.rates) > 0)
    for row in result.filters:
        if row.name != "cloud_only":
            assert row.val_offload_rate <= 0.2


def test_target_accuracy_mode(synthetic: dict) -> None:
    cfg = OffloaderConfig(budget=None, target_accuracy=0.85, candidates=("svm",), use_qbc=False)
    res = train_offloader(**synthetic, cfg=cfg)
    op = res.operating_point
    assert op["target_accuracy"] == 0.85 and op["budget"] is None
    assert op["val_accuracy"] >= 0.85 and op["target_reached"]
    assert [row.name for row in res.candidates] == ["svm"]


def test_model_outside_the_candidates_is_still_fitted(synthetic: dict) -> None:
    res = train_offloader(**synthetic, cfg=OffloaderConfig(model="knn", candidates=()))
    assert res.candidates == [] and res.model_name == "knn"
    scores = offloader_scores(res.model, synthetic["student_logits"]["test"])
    assert scores.shape == (len(synthetic["labels"]["test"]),)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "lr"}, r"unknown offloader model\(s\) \['lr'\]"),
        ({"candidates": ("svm", "mlp")}, r"\['mlp'\]"),
        ({"r": 1.5}, r"r must be in \(0, 1\], got 1.5"),
        ({"committee_size": 0}, "committee_size"),
        ({"target_accuracy": 0.9}, "exactly one of budget / target_accuracy"),
    ],
)
def test_config_is_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OffloaderConfig(**kwargs)


def test_bad_inputs_raise(synthetic: dict) -> None:
    cfg = OffloaderConfig(candidates=())
    labels = {k: v for k, v in synthetic["labels"].items() if k != "test"}
    with pytest.raises(ValueError, match=r"labels lacks split\(s\) \['test'\]"):
        train_offloader(**{**synthetic, "labels": labels}, cfg=cfg)
    teacher = {**synthetic["teacher_logits"], "val": synthetic["teacher_logits"]["val"][:-1]}
    with pytest.raises(ValueError, match=r"split 'val'.*must agree"):
        train_offloader(**{**synthetic, "teacher_logits": teacher}, cfg=cfg)
    perfect = {**synthetic["labels"], "train": synthetic["student_logits"]["train"].argmax(1)}
    with pytest.raises(ValueError, match="wrong on 0 of 800 train samples"):
        train_offloader(**{**synthetic, "labels": perfect}, cfg=cfg)


def test_test_summary_feeds_the_bundle_metrics(result: OffloaderResult) -> None:
    svm = next(row for row in result.candidates if row.name == "svm")
    assert result.test_summary() == {
        "cooperative_accuracy": result.test_accuracy,
        "offload_rate": result.test_offload_rate,
        "offloader_model": "svm",
        "offloader_test_accuracy": svm.test_accuracy,
    }



def test_boundary_rule_within_a_larger_budget(synthetic: dict) -> None:
    wide = train_offloader(**synthetic, cfg=OffloaderConfig(budget=0.6, candidates=("svm",)))
    op = wide.operating_point
    assert op["rule"] == "boundary" and op["threshold"] == 0.0 and op["val_offload_rate"] <= 0.6
    # At the boundary the shipped filter is exactly the SVM's own predict().
    logits = synthetic["student_logits"]["test"]
    offload = make_filter(op, offloader=wide.model).decide(logits)
    np.testing.assert_array_equal(offload, wide.model.predict(logits).astype(bool))
    assert offload.mean() == wide.test_offload_rate
    by_budget = train_offloader(**synthetic, cfg=OffloaderConfig(budget=0.6, use_boundary=False,
                                                                 candidates=("svm",)))
    assert by_budget.operating_point["rule"] == "budget"
    # The budget rule maximises validation accuracy, so it is never below the boundary's on val.
    assert by_budget.operating_point["val_accuracy"] >= op["val_accuracy"]
    # Score filters ignore use_boundary: their rows are the same either way.
    rows = {row.name: row for row in wide.filters}
    for row in by_budget.filters:
        if row.name != "sl":
            assert row == rows[row.name]
