"""Query-by-committee sampling of the offloader's training set (Zhang et al. §V-B, Algorithm 2).

The student is right on most training samples, so the "normal" class swamps the M "complex"
(student-wrong) samples. Algorithm 2 keeps all M complex samples and balances them with M normal
ones: r·M drawn at random, and (1 − r)·M chosen from the rest by a committee's disagreement, so
that the normal half is rich in samples near the complex/normal boundary.

Counts: n_random = round_half_up(r·M), at least 1 when any normal sample is chosen (the committee
needs both classes to train), and n_qbc = M − n_random. When fewer than M normal samples exist,
the random part is filled first and QBC takes what remains.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from offloading.features import check_logits
from offloading.models import make_model

log = logging.getLogger(__name__)

# Heterogeneous members disagree more usefully than copies of one model; cycled for L > 3.
COMMITTEE_KINDS: tuple[str, ...] = ("svm", "rf", "knn")


class Committee(Protocol):
    """Fits L members on (x_train, y_train) and returns their votes on x_pool as an (L, P) int array."""

    def __call__(self, x_train: np.ndarray, y_train: np.ndarray, x_pool: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class BootstrapCommittee:
    """Query-by-bagging: member i is COMMITTEE_KINDS[i % 3] fitted on a stratified bootstrap resample."""

    size: int = 3
    """number of members L"""
    seed: int = 0
    """seeds both the resampling and the members"""

    def __call__(self, x_train: np.ndarray, y_train: np.ndarray, x_pool: np.ndarray) -> np.ndarray:
        if self.size < 1:
            raise ValueError(f"committee size must be >= 1, got {self.size}")
        classes = np.unique(y_train)
        if len(classes) != 2:
            raise ValueError(f"committee needs both classes in its training set, got {classes.tolist()}")
        rng = np.random.default_rng(self.seed)
        votes = np.empty((self.size, len(x_pool)), dtype=np.int64)  # (L, P)
        for i in range(self.size):
            # Resample each class on its own so that no member sees a one-class bootstrap.
            boot = np.concatenate(
                [rng.choice(np.flatnonzero(y_train == c), size=int((y_train == c).sum())) for c in classes]
            )
            member = make_model(COMMITTEE_KINDS[i % len(COMMITTEE_KINDS)], seed=self.seed + i)
            for key in member.get_params():
                if key.endswith("n_neighbors"):  # KNN cannot ask for more neighbours than samples
                    member.set_params(**{key: min(5, len(boot))})
            member.fit(x_train[boot], y_train[boot])
            votes[i] = member.predict(x_pool)
        return votes


@dataclass(frozen=True)
class QBCSelection:
    """Indices into the training split chosen by Algorithm 2."""

    indices: np.ndarray
    """all chosen samples: complex_idx, then random_idx, then qbc_idx"""
    complex_idx: np.ndarray
    """every student-wrong sample (M of them)"""
    random_idx: np.ndarray
    """r·M student-right samples drawn at random"""
    qbc_idx: np.ndarray
    """(1 − r)·M student-right samples with the highest vote entropy, highest first"""


def vote_entropy(votes: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """Eq. (11): −Σ_c (V(c)/L) log(V(c)/L) per sample, for votes (L, N) of class ids -> (N,) nats."""
    v = np.asarray(votes)
    if v.ndim != 2:
        raise ValueError(f"votes must be 2-D (L, N), got shape {v.shape}")
    if v.shape[0] < 1:
        raise ValueError("votes need at least one committee member (L >= 1), got L=0")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if v.dtype.kind not in "iub":
        raise ValueError(f"votes must be integer class ids, got dtype {v.dtype}")
    v = v.astype(np.int64)
    if v.size and (v.min() < 0 or v.max() >= n_classes):
        raise ValueError(f"votes must lie in [0, {n_classes}), got range [{v.min()}, {v.max()}]")
    n_members = v.shape[0]
    entropy = np.zeros(v.shape[1], dtype=np.float64)
    for c in range(n_classes):
        share = (v == c).sum(axis=0) / n_members  # V(c) / L
        nonzero = share > 0  # 0 · log 0 = 0
        entropy[nonzero] -= share[nonzero] * np.log(share[nonzero])
    return entropy


def _check_split(features: np.ndarray, wrong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = check_logits(features)
    w = np.asarray(wrong)
    if w.shape != (len(x),):
        raise ValueError(f"wrong must have shape ({len(x)},) to match features, got {w.shape}")
    if w.dtype != np.bool_:
        raise ValueError(f"wrong must be a bool mask, got dtype {w.dtype}")
    return x, w


def _counts(n_complex: int, n_normal: int, r: float) -> tuple[int, int]:
    """(n_random, n_qbc) per the module docstring's rounding rule."""
    if not 0.0 < r <= 1.0:
        raise ValueError(f"r must be in (0, 1], got {r}")
    n_random = int(np.floor(r * n_complex + 0.5))
    if n_complex > 0:
        n_random = max(n_random, 1)
    n_random = min(n_random, n_normal)
    n_qbc = min(n_complex - n_random, n_normal - n_random)
    return n_random, max(n_qbc, 0)


