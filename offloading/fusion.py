"""Edge-cloud fusion (beyond the paper): answer an offloaded sample from both networks' logits.

Zhang et al. (§V) answer an offloaded sample with the teacher's label. But the edge still holds the
student's logits for it, and the two networks make partly different mistakes: where the teacher is
unsure and the student is sure, the student is often right. Fusion answers with the argmax of

    p = w · softmax(z_s / T_s) + (1 − w) · softmax(z_t / T_t)

a weighted average of the temperature-calibrated probabilities (Guo et al. 2017 for T; averaging
calibrated members is the usual ensemble rule). T_s and T_t are fitted by NLL on the validation
split; w is chosen on the validation samples the offloader sends to the cloud (the only samples
fusion ever sees), by the NLL of p. w = 0 is the paper's behaviour (the teacher's label).

This module is the run-time rule, numpy only: the edge calls `fuse` with the parameters stored in
the manifest's operating point. Choosing them on validation is training code (offloading.fusion_tuning).

    labels = fuse(student_logits, teacher_logits, manifest.operating_point.fusion)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from offloading.features import check_logits, log_softmax


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
