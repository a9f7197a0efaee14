"""Bandwidth traces: parsing, lookup, transfer times across rate changes, and the train/test rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.traces import MIN_MBIT_S, Trace, TraceError, load_traces, pair_traces, read_trace
from tests.conftest import REPO_ROOT

TRACES = REPO_ROOT.parent / "shared" / "data" / "traces"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_lookup_and_transfer_across_a_rate_change(tmp_path: Path) -> None:
    trace = read_trace(_write(tmp_path / "t", "0.0\t8.0\n1.0\t1.0\n2.0\t8.0\n"))
    assert trace.at(0.5) == 8.0 and trace.at(1.0) == 1.0 and trace.at(1.99) == 1.0
    assert trace.duration_s == pytest.approx(3.0)
    assert trace.at(3.5) == 8.0  # wraps around
    # 1 MB at 8 Mbit/s takes 1 s; starting at 0.5 s, half goes at 8 Mbit/s, the rest at 1 Mbit/s.
    assert trace.transfer_s(1_000_000, 0.0) == pytest.approx(1.0)
    half = 0.5 * 8e6 / 8  # bytes sent in the first 0.5 s
    rest = 1_000_000 - half  # then 1 Mbit/s for 1 s = 125,000 bytes, then 8 Mbit/s again
    expected = 0.5 + 1.0 + (rest - 125_000) * 8 / 8e6
    assert trace.transfer_s(1_000_000, 0.5) == pytest.approx(expected)
    assert trace.mean_mbit_s() == pytest.approx((8 + 1 + 8) / 3)
    assert trace.transfer_s(0, 1.0) == 0.0


@pytest.mark.parametrize(("text", "problem"), [
    ("0.0\tfast\n", r"t:1: expected 'time_s<TAB>mbit_s'"),
    ("0.0\t1.0\n0.0\t2.0\n", r"t:2: time 0.0 does not increase"),
    ("0.0\t-1\n", r"t:1: .*throughput >= 0"),
    ("\n", r"t: no samples"),
])
def test_bad_files_are_named_with_the_line(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(TraceError, match=problem):
        read_trace(_write(tmp_path / "t", text))


def test_zero_throughput_is_floored_so_transfers_end(tmp_path: Path) -> None:
    trace = read_trace(_write(tmp_path / "t", "0.0\t0.0\n1.0\t10.0\n"))
    assert trace.transfer_s(1000, 0.0) < 1.1


def test_real_traces_load_and_the_test_set_is_refused_for_fitting() -> None:
    train = load_traces(TRACES / "norway-hsdpa", purpose="train")
    assert len(train) == 68 and all(isinstance(t, Trace) for t in train)
    assert all(t.mean_mbit_s() > 0 for t in train)
    assert len(load_traces(TRACES / "fcc", purpose="train")) == 59
    assert len(load_traces(TRACES / "norway-hsdpa-test", purpose="test")) == 71
    with pytest.raises(TraceError, match="is for reporting only"):
        load_traces(TRACES / "norway-hsdpa-test", purpose="train")


def test_transfer_starting_a_hair_before_a_boundary_late_in_a_replay_finishes() -> None:
    # Found by the orchestration simulator: far into a replay, `t % duration` could land just below a
    # segment boundary the walk had already reached, and the walk stalled until its bound.
    from shared.traces import Trace

    trace = Trace(name="t", times_s=np.array([0.0, 0.1, 0.2]), mbit_s=np.array([0.001, 0.001, 5.0]))
    duration = trace.duration_s
    for k in (1, 7, 1234, 98765):
        start = k * duration + 0.1 - 1e-12
        took = trace.transfer_s(300.0, start)
        assert 0.0 < took < 2 * duration
    # exact: 2400 bits; the first two segments move 100 bits each at 1 kbit/s, the rest at 5 Mbit/s
    assert trace.transfer_s(300.0, 0.0) == pytest.approx(0.2 + 2200 / 5e6)


def test_cellular_uplink_traces_stall_and_their_test_half_is_refused_for_fitting() -> None:
    train = load_traces(TRACES / "cellular-up", purpose="train")
    assert len(train) == 28
    # 0 Mbit/s samples are floored on reading, and counted as stalls: about a tenth of the time.
    assert all(t.mbit_s.min() >= MIN_MBIT_S for t in train)
    assert 0.05 < float(np.mean([t.stall_share() for t in train])) < 0.2
    assert len(load_traces(TRACES / "cellular-up-test", purpose="test")) == 26
    with pytest.raises(TraceError, match="is for reporting only"):
        load_traces(TRACES / "cellular-up-test", purpose="train")
    assert all(t.stall_share() == 0.0 for t in load_traces(TRACES / "norway-hsdpa", purpose="train")[:5])


def test_stall_share_and_downlink_pairing(tmp_path: Path) -> None:
    trace = read_trace(_write(tmp_path / "t", "0.0\t0\n0.1\t2.0\n0.2\t0\n0.3\t1.0\n"))
    assert trace.stall_share() == pytest.approx(0.5)
    other = Trace(name="x", times_s=np.array([0.0]), mbit_s=np.array([3.0]))
    assert pair_traces([trace], None) == [trace]
    assert pair_traces([trace, trace], [other]) == [other, other]
    with pytest.raises(TraceError, match="no traces"):
        pair_traces([trace], [])
