from __future__ import annotations

import numpy as np
import pytest

from offloading.resampling import accuracy_at, bootstrap_reach, rate_to_reach_teacher


def test_rate_to_reach_is_where_the_offloaded_mistakes_are_fixed() -> None:
    student_ok = np.array([False, True, True, True])
    teacher_ok = np.ones(4, dtype=bool)
    # The one student mistake ranked first: offloading it alone reaches the teacher.
    assert rate_to_reach_teacher(np.array([0.9, 0.1, 0.2, 0.3]), student_ok, teacher_ok) == 0.25
    # Ranked last: only offloading everything reaches the teacher.
    assert rate_to_reach_teacher(np.array([0.0, 0.1, 0.2, 0.3]), student_ok, teacher_ok) == 1.0
    # A student as good as the teacher reaches it offloading nothing.
    assert rate_to_reach_teacher(np.array([0.0, 0.1, 0.2, 0.3]), teacher_ok, teacher_ok) == 0.0


def test_accuracy_at_reads_the_curve_at_or_below_a_rate() -> None:
    scores = np.array([0.9, 0.1, 0.5, 0.5])
    student_ok = np.array([False, True, False, True])
    teacher_ok = np.array([True, True, True, False])
    # Achievable rates 0, 0.25, 0.75, 1 with accuracies 0.5, 0.75, 0.75, 0.75 (the two 0.5 scores tie).
    assert accuracy_at(scores, student_ok, teacher_ok, 0.0) == 0.5
    assert accuracy_at(scores, student_ok, teacher_ok, 0.25) == 0.75
    assert accuracy_at(scores, student_ok, teacher_ok, 0.5) == 0.75  # 0.5 is not achievable: 0.25's point
    assert accuracy_at(scores, student_ok, teacher_ok, 0.2) == 0.5


@pytest.fixture
def ranked() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    n = 400
    student_ok = rng.random(n) > 0.1
    teacher_ok = student_ok | (rng.random(n) > 0.2)  # fixes most of the student's mistakes
    hardness = (~student_ok).astype(float) + 0.01 * rng.random(n)
    return {"student_ok": student_ok, "teacher_ok": teacher_ok, "perfect": hardness, "reversed": -hardness,
            "noise": rng.random(n)}


def test_a_perfect_ranking_never_needs_more_than_its_rivals(ranked: dict[str, np.ndarray]) -> None:
    scores = {name: ranked[name] for name in ("perfect", "reversed", "noise")}
    boot = bootstrap_reach(scores, ranked["student_ok"], ranked["teacher_ok"], shipped="perfect", draws=50)
    assert boot.rivals == ("reversed", "noise") and boot.draws == 50
    assert boot.share_no_more == 1.0 and boot.share_no_more_each == (1.0, 1.0)
    assert boot.diff_high <= 0.0 < -boot.diff_median
    perfect, reversed_, _ = boot.spreads
    assert perfect.name == "perfect" and perfect.low <= perfect.median <= perfect.high < reversed_.low
    assert boot.at_rate is None and boot.share_on_or_above is None
    # At a 10% offload rate the perfect ranking sends the student's mistakes, the others mostly not.
    at = bootstrap_reach(scores, ranked["student_ok"], ranked["teacher_ok"], shipped="perfect", draws=20,
                         at_rate=0.1)
    assert at.at_rate == 0.1 and at.share_on_or_above == 1.0
    assert at.accuracy_at_rate[0] == max(at.accuracy_at_rate) and boot.accuracy_at_rate == ()
    assert at.accuracy_at_rate[1] == accuracy_at(ranked["reversed"], ranked["student_ok"], ranked["teacher_ok"], 0.1)
    # Reversed, the comparison flips: the shipped score loses every draw.
    flipped = bootstrap_reach(scores, ranked["student_ok"], ranked["teacher_ok"], shipped="reversed", draws=50)
    assert flipped.share_no_more == 0.0 and flipped.diff_low > 0.0


def test_bootstrap_is_seeded_and_paired(ranked: dict[str, np.ndarray]) -> None:
    # The same score under two names ties on every draw, which only a paired resample guarantees.
    scores = {"a": ranked["noise"], "b": ranked["noise"].copy()}
    boot = bootstrap_reach(scores, ranked["student_ok"], ranked["teacher_ok"], shipped="a", draws=30, seed=5)
    assert boot.share_no_more == 1.0 and boot.diff_low == boot.diff_high == 0.0
    again = bootstrap_reach(scores, ranked["student_ok"], ranked["teacher_ok"], shipped="a", draws=30, seed=5)
    assert again == boot
    other = bootstrap_reach(scores, ranked["student_ok"], ranked["teacher_ok"], shipped="a", draws=30, seed=6)
    assert other.spreads != boot.spreads


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"shipped": "missing"}, "shipped score 'missing'"),
    ({"draws": 0}, "draws must be >= 1"),
    ({"level": 1.0}, "level must be in"),
    ({"at_rate": 1.5}, r"at_rate must be in \[0, 1\], got 1.5"),
])
def test_bad_arguments_are_named(ranked: dict[str, np.ndarray], kwargs: dict, message: str) -> None:
    args = {"shipped": "perfect", **kwargs}
    with pytest.raises(ValueError, match=message):
        bootstrap_reach({"perfect": ranked["perfect"], "noise": ranked["noise"]}, ranked["student_ok"],
                        ranked["teacher_ok"], **args)


def test_needs_a_rival_and_matching_shapes(ranked: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="at least one rival"):
        bootstrap_reach({"perfect": ranked["perfect"]}, ranked["student_ok"], ranked["teacher_ok"],
                        shipped="perfect")
    with pytest.raises(ValueError, match=r"scores\['noise'\] has shape \(3,\)"):
        bootstrap_reach({"perfect": ranked["perfect"], "noise": ranked["noise"][:3]}, ranked["student_ok"],
                        ranked["teacher_ok"], shipped="perfect")
