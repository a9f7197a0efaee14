from __future__ import annotations

import pickle

import numpy as np
import pytest

from offloading.calibration import CalibrationError, fit_temperature, nll, platt_calibrate
from offloading.features import log_softmax
from offloading.models import decision_boundary, make_model
from offloading.scoring import PlattCalibrated, offloader_scores


def _overconfident(n: int, temperature: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose true calibration temperature is `temperature`: labels are drawn from softmax(z / T)."""
    z = rng.normal(0.0, 3.0, size=(n, 5))
    p = np.exp(log_softmax(z, temperature))
    y = np.array([rng.choice(5, p=row) for row in p])
    return z, y


def test_log_softmax_is_stable_and_normalised() -> None:
    z = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    log_p = log_softmax(z)
    assert np.all(np.isfinite(log_p))
    np.testing.assert_allclose(np.exp(log_p).sum(axis=1), 1.0)
    np.testing.assert_allclose(log_softmax(z, 2.0), log_softmax(z / 2.0))


def test_fit_temperature_recovers_the_generating_temperature() -> None:
    rng = np.random.default_rng(0)
    z, y = _overconfident(4000, 2.5, rng)
    t = fit_temperature(z, y)
    assert t == pytest.approx(2.5, rel=0.1)
    # It is the NLL's minimum: nudging T either way costs likelihood.
    assert nll(z, y, t) < nll(z, y, 0.9 * t) and nll(z, y, t) < nll(z, y, 1.1 * t)


def test_temperature_never_changes_the_argmax() -> None:
    rng = np.random.default_rng(1)
    z, _ = _overconfident(200, 1.0, rng)
    for t in (0.1, 1.0, 7.0):
        np.testing.assert_array_equal(log_softmax(z, t).argmax(1), z.argmax(1))


@pytest.mark.parametrize(("call", "message"), [
    (lambda: nll(np.zeros((2, 3)), np.array([0, 3])), r"\[0, 3\)"),
    (lambda: nll(np.zeros((2, 3)), np.array([0.0, 1.0])), "integer"),
    (lambda: fit_temperature(np.zeros((2, 3)), np.array([0])), r"shape \(2,\)"),
    (lambda: log_softmax(np.zeros((2, 3)), 0.0), "temperature must be finite and > 0"),
    (lambda: fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)), "at least one sample"),
])
def test_bad_calibration_inputs_raise(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


@pytest.fixture(scope="module")
def fitted_svm() -> tuple[object, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 4))
    wrong = x[:, 0] + 0.5 * rng.normal(size=400) > 1.0  # a minority class, as student mistakes are
    return make_model("svm", seed=0).fit(x[:200], wrong[:200].astype(int)), x[200:], wrong[200:]


def test_platt_scaling_keeps_the_ranking_and_gives_probabilities(fitted_svm: tuple) -> None:
    svm, x, wrong = fitted_svm
    cal = platt_calibrate(svm, x, wrong, base_boundary=decision_boundary(svm))
    p = cal.predict_proba(x)
    assert p.shape == (len(x), 2) and np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    raw = offloader_scores(svm, x)
    # Monotone: the same order, so every curve and operating point is unchanged.
    np.testing.assert_array_equal(np.argsort(raw, kind="stable"), np.argsort(p[:, 1], kind="stable"))
    # Calibrated: the mean predicted probability is close to the observed rate of wrong samples.
    assert p[:, 1].mean() == pytest.approx(wrong.mean(), abs=0.05)
    # The boundary on the calibrated scale reproduces the SVM's own predict().
    np.testing.assert_array_equal(offloader_scores(cal, x) > decision_boundary(cal), svm.predict(x).astype(bool))
    # Pickles (it ships as offloader.pkl) and scores the same after.
    np.testing.assert_array_equal(offloader_scores(pickle.loads(pickle.dumps(cal)), x), offloader_scores(cal, x))


def test_platt_refuses_one_class_and_anti_correlated_scores(fitted_svm: tuple) -> None:
    svm, x, wrong = fitted_svm
    with pytest.raises(CalibrationError, match="needs right and wrong samples, got 0 wrong"):
        platt_calibrate(svm, x, np.zeros(len(x), dtype=bool), base_boundary=0.0)
    with pytest.raises(CalibrationError, match="does not rank wrong samples higher"):
        platt_calibrate(svm, x, ~wrong, base_boundary=0.0)
    with pytest.raises(ValueError, match="slope a > 0"):
        PlattCalibrated(svm, a=-1.0, b=0.0, base_boundary=0.0)
