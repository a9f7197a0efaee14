"""The numpy replay of a fitted offloader scores exactly as scikit-learn does, or declines."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

from offloading.calibration import platt_calibrate
from offloading.compiled import compile_scorer
from offloading.features import logit_features
from offloading.filters import SLFilter
from offloading.models import decision_boundary, make_model
from offloading.scoring import offloader_scores
from tests.offloading.conftest import synthetic_split


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fit logits, fit "student wrong", held-out logits)."""
    rng = np.random.default_rng(7)
    student, _, y = synthetic_split(600, rng)
    held_out, _, _ = synthetic_split(300, rng)
    return student, student.argmax(axis=1) != y, held_out


@pytest.mark.parametrize("features", ["raw", "sorted", "confidence"])
@pytest.mark.parametrize("platt", [False, True])
def test_logreg_scores_equal_sklearn_to_the_last_bit(data, features: str, platt: bool) -> None:
    x, wrong, held_out = data
    model = make_model("logreg", features=features, temperature=0.7).fit(x, wrong.astype(int))
    if platt:
        model = platt_calibrate(model, x, wrong, base_boundary=decision_boundary(model))
    scorer = compile_scorer(model)
    assert scorer is not None
    expected = offloader_scores(model, logit_features(held_out))
    np.testing.assert_array_equal(scorer(held_out), expected)
    # The filter uses the replay and decides the same at any threshold, including at a sample's own score.
    f_fast = SLFilter(model, threshold=float(np.median(expected)))
    f_slow = SLFilter(model, threshold=float(np.median(expected)), compiled=False)
    assert f_fast.compiled and not f_slow.compiled
    np.testing.assert_array_equal(f_fast.decide(held_out), f_slow.decide(held_out))


@pytest.mark.parametrize("with_mean, with_std", [(False, True), (True, False), (False, False)])
def test_scaler_options_are_replayed(data, with_mean: bool, with_std: bool) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    x, wrong, held_out = data
    model = Pipeline([("scale", StandardScaler(with_mean=with_mean, with_std=with_std)),
                      ("clf", LogisticRegression())]).fit(x, wrong.astype(int))
    np.testing.assert_array_equal(compile_scorer(model)(held_out), offloader_scores(model, held_out))


@pytest.mark.parametrize("name", ["svm", "rf", "knn", "gbdt"])
def test_other_models_decline_and_the_filter_falls_back_to_sklearn(data, name: str) -> None:
    x, wrong, held_out = data
    model = make_model(name, features="sorted").fit(x, wrong.astype(int))
    assert compile_scorer(model) is None
    f = SLFilter(model, threshold=0.0)
    assert not f.compiled
    np.testing.assert_array_equal(f.scores(held_out), offloader_scores(model, logit_features(held_out)))


def test_what_it_does_not_know_it_declines(data) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, MinMaxScaler

    x, wrong, _ = data
    three_class = LogisticRegression().fit(x, np.arange(len(x)) % 3)
    validating = Pipeline([("f", FunctionTransformer(np.abs, validate=True)), ("clf", LogisticRegression())])
    minmax = Pipeline([("s", MinMaxScaler()), ("clf", LogisticRegression())])
    for model in (three_class, validating.fit(x, wrong), minmax.fit(x, wrong), LogisticRegression()):
        assert compile_scorer(model) is None, model


def test_bad_features_raise_as_sklearn_does(data) -> None:
    x, wrong, _ = data
    model = make_model("logreg").fit(x, wrong.astype(int))
    scorer = compile_scorer(model)
    with pytest.raises(ValueError, match="NaN"):
        scorer(np.full((2, x.shape[1]), np.nan))
    with pytest.raises(ValueError, match=f"expects {x.shape[1]} features"):
        scorer(np.zeros((2, x.shape[1] + 1)))
    assert scorer(np.zeros((0, x.shape[1]))).shape == (0,)


def test_a_compiled_filter_pickles(data) -> None:
    x, wrong, held_out = data
    f = SLFilter(make_model("logreg", features="confidence").fit(x, wrong.astype(int)), threshold=0.0)
    again = pickle.loads(pickle.dumps(f))
    assert again.compiled
    np.testing.assert_array_equal(again.scores(held_out), f.scores(held_out))


def test_importing_it_loads_no_sklearn() -> None:
    # The edge imports it for every bundle; it must not drag scikit-learn's model zoo into a Pi's memory.
    code = "import sys, offloading.compiled; print(sorted(m for m in sys.modules if m.startswith('sklearn')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
