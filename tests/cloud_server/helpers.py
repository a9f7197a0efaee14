"""Test doubles and small readers shared by the cloud server tests."""

from __future__ import annotations

import threading

import numpy as np
from prometheus_client.parser import text_string_to_metric_families


class FakeBackend:
    """Logits = the first K normalised pixels; records every batch; `gate` can hold compute back."""

    name = "fake"

    def __init__(self, n_classes: int = 10) -> None:
        self.n_classes = n_classes
        self.batches: list[np.ndarray] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_with: Exception | None = None

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(x.copy())
        self.entered.set()
        if not self.gate.wait(timeout=20):
            raise TimeoutError("test gate was never opened")
        if self.fail_with is not None:
            raise self.fail_with
        return x.reshape(len(x), -1)[:, : self.n_classes].astype(np.float32)  # (B, K)

    def reset(self) -> None:
        """Forget the warm-up batches."""
        self.batches.clear()
        self.entered.clear()

    @property
    def batch_sizes(self) -> list[int]:
        return [len(b) for b in self.batches]


def metric(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample's value from a Prometheus exposition (0.0 when the series does not exist yet)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and (labels is None or all(sample.labels.get(k) == v
                                                              for k, v in labels.items())):
                return float(sample.value)
    return 0.0
