from __future__ import annotations

import numpy as np
import pytest

from offloading.comparison import CandidateRow, choose_candidate, cross_validated_auc
from offloading.filters import FILTERS, make_filter
from offloading.fusion import FusionParams, fuse
from offloading.models import CANDIDATES
from offloading.operating_point import accuracy_offload_curve
from offloading.scoring import offloader_scores
from offloading.train import FitSet, OffloaderConfig, OffloaderResult, train_offloader
from shared.bundle import OperatingPoint
from tests.offloading.conftest import synthetic_split


@pytest.fixture(scope="module")
def result(synthetic: dict) -> OffloaderResult:
    return train_offloader(**synthetic, cfg=OffloaderConfig())


def _random_accuracy(result: OffloaderResult, rate: float) -> float:
    # Offloading a random fraction ρ: expected accuracy is the student's blended with the teacher's.
    return (1 - rate) * result.student_test_accuracy + rate * result.teacher_test_accuracy


def test_sl_offloader_beats_random_at_the_same_offload_rate(result: OffloaderResult) -> None:
    assert result.model_name in CANDIDATES
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
    # The default rule aims at the teacher's validation accuracy; on this synthetic data it needs
    # more than the 20% budget, so the best accuracy within the budget is kept, and the manifest says so.
    labels_val = synthetic["labels"]["val"]
    teacher_val = (synthetic["teacher_logits"]["val"].argmax(1) == labels_val).mean()
    assert op["rule"] == "target" and op["target_source"] == "teacher"
    assert op["target_accuracy"] == teacher_val and op["target_reached"] is False
    assert "not reached" in op["reason"] and "budget 0.2" in op["reason"]
    # The shipped model + threshold reproduce the reported test numbers through the filter registry.
    f = make_filter(op, offloader=result.model)
    offload = f.decide(synthetic["student_logits"]["test"])
    assert offload.mean() == result.test_offload_rate
    labels = synthetic["labels"]["test"]
    s_ok = synthetic["student_logits"]["test"].argmax(1) == labels
    t_ok = synthetic["teacher_logits"]["test"].argmax(1) == labels
    assert np.where(offload, t_ok, s_ok).mean() == result.test_accuracy


def test_the_teacher_target_is_reached_at_the_lowest_rate_without_a_budget(synthetic: dict) -> None:
    res = train_offloader(**synthetic, cfg=OffloaderConfig(model="svm", budget=None, candidates=(), fusion=False))
    op = res.operating_point
    labels_val = synthetic["labels"]["val"]
    teacher_val = (synthetic["teacher_logits"]["val"].argmax(1) == labels_val).mean()
    assert op["target_reached"] and op["val_accuracy"] >= teacher_val and op["budget"] is None
    assert op["reason"].startswith("the lowest validation offload rate at which cooperation reaches the teacher's")
    scores = offloader_scores(res.model, synthetic["student_logits"]["val"])
    rates, accs = accuracy_offload_curve(scores, synthetic["student_logits"]["val"].argmax(1) == labels_val,
                                         synthetic["teacher_logits"]["val"].argmax(1) == labels_val)
    assert op["val_offload_rate"] == rates[accs >= teacher_val].min()


def test_the_shipped_score_is_a_calibrated_probability_with_the_base_ranking(
    result: OffloaderResult, synthetic: dict
) -> None:
    val = synthetic["student_logits"]["val"]
    scores = offloader_scores(result.model, val)
    assert np.all((scores >= 0) & (scores <= 1))
    wrong = val.argmax(1) != synthetic["labels"]["val"]
    assert scores.mean() == pytest.approx(wrong.mean(), abs=0.03)  # Platt-scaled on val
    base = offloader_scores(result.model.base, val)
    np.testing.assert_array_equal(np.argsort(base, kind="stable"), np.argsort(scores, kind="stable"))
    assert result.operating_point["score"].startswith("P(student wrong)")


