"""Edge-cloud fusion (beyond the paper): answer an offloaded sample from both networks' logits.

Zhang et al. (§V) answer an offloaded sample with the teacher's label. But the edge still holds the
student's logits for it, and the two networks make partly different mistakes: where the teacher is
unsure and the student is sure, the student is often right. Fusion answers with the argmax of

    p = w · softmax(z_s / T_s) + (1 − w) · softmax(z_t / T_t)

a weighted average of the temperature-calibrated probabilities (Guo et al. 2017 for T; averaging
calibrated members is the usual ensemble rule). T_s and T_t are fitted by NLL on the validation
split; w is chosen on the validation samples the offloader sends to the cloud (the only samples
fusion ever sees), by the NLL of p. w = 0 is the paper's behaviour (the teacher's label).

numpy only: the edge calls `fuse` with the parameters stored in the manifest's operating point.

    labels = fuse(student_logits, teacher_logits, manifest.operating_point.fusion)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from offloading.calibration import fit_temperature, log_softmax, nll
from offloading.features import check_logits

# w in steps of 0.05: finer steps only fit the noise of a few hundred validation samples.
WEIGHT_GRID: tuple[float, ...] = tuple(float(w) for w in np.round(np.linspace(0.0, 1.0, 21), 2))


@dataclass(frozen=True)
class FusionParams:
    """How `fuse` combines the two networks' logits (the manifest stores these fields)."""

    student_weight: float = 0.0
    """w: the student's share of the averaged probabilities; 0 answers with the teacher alone."""
    student_temperature: float = 1.0
    """T_s: the student's logits are divided by it before the softmax."""
    teacher_temperature: float = 1.0
    """T_t: the teacher's logits are divided by it before the softmax."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.student_weight <= 1.0:
            raise ValueError(f"fusion student_weight must be in [0, 1], got {self.student_weight}")
        for name in ("student_temperature", "teacher_temperature"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"fusion {name} must be finite and > 0, got {value}")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> FusionParams:
        """From the manifest's `fusion` entry; keys other than the three parameters (the tuning's
        record) are ignored, a missing parameter is an error that names it."""
        missing = [name for name in ("student_weight", "student_temperature", "teacher_temperature")
                   if name not in raw]
        if missing:
            raise ValueError(f"fusion parameters lack {missing}; got keys {sorted(raw)}")
        return cls(student_weight=float(raw["student_weight"]),
                   student_temperature=float(raw["student_temperature"]),
                   teacher_temperature=float(raw["teacher_temperature"]))


def _params(params: FusionParams | Mapping[str, Any]) -> FusionParams:
    return params if isinstance(params, FusionParams) else FusionParams.from_mapping(params)


def fused_log_probabilities(student_logits: np.ndarray, teacher_logits: np.ndarray,
                            params: FusionParams | Mapping[str, Any]) -> np.ndarray:
    """(N, K) log p of the fused distribution (module docstring), computed in log space."""
    p = _params(params)
    s, t = check_logits(student_logits), check_logits(teacher_logits)
    if s.shape != t.shape:
        raise ValueError(f"student logits {s.shape} and teacher logits {t.shape} must have one shape")
    if p.student_weight == 0.0:
        return log_softmax(t, p.teacher_temperature)
    if p.student_weight == 1.0:
        return log_softmax(s, p.student_temperature)
    # log(w·p_s + (1 − w)·p_t) by logaddexp: exact even where one probability underflows to 0.
    return np.logaddexp(np.log(p.student_weight) + log_softmax(s, p.student_temperature),
                        np.log1p(-p.student_weight) + log_softmax(t, p.teacher_temperature))


def fuse(student_logits: np.ndarray, teacher_logits: np.ndarray,
         params: FusionParams | Mapping[str, Any]) -> np.ndarray:
    """(N, K) student logits + (N, K) teacher logits -> (N,) int64 fused labels.

    `params` is a FusionParams or the manifest's `operating_point.fusion` mapping. Bad logits (NaN,
    wrong shape) raise ValueError, as every offloading function does.
    """
    return fused_log_probabilities(student_logits, teacher_logits, params).argmax(axis=1).astype(np.int64)


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
