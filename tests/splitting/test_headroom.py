"""bench/split_headroom.py: the Lagrangian bound is a true lower bound (brute force, stalls and backlog
included), and the bench reports every side's latency, accuracy and miss rate over deadlines and RTTs."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.traces import read_trace
from splitting.env import EnvConfig, SplitEnv
from splitting.setup import SplitSetup
from tests.deploy.tools import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
import split_headroom  # bench/ holds scripts, not a package


def mixed_optimum(latency: np.ndarray, accuracy: np.ndarray, floor: float) -> float:
    """Exact min of E[latency] over every distribution on the points with E[accuracy] >= floor.

    A linear programme with one constraint besides the simplex has an optimum on at most two points,
    and only points on the (latency, accuracy) Pareto front can be in it: try every pair of those.
    """
    best = min((float(lat) for lat, acc in zip(latency, accuracy, strict=True) if acc >= floor), default=np.inf)
    front, top = [], -np.inf
    for i in np.argsort(latency, kind="stable"):
        if accuracy[i] > top:
            front.append(int(i))
            top = accuracy[i]
    for i, j in itertools.product(front, front):
        if accuracy[i] < floor <= accuracy[j]:
            w = (floor - accuracy[i]) / (accuracy[j] - accuracy[i])
            best = min(best, float((1 - w) * latency[i] + w * latency[j]))
    return best


def test_dual_bound_matches_the_mixed_optimum() -> None:
    # Two actions per request: 10 ms at 50% or 20 ms at 100%. Mean accuracy >= 75% needs half of the
    # requests on the slow action (or each at 50/50): the optimum is 15 ms, and no choice does better.
    grid = split_headroom.Grid(latency_ms=np.array([[10.0, 20.0]] * 4), accuracy=np.array([[0.5, 1.0]] * 4),
                               reward=np.zeros((4, 2)))
    assert split_headroom.dual_bound(grid, 0.75) == pytest.approx(15.0, rel=1e-3)
    assert split_headroom.dual_bound(grid, 0.5) == pytest.approx(10.0)  # the fast action alone is feasible


def test_dual_bound_equals_the_brute_force_optimum_of_small_instances() -> None:
    # Every sequence of choices of 3 requests among 4 actions, and every mixture of sequences (any
    # randomised, clairvoyant planner): the dual is below all of them and, the problem being a linear
    # programme once mixtures are allowed, equal to the best.
    rng = np.random.default_rng(0)
    for _ in range(25):
        latency, accuracy = rng.uniform(5, 100, (3, 4)), rng.uniform(0.2, 1.0, (3, 4))
        grid = split_headroom.Grid(latency, accuracy, reward=-latency)
        seqs = list(itertools.product(range(4), repeat=3))
        seq_latency = np.array([np.mean([latency[r, a] for r, a in enumerate(s)]) for s in seqs])
        seq_accuracy = np.array([np.mean([accuracy[r, a] for r, a in enumerate(s)]) for s in seqs])
        for floor in np.quantile(seq_accuracy, [0.1, 0.5, 0.9]):
            best = mixed_optimum(seq_latency, seq_accuracy, float(floor))
            bound = split_headroom.dual_bound(grid, float(floor))
            assert bound <= best + 1e-9
            assert bound == pytest.approx(best, rel=1e-6)


def test_dual_bound_never_exceeds_a_feasible_choice() -> None:
    rng = np.random.default_rng(0)
    latency, accuracy = rng.uniform(5, 100, (200, 6)), rng.uniform(0.2, 1.0, (200, 6))
    grid = split_headroom.Grid(latency, accuracy, reward=-latency)
    for _ in range(20):
        pick = rng.integers(0, 6, 200)
        r = np.arange(200)
        floor = float(accuracy[r, pick].mean())
        assert split_headroom.dual_bound(grid, floor) <= float(latency[r, pick].mean()) + 1e-9


@pytest.mark.parametrize("hedge,hedge_exits", [(False, ()), (True, ()), (True, (2, 3))],
                         ids=["grid", "with-hedge", "with-early-exit-hedges"])
def test_bound_holds_over_every_action_sequence_of_the_real_environment_with_stalls(
        profiled_bundle: Path, tmp_path: Path, hedge: bool, hedge_exits: tuple[int, ...]) -> None:
    # A 0.3 s trace of 0.1 s samples: 0.5 Mbit/s, a stall (0 Mbit/s, floored when read), then 0.3 Mbit/s.
    # Three requests 0.1 s apart: the second one's upload is caught in the stall and abandoned at the
    # deadline, and its bytes still hold the uplink when the third is sent (the backlog the bound relaxes).
    (tmp_path / "stall").write_text("0.0\t0.5\n0.1\t0\n0.2\t0.3\n")
    trace = read_trace(tmp_path / "stall")
    setup = SplitSetup.load(profiled_bundle, need_spec=False)
    if hedge:  # the hedge's upload goes on after the device answers: its backlog must not beat the bound either
        setup = setup.with_regime(setup.regime.override(hedge=True, hedge_exits=hedge_exits))
        assert len(setup.space.hedge_indices()) == 1 + len(hedge_exits)
    cfg = EnvConfig(period_s=0.1, deadline_ms=80.0, rtt_ms=10.0, random_start=False, measure_noise=0.0)
    env = SplitEnv(setup.cost_model(), [trace], setup.val_accuracy, cfg=cfg)
    valid = np.flatnonzero(setup.space.valid)
    grid = split_headroom.cost_grid(env, stride=1, valid=valid)
    assert grid.latency_ms.shape == (3, len(valid))

    seq_latency, seq_accuracy, backlogged, fallbacks = [], [], 0, 0
    for seq in itertools.product(valid, repeat=3):
        env.reset(options={"trace": 0, "start_s": 0.0})
        env.sample_index = 0
        latency, accuracy = [], []
        for r, action in enumerate(seq):
            _, _, _, _, info = env.step(int(action))
            latency.append(info["latency_ms"])
            accuracy.append(setup.val_accuracy[info["answered"]])
            backlogged += info["latency_ms"] > grid.latency_ms[r, int(np.flatnonzero(valid == action)[0])] + 1e-9
            fallbacks += info["fallback"]
        seq_latency.append(np.mean(latency))
        seq_accuracy.append(np.mean(accuracy))
    assert backlogged > 0 and fallbacks > 0  # the instance exercises both the backlog and the fallback
    seq_latency_a, seq_accuracy_a = np.asarray(seq_latency), np.asarray(seq_accuracy)
    teacher = float(setup.val_accuracy[setup.space.device_only(4)])
    for floor in (teacher - 0.01, float(np.median(seq_accuracy_a)), float(seq_accuracy_a.min())):
        assert split_headroom.dual_bound(grid, floor) <= mixed_optimum(seq_latency_a, seq_accuracy_a, floor) + 1e-9


def _traces(folder: Path) -> Path:
    folder.mkdir()
    (folder / "steady").write_text("".join(f"{t}\t4.0\n" for t in range(60)))
    (folder / "stalls").write_text("".join(f"{t / 10:.1f}\t{0.0 if (t // 7) % 3 == 0 else 1.5}\n"
                                           for t in range(600)))
    return folder


def test_bench_reports_every_side_and_a_bound_at_the_target_accuracy(
        profiled_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    traces = _traces(tmp_path / "traces")
    out = tmp_path / "headroom.json"
    code = split_headroom.main(["--bundle", str(profiled_bundle), "--traces", str(traces), "--train-traces",
                                str(traces), "--model-scales", "1", "4", "--deadlines-ms", "60", "100",
                                "--rtts-ms", "10", "--server-payload", "jpeg", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [(r["model_scale"], r["deadline_ms"], r["rtt_ms"]) for r in rows] == [
        (1.0, 60.0, 10.0), (1.0, 100.0, 10.0), (4.0, 60.0, 10.0), (4.0, 100.0, 10.0)]
    assert report["stride"] == 1  # one trace stalls: every request counts
    for row in rows:
        assert row["requests"] == 2 * 240
        sides = row["strategies"]
        assert set(split_headroom.SIDES) <= set(sides)
        for s in sides.values():
            assert {"mean_latency_ms", "accuracy", "deadline_miss_rate", "fallback_rate"} <= set(s)
            assert s["requests"] == row["requests"]
            # Any strategy at least as accurate as the floor is a feasible planner: the bound is below it.
            if s["accuracy"] >= row["floor_accuracy"]:
                assert row["bound_ms"] <= s["mean_latency_ms"] + 1e-9
        assert row["floor_accuracy"] == pytest.approx(row["teacher_accuracy"] - 0.01)
        assert row["headroom"] == pytest.approx(1 - row["bound_ms"] / sides["neurosurgeon"]["mean_latency_ms"])
        # With --server-payload jpeg the planners' server-only action is the JPEG upload.
        if row["neurosurgeon_action"] == "server":
            assert sides["neurosurgeon"]["mean_latency_ms"] == sides["server_only_jpeg"]["mean_latency_ms"]
    # Heavier segments make the oracle slower; a longer deadline lets fewer offloads fall back.
    assert rows[2]["strategies"]["oracle"]["mean_latency_ms"] > rows[0]["strategies"]["oracle"]["mean_latency_ms"]
    assert (rows[1]["strategies"]["server_only_raw"]["fallback_rate"]
            <= rows[0]["strategies"]["server_only_raw"]["fallback_rate"])
    printed = capsys.readouterr().out
    assert "| deadline ms | RTT ms | scale | strategy |" in printed and "25% reachable" in printed


def test_bench_samples_stall_free_traces_and_takes_the_regime_from_the_bundle(
        profiled_bundle: Path, tmp_path: Path) -> None:
    traces = tmp_path / "steady"
    traces.mkdir()
    for name in ("a", "b"):
        (traces / name).write_text("".join(f"{t}\t4.0\n" for t in range(60)))
    out = tmp_path / "headroom.json"
    assert split_headroom.main(["--bundle", str(profiled_bundle), "--traces", str(traces), "--train-traces",
                                str(traces), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["stride"] == split_headroom.STRIDE_WITHOUT_STALLS
    (row,) = report["rows"]
    # No regime in this bundle: MNIST's deadline and RTT; 240 requests a trace, every 8th counted.
    assert (row["deadline_ms"], row["rtt_ms"]) == (100.0, 40.0)
    assert row["requests"] == 2 * 30
