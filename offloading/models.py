"""Candidate offloader models (Zhang et al. §V-B, Tables III-IV): binary "is the student wrong?".

Each factory takes a seed and returns an unfitted scikit-learn-style estimator. The distance-based
models (SVM, KNN) sit in a Pipeline behind a StandardScaler because logit scales differ per class;
tree models need no scaling. Training code: the edge only unpickles a fitted model and scores it
with offloading.scoring, and never imports this module (tests/serving/test_online_imports.py).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

from offloading.features import FEATURE_KINDS, confidence_features, sorted_logits
from offloading.scoring import Estimator, PlattCalibrated


def _svm(seed: int) -> Estimator:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    # The paper's default: RBF kernel, C=1, gamma="scale" (sklearn's 1 / (F * var(X))).
    return Pipeline([("scale", StandardScaler()), ("clf", SVC(kernel="rbf", C=1.0, random_state=seed))])


def _rf(seed: int) -> Estimator:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)


def _knn(seed: int) -> Estimator:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    del seed  # KNN is deterministic
    return Pipeline([("scale", StandardScaler()), ("clf", KNeighborsClassifier(n_neighbors=5))])


def _gbdt(seed: int) -> Estimator:
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=seed)


def _xgb(seed: int) -> Estimator:
    from xgboost import XGBClassifier

    return XGBClassifier(n_estimators=100, max_depth=4, tree_method="hist", random_state=seed, n_jobs=1)


def _et(seed: int) -> Estimator:
    from sklearn.ensemble import ExtraTreesClassifier

    return ExtraTreesClassifier(n_estimators=100, random_state=seed, n_jobs=1)


def _logreg(seed: int) -> Estimator:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    # Not one of the paper's six: the simplest model over the confidence features, as a baseline.
    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=1.0, max_iter=2000,
                                                                             random_state=seed))])


CANDIDATES: dict[str, Callable[[int], Estimator]] = {
    "svm": _svm,
    "rf": _rf,
    "knn": _knn,
    "gbdt": _gbdt,
    "xgb": _xgb,
    "et": _et,
    "logreg": _logreg,
}


def make_model(name: str, *, seed: int = 0, features: str = "raw", temperature: float = 1.0) -> Estimator:
    """An unfitted candidate offloader by name; ValueError listing the names on an unknown one.

    ``features="sorted"`` puts `sorted_logits` in front of the model, ``"confidence"`` puts
    `confidence_features` (at `temperature`), inside the estimator, so the pickled offloader still
    takes raw logits and the edge needs no feature code of its own.
    """
    try:
        factory = CANDIDATES[name]
    except KeyError:
        raise ValueError(f"unknown offloader model {name!r}; choose one of {sorted(CANDIDATES)}") from None
    if features not in FEATURE_KINDS:
        raise ValueError(f"unknown offloader features {features!r}; choose one of {FEATURE_KINDS}")
    model = factory(seed)
    if features == "raw":
        return model
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    if features == "sorted":
        return Pipeline([("sort", FunctionTransformer(sorted_logits)), ("model", model)])
    transform = FunctionTransformer(confidence_features, kw_args={"temperature": float(temperature)})
    return Pipeline([("features", transform), ("model", model)])


def decision_boundary(model: Estimator) -> float:
    """The score at which the model's own predict() flips to "complex", on offloader_scores' scale.

    sklearn predicts the positive class where decision_function > 0, or where predict_proba[:, 1]
    beats the other class, i.e. > 0.5 for a binary model. A Platt-calibrated offloader reports its
    base model's boundary mapped onto the calibrated scale.
    """
    if isinstance(model, PlattCalibrated):
        return model.boundary
    return 0.0 if hasattr(model, "decision_function") else 0.5


def pickled_kb(model: Estimator) -> float:
    """Size of the model as it ships in the bundle (offloader.pkl), in KB (1 KB = 1024 bytes)."""
    return len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)) / 1024.0
