"""Train the SL offloader end to end (Zhang et al. §V, Algorithm 2; Tables III-IV; Figs. 3 and 5).

Input: the student's and teacher's logits and the labels on train / val / test. The train split
yields the offloader's training set (QBC-balanced), val the operating point, test every reported
number. Nothing here needs the networks themselves, so it runs without torch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
from pydantic import model_validator

from offloading.calibration import CalibrationError, fit_temperature, platt_calibrate
from offloading.comparison import (
    CandidateRow,
    Curve,
    FilterRow,
    SelectionRow,
    accuracies,
    auc,
    choose_candidate,
    cross_validated_auc,
    decision_us,
    rate_to_reach,
)
from offloading.features import FEATURE_KINDS, check_logits, feature_matrix
from offloading.filters import CONFIDENCE_FILTERS, FILTERS, CloudOnlyFilter, EdgeOnlyFilter, make_filter
from offloading.fusion import fuse
from offloading.fusion_tuning import FusionTuning, tune_fusion
from offloading.models import CANDIDATES, decision_boundary, make_model, pickled_kb
from offloading.operating_point import Rule, accuracy_offload_curve, choose_operating_point
from offloading.qbc import qbc_select, random_select
from offloading.resampling import ReachBootstrap, bootstrap_reach
from offloading.scoring import Estimator, PlattCalibrated, offloader_scores
from shared.run_config import ConfigModel

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
AUTO = "auto"  # OffloaderConfig.model: pick the candidate by its out-of-fold AUC on the fit set


class OffloaderConfig(ConfigModel):
    """The SL offloader's training (Algorithm 2), its operating point and fusion."""

    model: str = "auto"
    """the offloader that ships in the bundle: a name in models.CANDIDATES, or "auto" for the candidate
    that ranks "student wrong" best out of fold on the fit set (see `comparison.choose_candidate`)"""
    r: float = 0.5
    """Algorithm 2: share of the M normal samples drawn at random; the rest are picked by QBC"""
    committee_size: int = 3
    """Algorithm 2: QBC committee size L"""
    use_qbc: bool = True
    """train on the QBC selection (True) or on M random normal samples (False)"""
    rule: str = Rule.TARGET.value
    """how the threshold is chosen on val (operating_point.Rule): "target" (the lowest offload rate
    reaching target_accuracy, by default the teacher's val accuracy), "boundary" (the model's own cut,
    the paper's rule) or "budget" (the best val accuracy within the budget)"""
    budget: float | None = 0.2
    """largest fraction of samples offloaded; caps every rule (None: no cap, not with rule "budget")"""
    target_accuracy: float | None = None
    """rule "target": the cooperative val accuracy to reach; None means the teacher's val accuracy"""
    confidence_z: float = 0.0
    """rule "target": how many standard errors validation must clear the target by (for every filter
    alike; operating_point.PairedCurve.confident); 0 trusts the validation estimate alone"""
    features: str = "confidence"
    """offloader input: "confidence" (sorted logits + the filters' max probability, margin and
    entropy, at T = 1 and at the student's calibrated T), "sorted" logits, or "raw" logits"""
    calibrate: bool = True
    """Platt-scale the shipped offloader's score on val into P(student wrong) (ranking unchanged)"""
    fusion: bool = True
    """tune edge-cloud fusion (fusion.py) on val and report it; the manifest records its parameters"""
    fusion_min_samples: int = 100
    """fusion's weight is tuned on the offloaded val samples, or on at least this many hardest ones"""
    seed: int = 0
    """seeds the sampling, the committee and every model"""
    candidates: tuple[str, ...] = tuple(CANDIDATES)
    """models compared in the candidate and QBC-vs-random tables"""
    bootstrap_draws: int = 500
    """paired bootstrap draws of the test split for the offloader-against-filters verdict
    (resampling.py); 0 skips it"""

    @model_validator(mode="after")
    def _check(self) -> Self:
        unknown = [name for name in (self.model, *self.candidates) if name not in (*CANDIDATES, AUTO)]
        if unknown or AUTO in self.candidates:
            raise ValueError(f"unknown offloader model(s) {unknown or [AUTO]}; choose from {sorted(CANDIDATES)}"
                             f"{' (or model auto)' if not unknown else ''}")
        if self.model == AUTO and not self.candidates:
            raise ValueError("model 'auto' chooses among the candidates, but candidates is empty")
        if self.features not in FEATURE_KINDS:
            raise ValueError(f"unknown offloader features {self.features!r}; choose one of {FEATURE_KINDS}")
        if not 0.0 < self.r <= 1.0:
            raise ValueError(f"r must be in (0, 1], got {self.r}")
        if self.committee_size < 1:
            raise ValueError(f"committee_size must be >= 1, got {self.committee_size}")
        if self.rule not in {r.value for r in Rule}:
            raise ValueError(f"unknown operating-point rule {self.rule!r}; choose one of {[r.value for r in Rule]}")
        if self.rule == Rule.BUDGET and self.budget is None:
            raise ValueError("rule 'budget' needs a budget (got budget=None)")
        if self.target_accuracy is not None and self.rule != Rule.TARGET:
            raise ValueError(f"target_accuracy={self.target_accuracy} needs rule 'target', not {self.rule!r}")
        for name in ("budget", "target_accuracy"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be None or in [0, 1], got {value}")
        if not (np.isfinite(self.confidence_z) and self.confidence_z >= 0.0):
            raise ValueError(f"confidence_z must be finite and >= 0, got {self.confidence_z}")
        if self.bootstrap_draws < 0:
            raise ValueError(f"bootstrap_draws must be >= 0, got {self.bootstrap_draws}")
        if self.fusion_min_samples < 1:
            raise ValueError(f"fusion_min_samples must be >= 1, got {self.fusion_min_samples}")
        return self


@dataclass(frozen=True)
class FusionResult:
    """Edge-cloud fusion at the SL operating point (fusion.py), tuned on val, measured on test."""

    tuning: FusionTuning
    test_accuracy: float
    """cooperation on test when offloaded samples take the fused answer"""
    test_offloaded_teacher_accuracy: float
    """the teacher's accuracy on the test samples offloaded at the operating point"""
    test_offloaded_fused_accuracy: float
    """the fused answers' accuracy on those samples"""


@dataclass
class OffloaderResult:
    model: Estimator
    """the fitted offloader that ships as offloader.pkl"""
    model_name: str
    model_test_accuracy: float
    """accuracy of the shipped model's base classifier at predicting "student wrong" on test"""
    operating_point: dict[str, Any]
    """the SL filter's threshold, chosen on val: shared.bundle.OperatingPoint's fields + extras"""
    candidates: list[CandidateRow]
    qbc_vs_random: list[SelectionRow]
    filters: list[FilterRow]
    """every filter at the same rule and budget / target, including sl"""
    curves: dict[str, Curve]
    """per filter, on test; edge_only / cloud_only are single points; "sl_fusion" with fusion"""
    candidate_curves: dict[str, Curve]
    """per candidate model, on test (the shipped one's is curves["sl"])"""
    test_offload_rate: float
    test_accuracy: float
    student_test_accuracy: float
    teacher_test_accuracy: float
    n_complex: int
    n_random: int
    n_qbc: int
    fit_source: str = "train"
    """where the offloader's training logits came from (see FitSet)"""
    n_fit: int = 0
    """samples in the population the QBC set was drawn from"""
    temperature: float = 1.0
    """the student's calibration temperature, fitted on the fit set (features use it)"""
    fusion: FusionResult | None = None
    reach_bootstrap: ReachBootstrap | None = None
    """the shipped offloader's test offload to reach the teacher against the confidence filters',
    over bootstrap draws of the test split (None with bootstrap_draws 0)"""
    config: OffloaderConfig = field(default_factory=OffloaderConfig)

    def test_summary(self) -> dict[str, Any]:
        """The build's headline offloading numbers on test, for the bundle's metrics."""
        summary = {
            "cooperative_accuracy": self.test_accuracy,
            "offload_rate": self.test_offload_rate,
            "offloader_model": self.model_name,
            "offloader_test_accuracy": self.model_test_accuracy,
            "offloader_fit_source": self.fit_source,
            "offloader_fit_complex": self.n_complex,
        }
        if self.fusion is not None:
            summary["cooperative_accuracy_fused"] = self.fusion.test_accuracy
        return summary


@dataclass(frozen=True)
class FitSet:
    """The population the offloader learns "student wrong" from (Algorithm 2 draws from it).

    The paper's is the final student's logits on its own training split (source "train"). Realistic
    mistakes come from logits the student did not fit: "crossfit" (out-of-fold students) or
    "holdout" (a slice of train the final student never saw), see compression/crossfit.py.
    """

    logits: np.ndarray
    """(N, K) student logits"""
    labels: np.ndarray
    """(N,) true classes"""
    source: str = "train"
    """a name for reports: train, crossfit or holdout"""


def _check_inputs(
    student_logits: dict[str, np.ndarray], teacher_logits: dict[str, np.ndarray], labels: dict[str, np.ndarray],
    *, with_train: bool,
) -> None:
    need = {"student_logits": ("val", "test"), "teacher_logits": ("val", "test"), "labels": ("val", "test")}
    if with_train:  # the paper's fit set: the student's own train logits
        need = {**need, "student_logits": SPLITS, "labels": SPLITS}
    for what, d in (("student_logits", student_logits), ("teacher_logits", teacher_logits), ("labels", labels)):
        missing = [s for s in need[what] if s not in d]
        if missing:
            raise ValueError(f"{what} lacks split(s) {missing}; need {list(need[what])}")
    for split in SPLITS if with_train else ("val", "test"):
        s = check_logits(student_logits[split])
        y = np.asarray(labels[split])
        if len(s) == 0:
            raise ValueError(f"split {split!r} is empty")
        t_shape = check_logits(teacher_logits[split]).shape if split in teacher_logits else s.shape
        if t_shape != s.shape or y.shape != (len(s),):
            raise ValueError(
                f"split {split!r}: student logits {s.shape}, teacher logits {t_shape} and labels {y.shape} "
                "must agree on N and K"
            )


def _calibrated(base: Estimator, logits_val: np.ndarray, wrong_val: np.ndarray, fit: FitSet) -> Estimator:
    """Platt scaling on val (on the fit set when val lacks a wrong or a right sample).

    When the score cannot be calibrated (it ranks right samples above wrong ones on val, which a
    useless offloader on a tiny dataset can do), the base model ships uncalibrated, with a warning:
    its ranking, and so every operating point, is the same either way.
    """
    boundary = decision_boundary(base)
    try:
        if 0 < wrong_val.sum() < len(wrong_val):
            return platt_calibrate(base, logits_val, wrong_val, base_boundary=boundary)
        log.warning("val has %d wrong of %d samples: Platt-scaling the offloader on its %s fit set instead",
                    int(wrong_val.sum()), len(wrong_val), fit.source)
        return platt_calibrate(base, fit.logits, fit.logits.argmax(1) != fit.labels, base_boundary=boundary)
    except CalibrationError as err:
        log.warning("offloader score left uncalibrated: %s", err)
        return base


@dataclass(frozen=True)
class _Splits:
    """What every step below reads: val and test logits, and who is right where."""

    val_x: np.ndarray
    test_x: np.ndarray
    s_ok: dict[str, np.ndarray]
    """per split, the student is right"""
    t_ok: dict[str, np.ndarray]
    """per split, the teacher is right"""

    @property
    def wrong(self) -> dict[str, np.ndarray]:
        return {s: ~ok for s, ok in self.s_ok.items()}


def _evaluate_candidate(name: str, by_kind: dict[str, tuple[Estimator, float]], main_kind: str, d: _Splits,
                        cfg: OffloaderConfig, shipped: Estimator, cv_auc: float
                        ) -> tuple[CandidateRow, SelectionRow, Curve]:
    """One candidate's Tables III-IV row (on test, plus its validation operating point), its Fig. 3 row
    and its test curve."""
    model, seconds = by_kind[main_kind]
    wrong = d.wrong
    scores, val_scores = offloader_scores(model, d.test_x), offloader_scores(model, d.val_x)
    val_op = choose_operating_point(
        val_scores, d.s_ok["val"], d.t_ok["val"], filter_name="sl", rule=cfg.rule, budget=cfg.budget,
        target_accuracy=cfg.target_accuracy, boundary=decision_boundary(model) if cfg.rule == Rule.BOUNDARY else None,
        confidence_z=cfg.confidence_z if cfg.rule == Rule.TARGET else 0.0)
    acc, bacc = accuracies(model, d.test_x, wrong["test"])
    curve = Curve(*accuracy_offload_curve(scores, d.s_ok["test"], d.t_ok["test"]))
    row = CandidateRow(name, acc, bacc, auc(scores, wrong["test"]), pickled_kb(shipped), seconds,
                       decision_us(shipped, d.test_x), rate_to_reach(curve, float(d.t_ok["test"].mean())),
                       auc(val_scores, wrong["val"]), val_op["val_offload_rate"], val_op["val_accuracy"],
                       bool(val_op["target_reached"]), cv_auc)
    q, r = by_kind["qbc"][0], by_kind["random"][0]
    (q_acc, q_bacc), (r_acc, r_bacc) = accuracies(q, d.test_x, wrong["test"]), accuracies(r, d.test_x, wrong["test"])
    selection = SelectionRow(name, q_acc, r_acc, q_bacc, r_bacc, auc(offloader_scores(q, d.test_x), wrong["test"]),
                             auc(offloader_scores(r, d.test_x), wrong["test"]))
    log.info("candidate %s: fit-set CV AUC %.4f, test AUC %.4f, rate to teacher %s, %.1f KB, %.1f µs/sample", name,
             row.cv_auc, row.test_auc, row.test_rate_to_teacher, row.size_kb, row.decision_us)
    return row, selection, curve


def _cut_filters(model: Estimator, d: _Splits, cfg: OffloaderConfig
                 ) -> tuple[list[FilterRow], dict[str, Curve], dict[str, Any], np.ndarray, dict[str, np.ndarray]]:
    """Every filter cut on val by the configured rule and measured on test (Fig. 5).

    Returns the rows, the test curves, the SL operating point, the SL scores on val, and every
    score filter's scores on test (SL included).
    """
    teacher_test = float(d.t_ok["test"].mean())
    rows: list[FilterRow] = []
    curves: dict[str, Curve] = {}
    sl: tuple[dict[str, Any], np.ndarray] | None = None
    scores_test: dict[str, np.ndarray] = {}
    for name, cls in FILTERS.items():
        if cls in (EdgeOnlyFilter, CloudOnlyFilter):
            filt = make_filter(name)
            off_val, off_test = filt.decide(d.val_x), filt.decide(d.test_x)
            val_acc = float(np.where(off_val, d.t_ok["val"], d.s_ok["val"]).mean())
            rate, acc = float(off_test.mean()), float(np.where(off_test, d.t_ok["test"], d.s_ok["test"]).mean())
            curves[name] = Curve(np.array([rate]), np.array([acc]))
            rows.append(FilterRow(name, None, float(off_val.mean()), val_acc, rate, acc,
                                  rate_to_reach(curves[name], teacher_test)))
            continue
        # Separate streams for val and test, so that random's test draws are not its val draws.
        val_scores = make_filter(name, offloader=model, seed=cfg.seed).scores(d.val_x)
        # Only the SL offloader has a boundary of its own; with that rule the score filters are cut by budget.
        rule = cfg.rule
        if cfg.rule == Rule.BOUNDARY and name != "sl":
            rule = Rule.BUDGET if cfg.budget is not None else Rule.TARGET
        chosen = choose_operating_point(
            val_scores, d.s_ok["val"], d.t_ok["val"], filter_name=name, rule=rule, budget=cfg.budget,
            target_accuracy=cfg.target_accuracy, boundary=decision_boundary(model) if rule == Rule.BOUNDARY else None,
            confidence_z=cfg.confidence_z if rule == Rule.TARGET else 0.0)
        test_scores = scores_test[name] = make_filter(chosen, offloader=model, seed=cfg.seed + 1).scores(d.test_x)
        off_test = test_scores > chosen["threshold"]
        acc = float(np.where(off_test, d.t_ok["test"], d.s_ok["test"]).mean())
        curves[name] = Curve(*accuracy_offload_curve(test_scores, d.s_ok["test"], d.t_ok["test"]))
        rows.append(FilterRow(name, chosen["threshold"], chosen["val_offload_rate"], chosen["val_accuracy"],
                              float(off_test.mean()), acc, rate_to_reach(curves[name], teacher_test)))
        if name == "sl":
            sl = (chosen, val_scores)
    assert sl is not None  # "sl" is registered in FILTERS
    return rows, curves, *sl, scores_test


def _fusion(op: dict[str, Any], sl_val: np.ndarray, sl_test: np.ndarray, teacher_logits: dict[str, np.ndarray],
            labels: dict[str, np.ndarray], d: _Splits, cfg: OffloaderConfig) -> tuple[FusionResult, Curve]:
    """Tune fusion on the val samples the SL operating point sends; measure it on test at that point."""
    tuning = tune_fusion(d.val_x, teacher_logits["val"], labels["val"], hardness=sl_val, threshold=op["threshold"],
                         min_samples=cfg.fusion_min_samples)
    fused_ok = fuse(d.test_x, teacher_logits["test"], tuning.params) == labels["test"]
    off = sl_test > op["threshold"]
    result = FusionResult(
        tuning=tuning,
        test_accuracy=float(np.where(off, fused_ok, d.s_ok["test"]).mean()),
        test_offloaded_teacher_accuracy=float(d.t_ok["test"][off].mean()) if off.any() else float("nan"),
        test_offloaded_fused_accuracy=float(fused_ok[off].mean()) if off.any() else float("nan"),
    )
    p = tuning.params
    log.info("fusion: w=%.2f, T_s=%.3f, T_t=%.3f; test cooperation %.4f", p.student_weight, p.student_temperature,
             p.teacher_temperature, result.test_accuracy)
    return result, Curve(*accuracy_offload_curve(sl_test, d.s_ok["test"], fused_ok))


def train_offloader(
    *,
    student_logits: dict[str, np.ndarray],
    teacher_logits: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    cfg: OffloaderConfig,
    fit: FitSet | None = None,
) -> OffloaderResult:
    """Fit the offloader on a QBC-balanced draw from `fit`, choose its threshold on val, report on test.

    `fit` defaults to the student's own train logits (the paper's); teacher_logits["train"] is
    not used. Val chooses the shipped model (model "auto") and the operating point, calibrates the
    score and tunes fusion; test only measures.
    """
    _check_inputs(student_logits, teacher_logits, labels, with_train=fit is None)
    if fit is None:
        fit = FitSet(check_logits(student_logits["train"]), np.asarray(labels["train"]), "train")
    fit_x = check_logits(fit.logits)
    k = check_logits(student_logits["val"]).shape[1]
    if fit_x.shape[1] != k or np.shape(fit.labels) != (len(fit_x),):
        raise ValueError(f"fit logits {fit_x.shape} and labels {np.shape(fit.labels)} must match the student's "
                         f"{k} classes and each other")
    d = _Splits(val_x=student_logits["val"], test_x=student_logits["test"],
                s_ok={s: np.argmax(student_logits[s], axis=1) == labels[s] for s in ("val", "test")},
                t_ok={s: np.argmax(teacher_logits[s], axis=1) == labels[s] for s in ("val", "test")})
    fit_wrong = fit_x.argmax(1) != np.asarray(fit.labels)  # the "complex" label of §V
    n_complex = int(fit_wrong.sum())
    if n_complex == 0 or n_complex == len(fit_wrong):
        raise ValueError(
            f"the student is wrong on {n_complex} of {len(fit_wrong)} {fit.source} samples; "
            "an offloader needs both right and wrong samples"
        )
    temperature = fit_temperature(fit_x, np.asarray(fit.labels).astype(np.int64))

    # The committee sees what the offloader will see (its feature transform is inside the fitted model).
    committee_x = feature_matrix(fit_x, cfg.features, temperature=temperature)
    selection = qbc_select(committee_x, fit_wrong, r=cfg.r, committee_size=cfg.committee_size, seed=cfg.seed)
    log.info("offloader training set from %d %s samples: %d complex + %d random + %d QBC normal", len(fit_x),
             fit.source, n_complex, len(selection.random_idx), len(selection.qbc_idx))
    sets = {"qbc": selection.indices, "random": random_select(fit_x, fit_wrong, seed=cfg.seed)}

    def fit_on(kind: str, name: str) -> tuple[Estimator, float]:
        model = make_model(name, seed=cfg.seed, features=cfg.features, temperature=temperature)
        start = time.perf_counter()
        model.fit(fit_x[sets[kind]], fit_wrong[sets[kind]].astype(np.int64))
        return model, time.perf_counter() - start

    def calibrated(model: Estimator) -> Estimator:
        return _calibrated(model, d.val_x, d.wrong["val"], fit) if cfg.calibrate else model

    main_kind = "qbc" if cfg.use_qbc else "random"
    candidates: list[CandidateRow] = []
    selections: list[SelectionRow] = []
    candidate_curves: dict[str, Curve] = {}
    fitted: dict[str, Estimator] = {}
    for name in cfg.candidates:
        by_kind = {kind: fit_on(kind, name) for kind in ("qbc", "random")}
        fitted[name] = by_kind[main_kind][0]
        cv = cross_validated_auc(name, fit_x, fit_wrong, sets[main_kind], seed=cfg.seed, features=cfg.features,
                                 temperature=temperature)
        row, selection_row, candidate_curves[name] = _evaluate_candidate(name, by_kind, main_kind, d, cfg,
                                                                         calibrated(fitted[name]), cv)
        candidates.append(row)
        selections.append(selection_row)
    model_name = choose_candidate(candidates, cfg.rule) if cfg.model == AUTO else cfg.model
    if cfg.model == AUTO:
        log.info("offloader model chosen by out-of-fold AUC on the fit set: %s", model_name)
    base = fitted[model_name] if model_name in fitted else fit_on(main_kind, model_name)[0]
    model = calibrated(base)

    filter_rows, curves, op, sl_val, scores_test = _cut_filters(model, d, cfg)
    sl_test = scores_test["sl"]
    sl_row = next(row for row in filter_rows if row.name == "sl")
    fusion_result = None
    if cfg.fusion:
        fusion_result, curves["sl_fusion"] = _fusion(op, sl_val, sl_test, teacher_logits, labels, d, cfg)
        op = {**op, "fusion": fusion_result.tuning.to_manifest()}
    reach = None
    if cfg.bootstrap_draws:
        compared = {name: scores_test[name] for name in ("sl", *CONFIDENCE_FILTERS)}
        reach = bootstrap_reach(compared, d.s_ok["test"], d.t_ok["test"], shipped="sl",
                                draws=cfg.bootstrap_draws, seed=cfg.seed, at_rate=sl_row.test_offload_rate)
    op = {**op, "score": ("P(student wrong), Platt-scaled on val" if isinstance(model, PlattCalibrated)
                          else "the offloader's raw score"),
          "offloader_fit_source": fit.source, "offloader_model": model_name,
          "offloader_choice": ("the candidate with the highest out-of-fold AUC on the fit set "
                               "(comparison.choose_candidate)"
                               if cfg.model == AUTO else "configured")}

    return OffloaderResult(
        model=model,
        model_name=model_name,
        model_test_accuracy=accuracies(base, d.test_x, d.wrong["test"])[0],
        operating_point=op,
        candidates=candidates,
        qbc_vs_random=selections,
        filters=filter_rows,
        curves=curves,
        candidate_curves=candidate_curves,
        test_offload_rate=sl_row.test_offload_rate,
        test_accuracy=sl_row.test_accuracy,
        student_test_accuracy=float(d.s_ok["test"].mean()),
        teacher_test_accuracy=float(d.t_ok["test"].mean()),
        n_complex=n_complex,
        n_random=len(selection.random_idx),
        n_qbc=len(selection.qbc_idx),
        fit_source=fit.source,
        n_fit=len(fit_x),
        temperature=temperature,
        fusion=fusion_result,
        reach_bootstrap=reach,
        config=cfg,
    )
