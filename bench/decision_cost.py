"""Offloader decision cost relative to the student, per batch, on the edge.

For every test batch: the student's time (normalisation + onnxruntime, `EdgeEngine.logits`) and the
offloader's time (logit features + SL model scores + threshold, `EdgeEngine.decide`), the same
calls the agent makes. Prints the medians per batch and the ratio of totals (decision / student).
Where the offloader is a logistic regression, the edge scores it with the numpy replay
(offloading/compiled.py); the same batches are then also scored through scikit-learn, interleaved
batch by batch, and the decisions of both are compared.

    .venv/bin/python bench/decision_cost.py --bundle artifacts/mnist --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import time

import numpy as np
from _edge_bench import edge_parser, load_test_samples

from edge_agent.engine import EdgeEngine
from offloading.filters import SLFilter


def sklearn_reference(engine: EdgeEngine) -> SLFilter | None:
    """The engine's SL filter scored through scikit-learn, where the engine's is the numpy replay."""
    f = engine.filter
    if isinstance(f, SLFilter) and f.compiled:
        return SLFilter(f.offloader, threshold=f.threshold, compiled=False)
    return None


def measure(engine: EdgeEngine, x: np.ndarray, *, batch_size: int, repeats: int,
            reference: SLFilter | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(student, decision, reference decision) seconds per batch, each the best of `repeats` passes,
    and the number of samples on which the reference decided differently (0 when there is none)."""
    batches = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]
    engine.decide(engine.logits(batches[0]))  # warm-up
    student = np.full(len(batches), np.inf)
    decision = np.full(len(batches), np.inf)
    ref_decision = np.full(len(batches), np.inf)
    differ = 0
    for r in range(repeats):
        for i, batch in enumerate(batches):
            t0 = time.perf_counter()
            logits = engine.logits(batch)
            t1 = time.perf_counter()
            mask = engine.decide(logits)
            t2 = time.perf_counter()
            student[i] = min(student[i], t1 - t0)
            decision[i] = min(decision[i], t2 - t1)
            if reference is not None:
                t3 = time.perf_counter()
                ref_mask = reference.decide(logits)
                ref_decision[i] = min(ref_decision[i], time.perf_counter() - t3)
                if r == 0:
                    differ += int((ref_mask != mask).sum())
    return student, decision, ref_decision, differ


def main() -> int:
    args = edge_parser(__doc__, threads_help="onnxruntime intra-op threads", repeats=3).parse_args()

    dataset, x, _ = load_test_samples(args)
    engine = EdgeEngine.load(args.bundle, threads=args.threads)
    reference = sklearn_reference(engine)
    student, decision, ref_decision, differ = measure(engine, x, batch_size=args.batch_size,
                                                      repeats=args.repeats, reference=reference)
    print(f"dataset {dataset}, {len(x)} samples, batch {args.batch_size}, filter {engine.filter!r}")
    print(f"student  per batch: median {np.median(student) * 1e3:8.3f} ms")
    print(f"decision per batch: median {np.median(decision) * 1e3:8.3f} ms")
    print(f"ratio decision / student (totals): {decision.sum() / student.sum():.3f}")
    if reference is not None:
        print(f"scikit-learn path per batch: median {np.median(ref_decision) * 1e3:8.3f} ms, "
              f"ratio to student {ref_decision.sum() / student.sum():.3f}; decisions that differ: {differ}")
    return 0 if differ == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
