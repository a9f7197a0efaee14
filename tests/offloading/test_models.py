from __future__ import annotations

import pickle

import numpy as np
import pytest

from offloading.models import CANDIDATES, decision_boundary, make_model, pickled_kb
from offloading.scoring import offloader_scores


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4))
    y = (x[:, 0] + 0.3 * rng.normal(size=120) > 0).astype(np.int64)
    return x, y


def test_candidate_names() -> None:
    # The paper's six (Tables III-IV) and a logistic regression as the simplest baseline.
    assert set(CANDIDATES) == {"svm", "rf", "knn", "gbdt", "xgb", "et", "logreg"}


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_every_candidate_fits_scores_and_pickles(name: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    model = make_model(name, seed=1).fit(x, y)
    scores = offloader_scores(model, x)
    assert scores.shape == (120,) and scores.dtype == np.float64
    # Scores rank the positive class: positives score higher on average on an easy problem.
    assert scores[y == 1].mean() > scores[y == 0].mean()
    assert (np.asarray(model.predict(x)) == y).mean() > 0.8
    size = pickled_kb(model)
    assert size > 0.5
    assert size == len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)) / 1024
    np.testing.assert_allclose(offloader_scores(pickle.loads(pickle.dumps(model)), x), scores)


def test_scores_prefer_decision_function(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    svm = make_model("svm").fit(x, y)
    np.testing.assert_allclose(offloader_scores(svm, x), svm.decision_function(x))
    knn = make_model("knn").fit(x, y)
    np.testing.assert_allclose(offloader_scores(knn, x), knn.predict_proba(x)[:, 1])


def test_seed_makes_models_reproducible(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    a = offloader_scores(make_model("rf", seed=3).fit(x, y), x)
    b = offloader_scores(make_model("rf", seed=3).fit(x, y), x)
    np.testing.assert_array_equal(a, b)


def test_bad_inputs(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    with pytest.raises(ValueError, match=r"unknown offloader model 'lr'.*'svm'"):
        make_model("lr")
    model = make_model("knn").fit(x, y)
    with pytest.raises(ValueError, match="NaN"):
        offloader_scores(model, np.full((1, 4), np.nan))
    three = make_model("knn").fit(x, np.arange(120) % 3)
    with pytest.raises(ValueError, match="binary"):
        offloader_scores(three, x)
    assert offloader_scores(model, np.zeros((0, 4))).shape == (0,)


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_decision_boundary_reproduces_predict(name: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    # Cutting the scores at the boundary must give exactly the model's own 0/1 decision, or the
    # "boundary" operating point would not be the classifier the paper describes.
    x, y = data
    model = make_model(name, seed=1).fit(x, y)
    offload = offloader_scores(model, x) > decision_boundary(model)
    np.testing.assert_array_equal(offload, np.asarray(model.predict(x)).astype(bool))
