"""Train the SL offloader end to end (Zhang et al. §V, Algorithm 2; Tables III-IV; Figs. 3 and 5).

Input: the student's and teacher's logits and the labels on train / val / test. The train split
yields the offloader's training set (QBC-balanced), val the operating point, test every reported
number. Nothing here needs the networks themselves, so it runs without torch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from offloading.features import FEATURE_KINDS, check_logits, logit_features, sorted_logits
from offloading.filters import FILTERS, CloudOnlyFilter, EdgeOnlyFilter, make_filter
from offloading.models import CANDIDATES, Estimator, decision_boundary, make_model, pickled_kb
from offloading.operating_point import accuracy_offload_curve, choose_operating_point
from offloading.qbc import qbc_select, random_select

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class OffloaderConfig:
    model: str = "svm"
    """the offloader that ships in the bundle (a name in models.CANDIDATES)"""
    r: float = 0.5
    """Algorithm 2: share of the M normal samples drawn at random; the rest are picked by QBC"""
    committee_size: int = 3
    """Algorithm 2: QBC committee size L"""
    use_qbc: bool = True
    """train on the QBC selection (True) or on M random normal samples (False)"""
    budget: float | None = 0.2
    """largest fraction of samples offloaded; set None to choose by target_accuracy instead"""
    target_accuracy: float | None = None
    """cooperative accuracy to reach at the lowest offload rate (requires budget=None)"""
    use_boundary: bool = True
    """cut the SL offloader at its own decision boundary (the paper's rule), capped by the budget;
    False: the best validation accuracy within the budget. Ignored with a target_accuracy."""
    features: str = "sorted"
    """offloader input: "sorted" (each row of logits in descending order) or "raw" logits"""
    seed: int = 0
    """seeds the sampling, the committee and every model"""
    candidates: tuple[str, ...] = tuple(CANDIDATES)
    """models compared in the candidate and QBC-vs-random tables"""

    def __post_init__(self) -> None:
        unknown = [name for name in (self.model, *self.candidates) if name not in CANDIDATES]
        if unknown:
            raise ValueError(f"unknown offloader model(s) {unknown}; choose from {sorted(CANDIDATES)}")
        if self.features not in FEATURE_KINDS:
            raise ValueError(f"unknown offloader features {self.features!r}; choose one of {FEATURE_KINDS}")
        if not 0.0 < self.r <= 1.0:
            raise ValueError(f"r must be in (0, 1], got {self.r}")
        if self.committee_size < 1:
            raise ValueError(f"committee_size must be >= 1, got {self.committee_size}")
        if (self.budget is None) == (self.target_accuracy is None):
            raise ValueError(
                f"set exactly one of budget / target_accuracy (got budget={self.budget}, "
                f"target_accuracy={self.target_accuracy}); use budget=None with a target"
            )


@dataclass(frozen=True)
class CandidateRow:
    """One row of Tables III-IV: how well a model predicts "student wrong" on test, and its size."""

    name: str
    test_accuracy: float
    test_balanced_accuracy: float
    size_kb: float
    fit_seconds: float


@dataclass(frozen=True)
class SelectionRow:
    """One row of Fig. 3: the same model trained on QBC vs random normal samples (same counts)."""

    name: str
    qbc_accuracy: float
    random_accuracy: float
    qbc_balanced_accuracy: float
    random_balanced_accuracy: float


@dataclass(frozen=True)
class FilterRow:
    """A filter cut at its own validation operating point (same budget / target), measured on test."""

    name: str
    threshold: float | None
    val_offload_rate: float
    val_accuracy: float
    test_offload_rate: float
    test_accuracy: float


@dataclass(frozen=True)
class Curve:
    """Cooperative test accuracy against offload rate, rates ascending."""

    rates: np.ndarray
    accs: np.ndarray


@dataclass
class OffloaderResult:
    model: Estimator
    """the fitted offloader that ships as offloader.pkl"""
    model_name: str
    model_test_accuracy: float
    """accuracy of the shipped model at predicting "student wrong" on test (its own 0/1 decision)"""
    operating_point: dict[str, Any]
    """the SL filter's threshold, chosen on val: shared.bundle.OperatingPoint's fields + target_reached"""
    candidates: list[CandidateRow]
    qbc_vs_random: list[SelectionRow]
    filters: list[FilterRow]
    """every filter at the same budget / target, including sl"""
    curves: dict[str, Curve]
    """per filter, on test; edge_only / cloud_only are single points"""
    test_offload_rate: float
    test_accuracy: float
    student_test_accuracy: float
    teacher_test_accuracy: float
    n_complex: int
    n_random: int
    n_qbc: int
    config: OffloaderConfig = field(default_factory=OffloaderConfig)

    def test_summary(self) -> dict[str, Any]:
        """The build's headline offloading numbers on test, for the bundle's metrics."""
        return {
            "cooperative_accuracy": self.test_accuracy,
            "offload_rate": self.test_offload_rate,
            "offloader_model": self.model_name,
            "offloader_test_accuracy": self.model_test_accuracy,
        }


def _check_inputs(
    student_logits: dict[str, np.ndarray], teacher_logits: dict[str, np.ndarray], labels: dict[str, np.ndarray]
) -> None:
    for what, d in (("student_logits", student_logits), ("teacher_logits", teacher_logits), ("labels", labels)):
        missing = [s for s in SPLITS if s not in d]
        if missing:
            raise ValueError(f"{what} lacks split(s) {missing}; need {list(SPLITS)}")
    for split in SPLITS:
        s = check_logits(student_logits[split])
        t = check_logits(teacher_logits[split])
        y = np.asarray(labels[split])
        if len(s) == 0:
            raise ValueError(f"split {split!r} is empty")
        if t.shape != s.shape or y.shape != (len(s),):
            raise ValueError(
                f"split {split!r}: student logits {s.shape}, teacher logits {t.shape} and labels {y.shape} "
                "must agree on N and K"
            )


def _fit(name: str, x: np.ndarray, y: np.ndarray, seed: int, features: str) -> tuple[Estimator, float]:
    model = make_model(name, seed=seed, features=features)
    start = time.perf_counter()
    model.fit(x, y)
    return model, time.perf_counter() - start


def _accuracies(model: Estimator, x: np.ndarray, wrong: np.ndarray) -> tuple[float, float]:
    """(accuracy, balanced accuracy) of predicting "student wrong"; balanced = mean per-class recall."""
    pred = np.asarray(model.predict(x)).astype(bool)
    recalls = [float((pred[wrong == c] == c).mean()) for c in (False, True) if (wrong == c).any()]
    return float((pred == wrong).mean()), float(np.mean(recalls))


def train_offloader(
    *,
    student_logits: dict[str, np.ndarray],
    teacher_logits: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    cfg: OffloaderConfig,
) -> OffloaderResult:
    """Fit the offloader on QBC-balanced train samples, choose its threshold on val, report on test."""
    _check_inputs(student_logits, teacher_logits, labels)
    feats = {s: logit_features(student_logits[s]) for s in SPLITS}  # (N, K) each
    s_ok = {s: np.argmax(student_logits[s], axis=1) == labels[s] for s in SPLITS}
    t_ok = {s: np.argmax(teacher_logits[s], axis=1) == labels[s] for s in SPLITS}
    wrong = {s: ~s_ok[s] for s in SPLITS}  # the "complex" label
    n_complex = int(wrong["train"].sum())
    if n_complex == 0 or n_complex == len(wrong["train"]):
        raise ValueError(
            f"the student is wrong on {n_complex} of {len(wrong['train'])} train samples; "
            "an offloader needs both right and wrong samples"
        )

    # The committee sees what the offloader will see (its feature transform is inside the fitted model).
    committee_x = sorted_logits(feats["train"]) if cfg.features == "sorted" else feats["train"]
    selection = qbc_select(committee_x, wrong["train"], r=cfg.r, committee_size=cfg.committee_size,
                           seed=cfg.seed)
    random_idx = random_select(feats["train"], wrong["train"], seed=cfg.seed)
    log.info("offloader training set: %d complex + %d random + %d QBC normal", n_complex,
             len(selection.random_idx), len(selection.qbc_idx))
    sets = {"qbc": selection.indices, "random": random_idx}

    def fit_on(kind: str, name: str) -> tuple[Estimator, float]:
        idx = sets[kind]
        return _fit(name, feats["train"][idx], wrong["train"][idx].astype(np.int64), cfg.seed, cfg.features)

    main_kind = "qbc" if cfg.use_qbc else "random"
    candidates: list[CandidateRow] = []
    selections: list[SelectionRow] = []
    fitted: dict[str, Estimator] = {}
    for name in cfg.candidates:
        by_kind = {kind: fit_on(kind, name) for kind in ("qbc", "random")}
        model, seconds = by_kind[main_kind]
        fitted[name] = model
        acc, bacc = _accuracies(model, feats["test"], wrong["test"])
        candidates.append(CandidateRow(name, acc, bacc, pickled_kb(model), seconds))
        q_acc, q_bacc = _accuracies(by_kind["qbc"][0], feats["test"], wrong["test"])
        r_acc, r_bacc = _accuracies(by_kind["random"][0], feats["test"], wrong["test"])
        selections.append(SelectionRow(name, q_acc, r_acc, q_bacc, r_bacc))
        log.info("candidate %s: test accuracy %.4f, %.1f KB, fit %.2f s", name, acc, candidates[-1].size_kb, seconds)
    model = fitted[cfg.model] if cfg.model in fitted else fit_on(main_kind, cfg.model)[0]

    choose = {"budget": cfg.budget, "target_accuracy": cfg.target_accuracy}
    filter_rows: list[FilterRow] = []
    curves: dict[str, Curve] = {}
    chosen_points: dict[str, dict[str, Any]] = {}
    for name, cls in FILTERS.items():
        if cls in (EdgeOnlyFilter, CloudOnlyFilter):
            filt = make_filter(name)
            off_val, off_test = filt.decide(student_logits["val"]), filt.decide(student_logits["test"])
            val_rate, val_acc = float(off_val.mean()), float(np.where(off_val, t_ok["val"], s_ok["val"]).mean())
            rate = float(off_test.mean())
            acc = float(np.where(off_test, t_ok["test"], s_ok["test"]).mean())
            filter_rows.append(FilterRow(name, None, val_rate, val_acc, rate, acc))
            curves[name] = Curve(np.array([rate]), np.array([acc]))
            continue
        # Separate streams for val and test, so that random's test draws are not its val draws.
        scorer = make_filter(name, offloader=model, seed=cfg.seed)
        # Only the SL offloader has a boundary of its own; the score filters are cut by the budget.
        use = name == "sl" and cfg.use_boundary and cfg.budget is not None
        boundary = decision_boundary(model) if use else None
        chosen = choose_operating_point(scorer.scores(student_logits["val"]), s_ok["val"], t_ok["val"],
                                        filter_name=name, boundary=boundary, **choose)
        tester = make_filter(chosen, offloader=model, seed=cfg.seed + 1)
        test_scores = tester.scores(student_logits["test"])
        off_test = test_scores > chosen["threshold"]
        rate = float(off_test.mean())
        acc = float(np.where(off_test, t_ok["test"], s_ok["test"]).mean())
        filter_rows.append(FilterRow(name, chosen["threshold"], chosen["val_offload_rate"],
                                     chosen["val_accuracy"], rate, acc))
        curves[name] = Curve(*accuracy_offload_curve(test_scores, s_ok["test"], t_ok["test"]))
        chosen_points[name] = chosen
    sl_row = next(row for row in filter_rows if row.name == "sl")

    return OffloaderResult(
        model=model,
        model_name=cfg.model,
        model_test_accuracy=_accuracies(model, feats["test"], wrong["test"])[0],
        operating_point=chosen_points["sl"],
        candidates=candidates,
        qbc_vs_random=selections,
        filters=filter_rows,
        curves=curves,
        test_offload_rate=sl_row.test_offload_rate,
        test_accuracy=sl_row.test_accuracy,
        student_test_accuracy=float(s_ok["test"].mean()),
        teacher_test_accuracy=float(t_ok["test"].mean()),
        n_complex=n_complex,
        n_random=len(selection.random_idx),
        n_qbc=len(selection.qbc_idx),
        config=cfg,
    )

