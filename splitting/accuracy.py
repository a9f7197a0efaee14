"""Which samples each (exit, partition, bits) answers correctly, through the real segments and codec.

Accuracy is measured as the online half computes: head_p in onnxruntime, the feature quantised and
packed one request (one sample) at a time by `shared.feature_codec`, unpacked, tail_p. The
per-sample correctness on the test split lets the environment report real accuracy; the validation
accuracy per action is what the planners' reward sees (they never see test labels).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.feature_codec import dequantize, quantize
from splitting.actions import ActionSpace, Placement
from splitting.segments import SegmentRunner


def _per_request_roundtrip(feature: np.ndarray, bits: int) -> np.ndarray:
    """Quantise and dequantise each sample alone, as one request of one sample is sent."""
    out = np.empty_like(feature, dtype=np.float32)
    for i in range(len(feature)):
        out[i] = dequantize(quantize(feature[i:i + 1], bits))[0]
    return out


def action_correctness(runner: SegmentRunner, space: ActionSpace, x: np.ndarray, y: np.ndarray,
                       *, batch_size: int = 512) -> np.ndarray:
    """(A, N) bool: whether valid action a answers sample n correctly (False for invalid actions).

    `x` is normalised (N, C, H, W); `runner` must have every head and tail open.
    """
    s = space.n_stages
    correct = np.zeros((len(space), len(y)), dtype=bool)
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        cols = slice(start, start + len(yb))
        full, _ = runner.head(s, xb)
        features = {p: runner.head(p, xb)[1] for p in range(1, s)}
        tails = {(p, b): runner.tail(p, _per_request_roundtrip(features[p], b)) for p in range(1, s)
                 for b in space.bits}
        for index in space.valid_indices():
            a = space.actions[index]
            kind = a.placement(s)
            # device-only and server-only run the unsplit net (server-only is its last exit: the teacher)
            logits = tails[(a.partition, a.bits)][a.exit] if kind is Placement.SPLIT else full[a.exit]
            correct[index, cols] = logits.argmax(axis=1) == yb
    return correct


def accuracy_table(space: ActionSpace, val_correct: np.ndarray, test_correct: np.ndarray,
                   payload: dict[int, int]) -> list[dict[str, Any]]:
    """One row per valid action: label, exit, partition, bits, payload bytes, val and test accuracy."""
    rows = []
    for index in space.valid_indices():
        a = space.actions[index]
        rows.append({"index": int(index), "action": a.label(space.n_stages), "exit": a.exit,
                     "partition": a.partition, "bits": a.bits, "payload_bytes": payload[int(index)],
                     "val_accuracy": float(val_correct[index].mean()),
                     "test_accuracy": float(test_correct[index].mean())})
    return rows
