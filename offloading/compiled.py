"""A fitted offloader as plain numpy: the same scores as `scoring.offloader_scores`, without
scikit-learn's per-call overhead.

Each call of a fitted scikit-learn Pipeline re-validates its input in every step (`validate_data`,
tags, `check_is_fitted`), which costs about a millisecond per batch whatever the batch size. For
the shipped logistic-regression offloader that is most of the decision's time, on a path that runs
once per edge batch (bench/decision_cost.py). `compile_scorer` reads the fitted parameters of the
models it knows (Pipeline, FunctionTransformer, StandardScaler, LogisticRegression, and the Platt
wrapper) and replays the same float64 operations in the same order, so the scores are equal to the
last bit; any other model returns None and is scored through scikit-learn as before.

numpy only at import: classes are recognised through the modules their objects already loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from offloading.features import check_logits
from offloading.scoring import PlattCalibrated, sigmoid

Transform = Callable[[np.ndarray], np.ndarray]


def _sklearn_class(module: str, name: str) -> type | None:
    """The scikit-learn class `module.name` if that module is already imported, else None.

    A fitted object's class is always loaded, so this never imports scikit-learn for a model that
    does not use the class (an XGBoost offloader must not pull in sklearn.linear_model on a Pi).
    """
    loaded = sys.modules.get(module)
    return getattr(loaded, name, None) if loaded is not None else None


def _is(obj: Any, module: str, name: str) -> bool:
    # The exact class, not a subclass: a subclass may override the method we replay.
    cls = _sklearn_class(module, name)
    return cls is not None and type(obj) is cls


class _Function:
    """FunctionTransformer(func, kw_args) with validate=False: func(x, **kw_args)."""

    def __init__(self, func: Callable[..., np.ndarray], kw_args: Mapping[str, Any] | None) -> None:
        self.func = func
        self.kw_args = dict(kw_args or {})

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.func(x, **self.kw_args))


class _Standardise:
    """StandardScaler.transform on dense float64: x − mean_, then ÷ scale_, in place on a copy."""

    def __init__(self, mean: np.ndarray | None, scale: np.ndarray | None) -> None:
        self.mean = mean
        self.scale = scale

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.array(x, dtype=np.float64, copy=True)  # (N, F)
        if self.mean is not None:
            out -= self.mean
        if self.scale is not None:
            out /= self.scale
        return out


class _Linear:
    """Binary LogisticRegression.decision_function: x @ coef_.T + intercept_, as one column."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.coef_t = np.ascontiguousarray(coef.T)  # (F, 1)
        self.intercept = intercept                  # (1,)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not np.isfinite(x).all():
            # scikit-learn's input validation refuses these too; never score them as "easy".
            raise ValueError("offloader features contain NaN or Inf")
        return (x @ self.coef_t + self.intercept).reshape(-1)


class _Chain:
    """Transforms, then a scorer: a Pipeline."""

    def __init__(self, transforms: Sequence[Transform], final: Transform) -> None:
        self.transforms = tuple(transforms)
        self.final = final

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for transform in self.transforms:
            x = transform(x)
        return self.final(x)


class _Platt:
    """PlattCalibrated: σ(a·s + b) of the base model's score s (calibration.py, Platt 1999)."""

    def __init__(self, base: Transform, *, a: float, b: float) -> None:
        self.base = base
        self.a = a
        self.b = b

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(self.a * self.base(x) + self.b)


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _compile_transform(step: Any) -> Transform | None:
    if step is None or (isinstance(step, str) and step == "passthrough"):
        return _identity
    if _is(step, "sklearn.preprocessing", "FunctionTransformer"):
        if step.validate or step.func is None or getattr(step, "_sklearn_output_config", None):
            return None  # validation or a pandas output changes what transform returns
        return _Function(step.func, step.kw_args)
    if _is(step, "sklearn.preprocessing", "StandardScaler"):
        if not hasattr(step, "scale_") or getattr(step, "_sklearn_output_config", None):
            return None
        mean = np.asarray(step.mean_, dtype=np.float64) if step.with_mean else None
        scale = np.asarray(step.scale_, dtype=np.float64) if step.with_std else None
        return _Standardise(mean, scale)
    if _is(step, "sklearn.pipeline", "Pipeline"):
        return _pipeline(step, last=_compile_transform)
    return None


def _pipeline(pipeline: Any, *, last: Callable[[Any], Transform | None]) -> Transform | None:
    """A Pipeline's transforms, then its last step compiled by `last` (a transform or a scorer)."""
    *head, (_, final) = pipeline.steps
    parts = [_compile_transform(s) for _, s in head] + [last(final)]
    if any(p is None for p in parts):
        return None
    return _Chain(parts[:-1], parts[-1])  # type: ignore[arg-type]


def _compile(model: Any) -> Transform | None:
    if type(model) is PlattCalibrated:
        base = _compile(model.base)
        return None if base is None else _Platt(base, a=model.a, b=model.b)
    if _is(model, "sklearn.pipeline", "Pipeline"):
        return _pipeline(model, last=_compile)
    if _is(model, "sklearn.linear_model", "LogisticRegression"):
        coef = np.asarray(getattr(model, "coef_", np.zeros((0, 0))), dtype=np.float64)
        if coef.ndim != 2 or coef.shape[0] != 1 or len(getattr(model, "classes_", ())) != 2:
            return None  # unfitted or multinomial: not an offloader we know how to replay
        return _Linear(coef, np.asarray(model.intercept_, dtype=np.float64))
    return None


class CompiledScorer:
    """`offloader_scores(model, x)` for a model `compile_scorer` understood, in numpy."""

    def __init__(self, run: Transform, *, model: Any) -> None:
        self._run = run
        self.model_name = type(model).__name__
        inner = model.base if isinstance(model, PlattCalibrated) else model
        self.n_features: int | None = getattr(inner, "n_features_in_", None)  # as sklearn checks it

    def __call__(self, features: np.ndarray) -> np.ndarray:
        x = check_logits(features)  # the same shape and finiteness rules as offloader_scores
        if self.n_features is not None and x.shape[1] != self.n_features:
            raise ValueError(f"offloader expects {self.n_features} features, got shape {x.shape}")
        if len(x) == 0:
            return np.zeros(0, dtype=np.float64)
        return np.asarray(self._run(x), dtype=np.float64).reshape(-1)

    def __repr__(self) -> str:
        return f"CompiledScorer({self.model_name})"


def compile_scorer(model: Any) -> CompiledScorer | None:
    """A numpy scorer equal to `offloader_scores(model, ·)`, or None where `model` has a part this
    module does not replay (any model but a logistic regression behind scalers and feature functions)."""
    run = _compile(model)
    return None if run is None else CompiledScorer(run, model=model)