def test_fusion_is_tuned_on_val_and_measured_on_test(result: OffloaderResult, synthetic: dict) -> None:
    assert result.fusion is not None
    entry = result.operating_point["fusion"]
    params = FusionParams.from_mapping(entry)
    assert params == result.fusion.tuning.params
    test = synthetic["student_logits"]["test"]
    labels = synthetic["labels"]["test"]
    offload = make_filter(result.operating_point, offloader=result.model).decide(test)
    fused = fuse(test[offload], synthetic["teacher_logits"]["test"][offload], entry)
    answers = np.where(offload, 0, test.argmax(1))
    answers[offload] = fused
    assert (answers == labels).mean() == result.fusion.test_accuracy
    assert set(result.curves) >= {"sl", "sl_fusion"}


def test_auto_ships_the_candidate_with_the_best_out_of_fold_auc(result: OffloaderResult, synthetic: dict) -> None:
    best = max(result.candidates, key=lambda row: round(row.cv_auc, 4))
    assert result.model_name == best.name
    assert all(0.5 < row.cv_auc <= 1.0 for row in result.candidates)  # every candidate ranks better than chance
    assert "out-of-fold AUC" in result.operating_point["offloader_choice"]
    chosen = next(row for row in result.candidates if row.name == result.model_name)
    assert result.operating_point["offloader_model"] == result.model_name
    assert result.operating_point["val_offload_rate"] == chosen.val_offload_rate
    named = train_offloader(**synthetic, cfg=OffloaderConfig(model="knn", candidates=("svm",), fusion=False))
    assert named.model_name == "knn" and named.operating_point["offloader_choice"] == "configured"


def choose_rows(cv: dict[str, float] | None = None, **rates: tuple[bool, float, float, float]) -> list[CandidateRow]:
    cv = cv or {}
    return [CandidateRow(name, 0.9, 0.9, 0.9, 1.0, 0.1, 1.0, None, auc, rate, acc, reached, cv.get(name, float("nan")))
            for name, (reached, rate, acc, auc) in rates.items()]


def test_choose_candidate_prefers_the_out_of_fold_auc() -> None:
    rates = {"svm": (True, 0.01, 0.99, 0.99), "logreg": (True, 0.05, 0.98, 0.80)}
    assert choose_candidate(choose_rows({"svm": 0.71, "logreg": 0.93}, **rates), "target") == "logreg"
    # Equal to 4 decimals: the validation operating point decides.
    assert choose_candidate(choose_rows({"svm": 0.93001, "logreg": 0.93004}, **rates), "target") == "svm"


def test_cross_validated_auc_scores_ranking_out_of_fold() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    wrong = rng.random(n) < 0.1
    # Two-class "logits": one column carries the signal in `signal`, none does in `noise`.
    signal = np.hstack([np.where(wrong, 1.0, 0.0)[:, None] + rng.normal(0.0, 0.7, (n, 1)),
                        rng.normal(0.0, 1.0, (n, 1))])
    noise = rng.normal(0.0, 1.0, (n, 2))
    train = np.concatenate([np.flatnonzero(wrong), rng.choice(np.flatnonzero(~wrong), 400, replace=False)])
    informative = cross_validated_auc("logreg", signal, wrong, train, seed=0)
    useless = cross_validated_auc("logreg", noise, wrong, train, seed=0)
    assert informative > 0.8 and abs(useless - 0.5) < 0.1
    assert cross_validated_auc("logreg", signal, wrong, train, seed=0) == informative  # seeded
    with pytest.raises(ValueError, match="folds"):
        cross_validated_auc("logreg", signal, wrong, train, folds=1)


