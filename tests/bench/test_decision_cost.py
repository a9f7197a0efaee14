"""bench/decision_cost.py times the edge's decision against the student, and the numpy replay against
scikit-learn on the same batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from decision_cost import measure, sklearn_reference

from edge_agent.engine import EdgeEngine
from offloading.filters import SLFilter
from offloading.models import make_model


def test_a_logreg_offloader_is_timed_against_its_sklearn_path(tiny_bundle: Path, tiny_test_split) -> None:
    x, y = tiny_test_split
    engine = EdgeEngine.load(tiny_bundle)
    assert sklearn_reference(engine) is None  # the tiny bundle ships an SVM: nothing to compare
    logits = engine.logits(x)
    logreg = make_model("logreg", features="confidence").fit(logits, (logits.argmax(axis=1) != y).astype(int))
    engine.filter = SLFilter(logreg, threshold=0.0)
    reference = sklearn_reference(engine)
    assert reference is not None and not reference.compiled
    student, decision, ref_decision, differ = measure(engine, x, batch_size=16, repeats=2, reference=reference)
    n_batches = -(-len(x) // 16)
    for seconds in (student, decision, ref_decision):
        assert seconds.shape == (n_batches,) and np.all(np.isfinite(seconds)) and np.all(seconds > 0)
    assert differ == 0
