"""Bandwidth traces: real throughput over time, for emulating a changing network (numpy only).

A trace file is plain text, one sample a line: `time_s<TAB>throughput_mbit_s` (the format of the
Pensieve-prepared FCC and Norway HSDPA traces in `../shared/data/traces`). `Trace.at(t)` reads the
throughput in force at time t (the last sample at or before t, wrapping around at the end, so a
run longer than its trace replays it), and `transfer_s` integrates it: how long `n` bytes take to
cross the link when they start at t.

Which folders to use for what is the data's own rule (traces/README.md): fit and tune on `fcc/`,
`norway-hsdpa/` and `cellular-up/`, report on `norway-hsdpa-test/` and `cellular-up-test/`, fit
nothing on the latter. `TRAIN_SETS` and `TEST_SETS` name them, and `load_traces` refuses a test
folder where a training one is required.

The cellular uplink traces stall: 0 Mbit/s samples, floored at `MIN_MBIT_S` when read so that a
transfer in a stall is slow, not infinite. `Trace.stall_share` says how much of a trace is stalled;
`pair_traces` matches downlink traces to uplink ones when each direction replays its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRAIN_SETS: tuple[str, ...] = ("fcc", "norway-hsdpa", "cellular-up")
TEST_SETS: tuple[str, ...] = ("norway-hsdpa-test", "cellular-up-test")
MIN_MBIT_S = 1e-3
"""Floor on throughput: a 0 Mbit/s sample would make every transfer take forever."""
STALL_MBIT_S = 2 * MIN_MBIT_S
"""At or below this a sample counts as a stall (a floored 0, or the trace's own near-zero)."""


class TraceError(ValueError):
    """A trace file or folder that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Trace:
    name: str
    times_s: np.ndarray  # (T,) float64, increasing, starting at 0
    mbit_s: np.ndarray   # (T,) float64, throughput in force from times_s[i] until times_s[i + 1]

    @property
    def duration_s(self) -> float:
        """Length of one pass: the last sample holds for the median sampling interval."""
        step = float(np.median(np.diff(self.times_s))) if len(self.times_s) > 1 else 1.0
        return float(self.times_s[-1]) + step

    def at(self, t: float) -> float:
        """Throughput (Mbit/s) in force at time t (wrapping around past the end)."""
        local = t % self.duration_s
        index = int(np.searchsorted(self.times_s, local, side="right")) - 1
        return float(self.mbit_s[max(index, 0)])

    def transfer_s(self, n_bytes: float, start_s: float) -> float:
        """Seconds for `n_bytes` to cross the link when they start at `start_s` (throughput changes mid-way)."""
        if n_bytes <= 0:
            return 0.0
        bits = 8.0 * n_bytes
        duration = self.duration_s
        # Walk the segments by index from where the transfer starts. Recomputing the segment from
        # `t % duration` each step can land a hair before a boundary it has already reached (floating
        # point), and then the walk makes no progress.
        local = start_s % duration
        base = start_s - local  # start of the current pass
        index = max(int(np.searchsorted(self.times_s, local, side="right")) - 1, 0)
        position = local
        for _ in range(1_000_000):  # bounded: a trace pass moves at least MIN_MBIT_S * duration bits
            segment_end = self.times_s[index + 1] if index + 1 < len(self.times_s) else duration
            rate = self.mbit_s[index] * 1e6  # bits/s
            span = max(0.0, segment_end - position)
            if rate * span >= bits:
                return base + position + bits / rate - start_s
            bits -= rate * span
            index, position = index + 1, segment_end
            if index >= len(self.times_s):
                index, position, base = 0, 0.0, base + duration
        raise TraceError(f"{self.name}: transfer of {n_bytes} bytes did not finish")  # pragma: no cover

    def mean_mbit_s(self) -> float:
        """Time-weighted mean throughput over one pass."""
        ends = np.append(self.times_s[1:], self.duration_s)
        return float(np.sum(self.mbit_s * (ends - self.times_s)) / self.duration_s)

    def stall_share(self, below_mbit_s: float = STALL_MBIT_S) -> float:
        """Share of one pass's time at or below `below_mbit_s` (0 for the Pensieve traces, ~10% cellular-up)."""
        ends = np.append(self.times_s[1:], self.duration_s)
        return float(np.sum((ends - self.times_s)[self.mbit_s <= below_mbit_s]) / self.duration_s)


def read_trace(path: Path) -> Trace:
    """One trace file; TraceError names the file and the line when it is not `time<TAB>mbit/s` lines."""
    path = Path(path)
    times, rates = [], []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise TraceError(f"{path}: cannot read it ({err})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            t, rate = float(fields[0]), float(fields[1])
        except (IndexError, ValueError):
            raise TraceError(f"{path}:{number}: expected 'time_s<TAB>mbit_s', got {line!r}") from None
        if not (np.isfinite(t) and np.isfinite(rate)) or rate < 0:
            raise TraceError(f"{path}:{number}: time and throughput must be finite, throughput >= 0, got {line!r}")
        if times and t <= times[-1]:
            raise TraceError(f"{path}:{number}: time {t} does not increase (previous {times[-1]})")
        times.append(t)
        rates.append(max(rate, MIN_MBIT_S))
    if not times:
        raise TraceError(f"{path}: no samples")
    start = times[0]
    return Trace(name=path.name, times_s=np.asarray(times) - start, mbit_s=np.asarray(rates))


def load_traces(folder: Path, *, purpose: str = "any") -> list[Trace]:
    """Every trace in `folder`, sorted by name. `purpose="train"` refuses a test folder (and the reverse)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TraceError(f"{folder}: trace folder does not exist")
    if purpose == "train" and folder.name in TEST_SETS:
        raise TraceError(f"{folder}: {folder.name} is for reporting only; fit and tune on {list(TRAIN_SETS)}")
    if purpose not in ("any", "train", "test"):
        raise ValueError(f"purpose must be any, train or test, got {purpose!r}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() not in (".md", ".txt"))
    if not files:
        raise TraceError(f"{folder}: no trace files")
    return [read_trace(path) for path in files]


def pair_traces(uplink: list[Trace], downlink: list[Trace] | None) -> list[Trace]:
    """The downlink trace for each uplink trace, in the uplink's order.

    None: each uplink trace carries the downlink too (the same object). Otherwise by file name where
    every uplink name has a downlink namesake, else by position, cycling the downlink list.
    """
    if downlink is None:
        return list(uplink)
    if not downlink:
        raise TraceError("downlink: no traces to pair with the uplink's")
    by_name = {t.name: t for t in downlink}
    if all(t.name in by_name for t in uplink):
        return [by_name[t.name] for t in uplink]
    return [downlink[i % len(downlink)] for i in range(len(uplink))]