def test_choose_candidate_orders_by_the_rules_objective() -> None:
    rows = choose_rows(svm=(True, 0.05, 0.990, 0.90), rf=(True, 0.03, 0.990, 0.80), knn=(False, 0.01, 0.995, 0.99))
    assert choose_candidate(rows, "target") == "rf"  # the lowest rate among those reaching the target
    assert choose_candidate(rows, "budget") == "knn"  # the highest accuracy
    tie = choose_rows(svm=(True, 0.03, 0.99, 0.90), rf=(True, 0.03, 0.99, 0.95))
    assert choose_candidate(tie, "target") == "rf"  # validation AUC breaks the tie
    with pytest.raises(ValueError, match="no candidate"):
        choose_candidate([], "target")


def test_a_fit_set_other_than_train_is_what_qbc_draws_from(synthetic: dict) -> None:
    rng = np.random.default_rng(7)
    logits, _, labels = synthetic_split(1200, rng)
    fit = FitSet(logits, labels, "crossfit")
    res = train_offloader(**synthetic, cfg=OffloaderConfig(candidates=("svm",), fusion=False), fit=fit)
    wrong = logits.argmax(1) != labels
    assert (res.fit_source, res.n_fit, res.n_complex) == ("crossfit", 1200, int(wrong.sum()))
    assert res.operating_point["offloader_fit_source"] == "crossfit"
    # No train split is needed when the fit set is given.
    without_train = {k: {s: v for s, v in d.items() if s != "train"} for k, d in synthetic.items()}
    again = train_offloader(**without_train, cfg=OffloaderConfig(candidates=("svm",), fusion=False), fit=fit)
    assert again.operating_point == res.operating_point


def test_every_candidate_is_compared(result: OffloaderResult, synthetic: dict) -> None:
    assert [row.name for row in result.candidates] == list(CANDIDATES)
    for row in result.candidates:
        assert row.size_kb > 0.5 and row.fit_seconds >= 0 and row.decision_us > 0
        assert 0.65 < row.test_balanced_accuracy <= 1.0  # well above chance (0.5)
        assert 0.75 < row.test_auc <= 1.0
        assert 0.0 <= row.test_accuracy <= 1.0
        # Each reaches the teacher somewhere on its curve (offloading everything always does).
        assert row.test_rate_to_teacher is not None and 0.0 < row.test_rate_to_teacher <= 1.0
    assert [row.name for row in result.qbc_vs_random] == list(CANDIDATES)
    assert all(0.5 < row.random_balanced_accuracy <= 1.0 for row in result.qbc_vs_random)
    # The shipped candidate's row describes the shipped model's base classifier (before Platt scaling).
    svm = next(row for row in result.candidates if row.name == result.model_name)
    labels = synthetic["labels"]["test"]
    wrong = synthetic["student_logits"]["test"].argmax(1) != labels
    predicted = result.model.base.predict(synthetic["student_logits"]["test"]).astype(bool)
    assert svm.test_accuracy == (predicted == wrong).mean()


def test_training_set_is_balanced_by_qbc(result: OffloaderResult) -> None:
    assert result.n_random + result.n_qbc == result.n_complex
    assert result.n_random == int(np.floor(0.5 * result.n_complex + 0.5))


def test_every_filter_has_a_test_curve_and_a_row(result: OffloaderResult) -> None:
    assert set(result.curves) == set(FILTERS) | {"sl_fusion"}
    assert {row.name for row in result.filters} == set(FILTERS)
    edge, cloud = result.curves["edge_only"], result.curves["cloud_only"]
    assert (edge.rates.tolist(), edge.accs.tolist()) == ([0.0], [result.student_test_accuracy])
    assert (cloud.rates.tolist(), cloud.accs.tolist()) == ([1.0], [result.teacher_test_accuracy])
    for name in ("max_softmax", "entropy", "margin", "sl", "sl_fusion"):
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
    assert op["target_accuracy"] == 0.85 and op["budget"] is None and op["target_source"] == "user"
    assert op["val_accuracy"] >= 0.85 and op["target_reached"]
    assert [row.name for row in res.candidates] == ["svm"]


