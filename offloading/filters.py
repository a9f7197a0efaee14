"""Offload decisions: pure functions of the student's logits, registered by name in FILTERS.

Every filter scores a batch (higher = harder) and offloads where score > threshold. The
confidence filters follow Sedna's hard-example mining (threshold on top-1 probability, entropy,
top-1/top-2 margin); `sl` is the paper's trained offloader (§V); `random`, `edge_only` and
`cloud_only` are the reference points of Fig. 5. Bad logits raise ValueError (features.check_logits):
a filter never answers "easy" for input it could not read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from offloading.compiled import compile_scorer
from offloading.features import check_logits, logit_features
from offloading.scoring import offloader_scores
from shared.names import Strategy


@runtime_checkable
class OffloadFilter(Protocol):
    name: str

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """(N, K) logits -> (N,) float64, higher = harder."""
        ...

    def decide(self, logits: np.ndarray) -> np.ndarray:
        """(N, K) logits -> (N,) bool, True = offload to the cloud."""
        ...


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))  # shift by the row max: no overflow
    return e / e.sum(axis=1, keepdims=True)


def _check_threshold(name: str, threshold: float | None) -> float | None:
    if threshold is None:
        return None
    t = float(threshold)
    if not np.isfinite(t):
        raise ValueError(f"filter {name!r} threshold must be finite, got {threshold}")
    return t


class ThresholdFilter:
    """Offload where score > threshold. A filter without a threshold can score but not decide."""

    name: ClassVar[str] = "threshold"

    def __init__(self, *, threshold: float | None = None) -> None:
        self.threshold = _check_threshold(self.name, threshold)

    def _scores(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def scores(self, logits: np.ndarray) -> np.ndarray:
        z = check_logits(logits)  # (N, K)
        return self._scores(z).astype(np.float64, copy=False)

    def decide(self, logits: np.ndarray) -> np.ndarray:
        if self.threshold is None:
            raise ValueError(f"filter {self.name!r} has no threshold: pass threshold= or an operating point")
        return self.scores(logits) > self.threshold

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold})"


class MaxSoftmaxFilter(ThresholdFilter):
    """Score 1 − max softmax probability: unconfident samples are hard (Sedna's IBT-style filter)."""

    name = "max_softmax"

    def _scores(self, z: np.ndarray) -> np.ndarray:
        return 1.0 - _softmax(z).max(axis=1)


class EntropyFilter(ThresholdFilter):
    """Score the softmax entropy −Σ p log p in nats (Sedna's CrossEntropy-style filter)."""

    name = "entropy"

    def _scores(self, z: np.ndarray) -> np.ndarray:
        shifted = z - z.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return -(np.exp(log_p) * log_p).sum(axis=1)


class MarginFilter(ThresholdFilter):
    """Score −(p_top1 − p_top2): a close runner-up means a hard sample."""

    name = "margin"

    def _scores(self, z: np.ndarray) -> np.ndarray:
        if len(z) == 0:
            return np.zeros(0)
        top2 = np.sort(np.partition(_softmax(z), -2, axis=1)[:, -2:], axis=1)  # (N, 2) ascending
        return -(top2[:, 1] - top2[:, 0])


class RandomFilter(ThresholdFilter):
    """Score U[0, 1) draws from a seeded generator, so it offloads with probability p = 1 − threshold.

    Not a function of the logits (only of their count); it is the baseline every other filter must
    beat at the same offload rate. Successive calls continue one seeded stream.
    """

    name = "random"

    def __init__(self, *, threshold: float | None = None, seed: int = 0) -> None:
        super().__init__(threshold=threshold)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    @classmethod
    def with_rate(cls, p: float, *, seed: int = 0) -> RandomFilter:
        """A random filter that offloads each sample with probability p."""
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"random filter offload probability must be in [0, 1], got {p}")
        return cls(threshold=1.0 - p, seed=seed)

    def _scores(self, z: np.ndarray) -> np.ndarray:
        return self._rng.random(len(z))


CONFIDENCE_FILTERS: tuple[str, ...] = ("max_softmax", "entropy", "margin")
"""the one-line rules the SL offloader is held against (issue 11: it must need no more offload)"""


