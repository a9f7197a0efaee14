"""Synthetic logits for the offloading tests: numpy only, no networks.

Each sample gets a difficulty d ~ U(0, 1). The student's top logit margin shrinks as d grows and
its chance of being wrong rises as d³, so "student wrong" is learnable from the logits, mostly
from low-margin samples. The teacher is right on ~95% of samples, independently of d.
"""

from __future__ import annotations

import numpy as np
import pytest

K = 10


def synthetic_split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(student_logits, teacher_logits, labels) for n samples."""
    y = rng.integers(0, K, size=n)
    d = rng.random(n)
    wrong = rng.random(n) < d**3
    other = (y + rng.integers(1, K, size=n)) % K  # any class but the true one
    s_pred = np.where(wrong, other, y)
    student = rng.normal(0.0, 0.5, size=(n, K))
    student[np.arange(n), s_pred] += 4.0 * (1.0 - d) + 0.3  # (N, K): margin shrinks with difficulty
    t_pred = np.where(rng.random(n) < 0.95, y, other)
    teacher = rng.normal(0.0, 0.5, size=(n, K))
    teacher[np.arange(n), t_pred] += 5.0
    return student, teacher, y


@pytest.fixture(scope="module")
def synthetic() -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1234)
    sizes = {"train": 800, "val": 400, "test": 400}
    student, teacher, labels = {}, {}, {}
    for split, n in sizes.items():
        student[split], teacher[split], labels[split] = synthetic_split(n, rng)
    return {"student_logits": student, "teacher_logits": teacher, "labels": labels}