def test_model_outside_the_candidates_is_still_fitted(synthetic: dict) -> None:
    res = train_offloader(**synthetic, cfg=OffloaderConfig(model="knn", candidates=()))
    assert res.candidates == [] and res.model_name == "knn"
    # The default config resamples the verdict against the three confidence filters; 0 draws skips it.
    assert res.reach_bootstrap is not None and res.reach_bootstrap.rivals == ("max_softmax", "entropy", "margin")
    skipped = train_offloader(**synthetic, cfg=OffloaderConfig(model="knn", candidates=(), bootstrap_draws=0))
    assert skipped.reach_bootstrap is None
    scores = offloader_scores(res.model, synthetic["student_logits"]["test"])
    assert scores.shape == (len(synthetic["labels"]["test"]),)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "lr"}, r"unknown offloader model\(s\) \['lr'\]"),
        ({"candidates": ("auto",)}, r"unknown offloader model\(s\) \['auto'\]"),
        ({"candidates": ()}, "model 'auto' chooses among the candidates, but candidates is empty"),
        ({"candidates": ("svm", "mlp")}, r"\['mlp'\]"),
        ({"r": 1.5}, r"r must be in \(0, 1\], got 1.5"),
        ({"committee_size": 0}, "committee_size"),
        ({"rule": "boundary", "target_accuracy": 0.9}, "target_accuracy=0.9 needs rule 'target'"),
        ({"rule": "budget", "budget": None}, "rule 'budget' needs a budget"),
        ({"rule": "best"}, "unknown operating-point rule 'best'"),
        ({"features": "pixels"}, "unknown offloader features 'pixels'"),
        ({"budget": 1.2}, r"budget must be None or in \[0, 1\], got 1.2"),
        ({"bootstrap_draws": -1}, "bootstrap_draws must be >= 0, got -1"),
        ({"confidence_z": -1.0}, "confidence_z must be finite and >= 0, got -1.0"),
    ],
)
def test_config_is_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OffloaderConfig(**kwargs)


def test_bad_inputs_raise(synthetic: dict) -> None:
    cfg = OffloaderConfig(model="svm", candidates=())
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
    svm = next(row for row in result.candidates if row.name == result.model_name)
    assert result.fusion is not None
    assert result.test_summary() == {
        "cooperative_accuracy": result.test_accuracy,
        "offload_rate": result.test_offload_rate,
        "offloader_model": result.model_name,
        "offloader_test_accuracy": svm.test_accuracy,
        "offloader_fit_source": "train",
        "offloader_fit_complex": result.n_complex,
        "cooperative_accuracy_fused": result.fusion.test_accuracy,
    }



def test_boundary_rule_within_a_larger_budget(synthetic: dict) -> None:
    wide = train_offloader(**synthetic, cfg=OffloaderConfig(rule="boundary", budget=0.6, candidates=("svm",)))
    op = wide.operating_point
    assert op["rule"] == "boundary" and op["val_offload_rate"] <= 0.6
    assert "paper's rule" in op["reason"]
    # At the boundary the shipped filter is exactly the SVM's own predict(), calibrated or not.
    logits = synthetic["student_logits"]["test"]
    offload = make_filter(op, offloader=wide.model).decide(logits)
    np.testing.assert_array_equal(offload, wide.model.base.predict(logits).astype(bool))
    assert offload.mean() == wide.test_offload_rate
    by_budget = train_offloader(**synthetic, cfg=OffloaderConfig(rule="budget", budget=0.6, candidates=("svm",)))
    assert by_budget.operating_point["rule"] == "budget"
    # The budget rule maximises validation accuracy, so it is never below the boundary's on val.
    assert by_budget.operating_point["val_accuracy"] >= op["val_accuracy"]
    # With the boundary rule the score filters are cut by the budget: their rows are the same either way.
    rows = {row.name: row for row in wide.filters}
    for row in by_budget.filters:
        if row.name != "sl":
            assert row == rows[row.name]