class EdgeOnlyFilter:
    """Never offload: the student alone. Its threshold, if any, is ignored."""

    name: ClassVar[str] = Strategy.EDGE_ONLY  # the filter behind the strategy of the same name

    def scores(self, logits: np.ndarray) -> np.ndarray:
        return np.zeros(len(check_logits(logits)), dtype=np.float64)

    def decide(self, logits: np.ndarray) -> np.ndarray:
        return np.zeros(len(check_logits(logits)), dtype=bool)


class CloudOnlyFilter:
    """Always offload: the teacher alone. Its threshold, if any, is ignored."""

    name: ClassVar[str] = Strategy.CLOUD_ONLY

    def scores(self, logits: np.ndarray) -> np.ndarray:
        return np.ones(len(check_logits(logits)), dtype=np.float64)

    def decide(self, logits: np.ndarray) -> np.ndarray:
        return np.ones(len(check_logits(logits)), dtype=bool)


class SLFilter(ThresholdFilter):
    """The paper's offloader (§V): a classifier of "student wrong" over logit features.

    Score = the offloader's decision_function, or predict_proba[:, 1] where it has none. A logistic
    regression (the shipped default on MNIST) is replayed in numpy (offloading/compiled.py): the
    same scores, without scikit-learn's per-call validation on the edge's per-batch path.
    """

    name = "sl"

    def __init__(self, offloader: Any, *, threshold: float | None = None, compiled: bool = True) -> None:
        if offloader is None:
            raise ValueError("filter 'sl' needs a fitted offloader (offloader=None given)")
        if not (hasattr(offloader, "decision_function") or hasattr(offloader, "predict_proba")):
            raise ValueError(
                f"offloader {type(offloader).__name__} has neither decision_function nor predict_proba"
            )
        super().__init__(threshold=threshold)
        self.offloader = offloader
        # None: score through scikit-learn (any model but a logistic regression, or compiled=False)
        self._compiled = compile_scorer(offloader) if compiled else None

    def _scores(self, z: np.ndarray) -> np.ndarray:
        if self._compiled is not None:
            return self._compiled(z)
        return offloader_scores(self.offloader, logit_features(z))

    @property
    def compiled(self) -> bool:
        """Whether scores come from the numpy replay (offloading/compiled.py) rather than scikit-learn."""
        return self._compiled is not None

    def __repr__(self) -> str:
        return f"SLFilter(threshold={self.threshold}, compiled={self.compiled})"


FILTERS: dict[str, type] = {
    cls.name: cls
    for cls in (MaxSoftmaxFilter, EntropyFilter, MarginFilter, RandomFilter, EdgeOnlyFilter,
                CloudOnlyFilter, SLFilter)
}


def make_filter(
    name_or_op: str | Mapping[str, Any] | Any,
    *,
    threshold: float | None = None,
    offloader: Any | None = None,
    seed: int = 0,
) -> OffloadFilter:
    """Build a filter from its name or from an operating point (an object or mapping with
    `filter` and `threshold`, e.g. shared.bundle.OperatingPoint).

    An explicit `threshold` overrides the operating point's (the edge's threshold override).
    `offloader` is used by "sl" only and `seed` by "random" only; other filters ignore them, so the
    edge can always pass the bundle's offloader whatever filter the manifest names.
    """
    if isinstance(name_or_op, str):
        name, op_threshold = name_or_op, None
    elif isinstance(name_or_op, Mapping):
        name, op_threshold = name_or_op.get("filter"), name_or_op.get("threshold")
    else:
        name, op_threshold = getattr(name_or_op, "filter", None), getattr(name_or_op, "threshold", None)
    if name not in FILTERS:
        raise ValueError(f"unknown offload filter {name!r}; choose one of {sorted(FILTERS)}")
    t = threshold if threshold is not None else op_threshold
    cls = FILTERS[name]
    if cls is SLFilter:
        return SLFilter(offloader, threshold=t)
    if cls is RandomFilter:
        return RandomFilter(threshold=t, seed=seed)
    if issubclass(cls, ThresholdFilter):
        return cls(threshold=t)
    return cls()
