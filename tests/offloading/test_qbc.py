from __future__ import annotations

import numpy as np
import pytest

from offloading.qbc import BootstrapCommittee, QBCSelection, qbc_select, random_select, vote_entropy


def test_vote_entropy_hand_values() -> None:
    votes = np.array([[0, 0, 1, 0], [0, 1, 0, 1], [0, 1, 0, 0], [0, 0, 0, 1]])  # (L=4, N=4)
    expected = [0.0, np.log(2), -(0.25 * np.log(0.25) + 0.75 * np.log(0.75)), np.log(2)]
    np.testing.assert_allclose(vote_entropy(votes), expected)
    # L = 3: one dissenter gives −(2/3 ln 2/3 + 1/3 ln 1/3).
    np.testing.assert_allclose(vote_entropy(np.array([[0], [1], [1]])), [0.6365141682948128])
    # Three classes, three different votes: ln 3, the maximum.
    np.testing.assert_allclose(vote_entropy(np.array([[0], [1], [2]]), n_classes=3), [np.log(3)])
    assert vote_entropy(np.zeros((3, 0), dtype=int)).shape == (0,)


@pytest.mark.parametrize(
    ("votes", "kwargs", "message"),
    [
        (np.array([0, 1]), {}, "2-D"),
        (np.array([[0, 2]]), {}, r"\[0, 2\)"),
        (np.array([[0.5, 1.0]]), {}, "integer"),
        (np.zeros((0, 3), dtype=int), {}, "L=0"),
        (np.zeros((2, 3), dtype=int), {"n_classes": 1}, "n_classes"),
    ],
)
def test_vote_entropy_rejects_bad_votes(votes: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        vote_entropy(votes, **kwargs)


class RecordingCommittee:
    """A fake committee of L members whose vote count for class 1 is feature 0 of the pool sample.

    With L = 100 and feature-0 values 0..49 the vote entropy strictly increases with feature 0,
    so the samples QBC must pick are known exactly.
    """

    def __init__(self, size: int = 100) -> None:
        self.size = size
        self.calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def __call__(self, x_train: np.ndarray, y_train: np.ndarray, x_pool: np.ndarray) -> np.ndarray:
        self.calls.append((x_train, y_train, x_pool))
        ones = x_pool[:, 0].astype(int)
        return (np.arange(self.size)[:, None] < ones[None, :]).astype(np.int64)  # (L, P)


def _known_case(n_complex: int, n_normal: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    wrong = np.zeros(n_complex + n_normal, dtype=bool)
    wrong[rng.choice(len(wrong), size=n_complex, replace=False)] = True
    x = rng.normal(size=(len(wrong), 3))
    x[~wrong, 0] = rng.permutation(n_normal)  # distinct vote counts for the normal samples
    return x, wrong


@pytest.mark.parametrize(("r", "n_random", "n_qbc"), [(0.5, 10, 10), (0.3, 6, 14), (1.0, 20, 0)])
def test_qbc_picks_r_m_random_and_the_highest_entropy_rest(r: float, n_random: int, n_qbc: int) -> None:
    x, wrong = _known_case(n_complex=20, n_normal=40)
    committee = RecordingCommittee()
    sel = qbc_select(x, wrong, r=r, seed=3, committee=committee)

    assert isinstance(sel, QBCSelection)
    np.testing.assert_array_equal(sel.complex_idx, np.flatnonzero(wrong))
    assert len(sel.random_idx) == n_random
    assert len(sel.qbc_idx) == n_qbc
    assert not wrong[sel.random_idx].any() and not wrong[sel.qbc_idx].any()
    assert len(np.unique(sel.indices)) == len(sel.indices) == 20 + n_random + n_qbc
    if n_qbc == 0:
        assert committee.calls == []  # nothing to query, no committee trained
        return
    # The committee trained on exactly the complex + random-normal samples, labelled 1 / 0.
    (x_train, y_train, x_pool), = committee.calls
    train_idx = np.concatenate([sel.complex_idx, sel.random_idx])
    np.testing.assert_array_equal(x_train, x[train_idx])
    np.testing.assert_array_equal(y_train, wrong[train_idx].astype(int))
    # The pool is every normal sample not drawn at random, and QBC took its top-entropy ones.
    pool = np.setdiff1d(np.flatnonzero(~wrong), sel.random_idx)
    assert len(x_pool) == len(pool)
    expected = pool[np.argsort(-x[pool, 0])[:n_qbc]]  # feature 0 = vote count, entropy rises with it
    np.testing.assert_array_equal(sel.qbc_idx, expected)  # eq. (12), highest first


def test_qbc_random_part_is_seeded() -> None:
    x, wrong = _known_case(n_complex=20, n_normal=40)
    a = qbc_select(x, wrong, seed=7, committee=RecordingCommittee())
    b = qbc_select(x, wrong, seed=7, committee=RecordingCommittee())
    c = qbc_select(x, wrong, seed=8, committee=RecordingCommittee())
    np.testing.assert_array_equal(a.indices, b.indices)
    assert not np.array_equal(a.random_idx, c.random_idx)


@pytest.mark.parametrize(
    ("n_complex", "n_normal", "r", "n_random", "n_qbc"),
    [
        (5, 40, 0.5, 3, 2),  # 2.5 rounds half up
        (1, 40, 0.4, 1, 0),  # at least one random normal sample, so the committee sees both classes
        (30, 10, 0.5, 10, 0),  # pool too small: random part first, QBC gets nothing left
        (30, 20, 0.5, 15, 5),  # QBC takes what remains
    ],
)
def test_qbc_counts_and_small_pools(n_complex: int, n_normal: int, r: float, n_random: int, n_qbc: int) -> None:
    x, wrong = _known_case(n_complex=n_complex, n_normal=n_normal)
    sel = qbc_select(x, wrong, r=r, committee=RecordingCommittee())
    assert (len(sel.complex_idx), len(sel.random_idx), len(sel.qbc_idx)) == (n_complex, n_random, n_qbc)


def test_qbc_validates_inputs() -> None:
    x, wrong = _known_case(n_complex=5, n_normal=10)
    with pytest.raises(ValueError, match="r must be in"):
        qbc_select(x, wrong, r=0.0)
    with pytest.raises(ValueError, match="bool mask"):
        qbc_select(x, wrong.astype(int))
    with pytest.raises(ValueError, match=r"shape \(15,\)"):
        qbc_select(x, wrong[:-1])
    with pytest.raises(ValueError, match=r"expected \(L, 7\)"):
        qbc_select(x, wrong, committee=lambda xt, yt, xp: np.zeros((3, 1), dtype=int))


def test_default_committee_selects_a_balanced_set_deterministically(synthetic: dict) -> None:
    logits = synthetic["student_logits"]["train"][:300]
    wrong = logits.argmax(1) != synthetic["labels"]["train"][:300]
    m = int(wrong.sum())
    a = qbc_select(logits, wrong, seed=1)
    b = qbc_select(logits, wrong, seed=1)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert len(a.random_idx) + len(a.qbc_idx) == m
    assert wrong[a.indices].sum() == m


def test_bootstrap_committee_votes_shape_and_needs_two_classes() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    y = (x[:, 0] > 0).astype(int)
    votes = BootstrapCommittee(size=4, seed=0)(x, y, rng.normal(size=(5, 3)))
    assert votes.shape == (4, 5)
    assert set(np.unique(votes)) <= {0, 1}
    with pytest.raises(ValueError, match="both classes"):
        BootstrapCommittee()(x, np.zeros(12, dtype=int), x)


def test_random_select_takes_m_random_normal_samples() -> None:
    x, wrong = _known_case(n_complex=8, n_normal=30)
    idx = random_select(x, wrong, seed=2)
    assert len(idx) == 16 and len(np.unique(idx)) == 16
    assert wrong[idx].sum() == 8
    np.testing.assert_array_equal(idx, random_select(x, wrong, seed=2))
    assert not np.array_equal(idx, random_select(x, wrong, seed=3))
    x, wrong = _known_case(n_complex=20, n_normal=5)
    assert len(random_select(x, wrong)) == 25  # every normal sample when there are fewer than M