def qbc_select(
    features: np.ndarray,
    wrong: np.ndarray,
    *,
    r: float = 0.5,
    committee_size: int = 3,
    seed: int = 0,
    committee: Committee | None = None,
) -> QBCSelection:
    """Algorithm 2: all M complex + r·M random normal + (1 − r)·M normal with top vote entropy.

    `committee` defaults to BootstrapCommittee(committee_size, seed); pass another to control the
    votes (e.g. in tests). Entropy ties, common with L = 3 binary votes, break uniformly at random.
    """
    x, w = _check_split(features, wrong)
    rng = np.random.default_rng(seed)
    complex_idx = np.flatnonzero(w)
    normal_idx = np.flatnonzero(~w)
    n_random, n_qbc = _counts(len(complex_idx), len(normal_idx), r)

    shuffled = rng.permutation(normal_idx)
    random_idx = np.sort(shuffled[:n_random])
    pool = shuffled[n_random:]  # the remaining normal samples
    qbc_idx = np.zeros(0, dtype=np.int64)
    if n_qbc > 0:
        committee = committee if committee is not None else BootstrapCommittee(size=committee_size, seed=seed)
        train_idx = np.concatenate([complex_idx, random_idx])
        votes = np.asarray(committee(x[train_idx], w[train_idx].astype(np.int64), x[pool]))
        if votes.ndim != 2 or votes.shape[1] != len(pool):
            raise ValueError(f"committee returned votes of shape {votes.shape}, expected (L, {len(pool)})")
        entropy = vote_entropy(votes, n_classes=2)
        # Eq. (12): argmax of the entropy, n_qbc times; lexsort's last key is primary, the
        # random key breaks ties so that equal-entropy samples are taken without bias.
        order = np.lexsort((rng.random(len(pool)), -entropy))
        qbc_idx = pool[order[:n_qbc]]
        log.debug("QBC picked %d of %d pool samples, min entropy %.3f", n_qbc, len(pool),
                  float(entropy[order[n_qbc - 1]]))
    indices = np.concatenate([complex_idx, random_idx, qbc_idx]).astype(np.int64)
    return QBCSelection(indices=indices, complex_idx=complex_idx.astype(np.int64),
                        random_idx=random_idx.astype(np.int64), qbc_idx=qbc_idx.astype(np.int64))


def random_select(features: np.ndarray, wrong: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Fig. 3's baseline: all M complex samples + min(M, #normal) normal ones drawn at random.

    Returns the full training index set (complex first), the counterpart of QBCSelection.indices.
    """
    _, w = _check_split(features, wrong)
    rng = np.random.default_rng(seed)
    complex_idx = np.flatnonzero(w)
    normal_idx = np.flatnonzero(~w)
    chosen = rng.choice(normal_idx, size=min(len(complex_idx), len(normal_idx)), replace=False)
    return np.concatenate([complex_idx, np.sort(chosen)]).astype(np.int64)
