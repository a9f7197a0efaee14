"""Tuning the edge-cloud fusion (beyond the paper) on the validation split: training code.

offloading.fusion holds the run-time rule p = w · softmax(z_s / T_s) + (1 − w) · softmax(z_t / T_t);
this module chooses T_s and T_t (NLL on all validation samples, Guo et al. 2017) and w (NLL on the
validation samples the offloader sends to the cloud, the only ones fusion ever sees).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from offloading.calibration import fit_temperature, nll
from offloading.features import check_logits
from offloading.fusion import FusionParams, fuse, fused_log_probabilities

# w in steps of 0.05: finer steps only fit the noise of a few hundred validation samples.
WEIGHT_GRID: tuple[float, ...] = tuple(float(w) for w in np.round(np.linspace(0.0, 1.0, 21), 2))


@dataclass(frozen=True)
class FusionTuning:
    """Tuned parameters and what they did on the validation samples they were tuned on."""

    params: FusionParams
    samples: int
    """validation samples the weight was chosen on (the offloaded ones, at least `min_samples`)"""
    teacher_accuracy: float
    """the teacher's accuracy on those samples (what the paper answers with)"""
    fused_accuracy: float
    """the fused answers' accuracy on those samples"""
    teacher_nll: float
    fused_nll: float

    def to_manifest(self) -> dict[str, Any]:
        """The manifest's `fusion` entry: the parameters `fuse` needs, then the tuning's record."""
        return {**asdict(self.params), "method": "weighted_probability_average",
                "tuned_on": "validation samples the offloader sends (at least min_samples hardest)",
                "val_samples": self.samples, "val_teacher_accuracy": self.teacher_accuracy,
                "val_fused_accuracy": self.fused_accuracy}


def tune_fusion(
    student_logits: np.ndarray,
    teacher_logits: np.ndarray,
    labels: np.ndarray,
    *,
    hardness: np.ndarray,
    threshold: float,
    min_samples: int = 100,
    weights: tuple[float, ...] = WEIGHT_GRID,
) -> FusionTuning:
    """Fit T_s and T_t on all of (validation) `labels`, then w on the samples that are offloaded.

    `hardness` is the offloader's score for each sample and `threshold` the operating point's cut:
    the samples with hardness > threshold are those fusion will see. When those are fewer than
    `min_samples`, the `min_samples` hardest are used instead, so that w is not chosen on a handful.
    Ties in NLL go to the smaller w (closer to the paper's teacher-only answer).
    """
    s, t = check_logits(student_logits), check_logits(teacher_logits)
    y = np.asarray(labels)
    h = np.asarray(hardness, dtype=np.float64)
    if s.shape != t.shape or y.shape != (len(s),) or h.shape != (len(s),):
        raise ValueError(f"student {s.shape}, teacher {t.shape}, labels {y.shape} and hardness {h.shape} "
                         "must agree on N and K")
    if len(s) == 0:
        raise ValueError("tune_fusion needs at least one validation sample")
    if not weights or any(not 0.0 <= w <= 1.0 for w in weights):
        raise ValueError(f"weights must be a non-empty tuple of values in [0, 1], got {weights}")
    t_s, t_t = fit_temperature(s, y), fit_temperature(t, y)
    chosen = np.flatnonzero(h > threshold)
    if len(chosen) < min(min_samples, len(s)):
        chosen = np.argsort(-h, kind="stable")[:min(min_samples, len(s))]
    s_c, t_c, y_c = s[chosen], t[chosen], y[chosen]
    best: tuple[float, FusionParams] | None = None
    for w in sorted(weights):
        params = FusionParams(student_weight=w, student_temperature=t_s, teacher_temperature=t_t)
        log_p = fused_log_probabilities(s_c, t_c, params)
        loss = float(-log_p[np.arange(len(y_c)), y_c].mean())
        if best is None or loss < best[0] - 1e-12:
            best = (loss, params)
    assert best is not None
    loss, params = best
    return FusionTuning(
        params=params, samples=len(chosen),
        teacher_accuracy=float((t_c.argmax(1) == y_c).mean()),
        fused_accuracy=float((fuse(s_c, t_c, params) == y_c).mean()),
        teacher_nll=nll(t_c, y_c, t_t), fused_nll=loss,
    )
