"""Out-of-fold student logits: what a student says about training samples it was never trained on.

The SL offloader (Zhang et al. §V) learns "is the student wrong?" from the student's logits on the
training split. But the final student was distilled on that very split and is right on nearly all
of it (digits: 14 wrong of ~1,300), so its few mistakes there are unrepresentative of its mistakes
on new inputs. Two ways to get realistic mistakes, both measured in docs/results.md:

* cross-fitting (stacking's out-of-fold predictions, Wolpert 1992): split the training split into
  K folds; for each fold, distil a copy of the student's starting point (the RL search's best
  student) on the other K − 1 folds and record its logits on the held-out fold. Every training
  sample then has logits from a student that did not fit it.
* a held-out slice (`holdout_indices`): the final student is distilled without it, and its own
  logits on the slice are the offloader's training data.

    logits = out_of_fold_logits(search_best, teacher, dataset, distill_cfg, folds=5, seed=0)
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from compression.distill import DistillConfig, distill
from compression.teacher import predict_logits

if TYPE_CHECKING:
    from torch import nn

    from shared.datasets import Dataset

log = logging.getLogger(__name__)


def fold_indices(n: int, folds: int, *, seed: int) -> list[np.ndarray]:
    """`folds` disjoint, sorted index arrays covering range(n), sizes differing by at most one."""
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
    if n < folds:
        raise ValueError(f"cannot split {n} samples into {folds} folds")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, folds)]


def holdout_indices(n: int, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held): a seeded random `fraction` of range(n) held out, both sorted."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    n_held = round(fraction * n)
    if n_held < 1 or n_held >= n:
        raise ValueError(f"holdout fraction {fraction} of {n} samples leaves an empty side")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def with_train_subset(dataset: Dataset, index: np.ndarray) -> Dataset:
    """The dataset with its training split cut to `index` (val, test and statistics unchanged)."""
    train = dataset.train
    return dataclasses.replace(dataset, train=dataclasses.replace(train, x=train.x[index], y=train.y[index]))


def out_of_fold_logits(
    student_init: nn.Module,
    teacher: nn.Module,
    dataset: Dataset,
    cfg: DistillConfig,
    *,
    folds: int,
    seed: int,
    progress: bool = True,
    state_dir: Path | None = None,
    key: str = "",
) -> np.ndarray:
    """(N_train, K) float32: row i comes from a copy of `student_init` distilled without sample i.

    `student_init` is left untouched; each fold distils its own deep copy with `cfg` (a seed per
    fold, so the folds' batch orders differ but the whole run is reproducible). With `state_dir` a
    stopped run keeps its finished folds (saved with `key`, which must name everything they depend on)
    and resumes the interrupted one after its last epoch; the folder is removed at the end.
    """
    parts = fold_indices(len(dataset.train.y), folds, seed=seed)
    logits: np.ndarray | None = None
    bar = tqdm(parts, desc="cross-fitting students", disable=not progress)
    for k, held in enumerate(bar):
        done = None if state_dir is None else Path(state_dir) / f"fold{k}.npz"
        if done is not None and done.is_file() and str(np.load(done)["key"]) == key:
            fold_logits = np.load(done)["logits"]
            log.info("fold %d/%d: reusing %s", k + 1, folds, done)
        else:
            fold_logits = _fold(student_init, teacher, dataset, held, cfg.model_copy(update={"seed": seed + k}),
                                state=None if state_dir is None else Path(state_dir) / f"fold{k}.pt",
                                what=f"fold {k + 1}/{folds}")
            if done is not None:
                done.parent.mkdir(parents=True, exist_ok=True)
                np.savez(done, logits=fold_logits, key=np.array(key))
        if logits is None:
            logits = np.zeros((len(dataset.train.y), fold_logits.shape[1]), dtype=np.float32)
        logits[held] = fold_logits
        wrong = float((fold_logits.argmax(1) != dataset.train.y[held]).mean())
        bar.set_postfix(held_out_error=f"{wrong:.4f}")
    assert logits is not None  # folds >= 2 guarantees at least one iteration
    if state_dir is not None:
        shutil.rmtree(state_dir, ignore_errors=True)
    return logits


def _fold(student_init: nn.Module, teacher: nn.Module, dataset: Dataset, held: np.ndarray, cfg: DistillConfig,
          *, state: Path | None, what: str) -> np.ndarray:
    """One fold: a copy of `student_init` distilled on every sample but `held`, and its logits on `held`."""
    fit_idx = np.setdiff1d(np.arange(len(dataset.train.y)), held, assume_unique=True)
    student = copy.deepcopy(student_init)
    history = distill(student, teacher, with_train_subset(dataset, fit_idx), cfg, progress=False, state_path=state)
    fold_logits = predict_logits(student, dataset.train.x[held], dataset.mean, dataset.std,
                                 device=cfg.device)  # (|held|, K)
    wrong = float((fold_logits.argmax(1) != dataset.train.y[held]).mean())
    log.info("%s: val accuracy %.4f, wrong on %.2f%% of its %d held-out samples", what,
             history[-1]["val_accuracy"], 100 * wrong, len(held))
    return fold_logits
