"""EdgeEngine: the student's logits and the offloader's decisions, exactly as the bundle defines them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edge_agent.engine import EdgeEngine, InputError
from offloading.features import logit_features
from offloading.scoring import offloader_scores
from shared.bundle import BundleError, load_manifest, load_offloader
from shared.datasets import normalize


@pytest.fixture(scope="module")
def engine(tiny_bundle: Path) -> EdgeEngine:
    return EdgeEngine.load(tiny_bundle, threads=1)


def test_logits_match_onnxruntime_directly(engine: EdgeEngine, tiny_bundle: Path,
                                          tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = tiny_test_split
    manifest = load_manifest(tiny_bundle)
    session = ort.InferenceSession(str(tiny_bundle / "student.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(["logits"], {"input": normalize(x, manifest.input.mean, manifest.input.std)})[0]
    got = engine.logits(x)
    assert got.shape == (len(x), 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Raw pixels as float32 give the same answer as uint8.
    np.testing.assert_allclose(engine.logits(x.astype(np.float32)), got, rtol=1e-6, atol=1e-6)


def test_decisions_are_the_sl_filter_at_the_operating_point(engine: EdgeEngine, tiny_bundle: Path,
                                                            tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = tiny_test_split
    manifest = load_manifest(tiny_bundle)
    offloader = load_offloader(tiny_bundle, manifest)
    logits = engine.logits(x)
    scores = offloader_scores(offloader, logit_features(logits))
    expected = scores > manifest.operating_point.threshold
    out = engine.run(x)
    np.testing.assert_array_equal(out.offload, expected)
    assert 0 < out.offload.sum() < len(x)  # the tiny bundle offloads some, not all
    assert out.student_s > 0 and out.decision_s > 0


def test_threshold_override_moves_the_cut(engine: EdgeEngine, tiny_bundle: Path,
                                         tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = tiny_test_split
    base = engine.run(x).offload
    scores = engine.filter.scores(engine.logits(x))
    t = float(np.quantile(scores, 0.5))
    overridden = EdgeEngine.load(tiny_bundle, threshold=t).run(x).offload
    np.testing.assert_array_equal(overridden, scores > t)
    assert overridden.sum() != base.sum()
    assert EdgeEngine.load(tiny_bundle, threshold=float(scores.max())).run(x).offload.sum() == 0


def test_no_decision_when_not_asked(engine: EdgeEngine, tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    out = engine.run(tiny_test_split[0][:10], decide=False)
    assert not out.offload.any() and out.decision_s < 1e-3


@pytest.mark.parametrize(("batch", "message"), [
    (np.zeros((2, 1, 8, 7), dtype=np.uint8), r"expected shape \[-1, 1, 8, 8\], got \[2, 1, 8, 7\]"),
    (np.zeros((1, 8, 8), dtype=np.uint8), r"got \[1, 8, 8\]"),
    (np.zeros((2, 1, 8, 8), dtype=np.int64), "datatype INT64 is not accepted"),
    (np.zeros((2, 1, 8, 8), dtype=np.float64), "datatype FP64 is not accepted"),
])
def test_bad_input_raises_naming_the_problem(engine: EdgeEngine, batch: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        engine.run(batch)


def test_nan_input_names_the_sample(engine: EdgeEngine) -> None:
    x = np.ones((3, 1, 8, 8), dtype=np.float32)
    x[2, 0, 4, 4] = np.nan
    with pytest.raises(InputError, match=r"NaN or Inf .*sample 2"):
        engine.run(x)


def test_empty_batch_is_fine(engine: EdgeEngine) -> None:
    out = engine.run(np.zeros((0, 1, 8, 8), dtype=np.uint8))
    assert out.logits.shape == (0, 10) and out.offload.shape == (0,)


def test_tampered_bundle_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    with (copy / "offloader.pkl").open("ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(BundleError, match=r"offloader\.pkl"):
        EdgeEngine.load(copy)
