"""Emulate a slower device on this machine: pin to cores and cap CPU time with a cgroup quota.

    emulation = DeviceEmulation(cpus=(0,), cpu_fraction=0.25)
    with emulation.cgroup() as group:               # created here, removed on exit
        subprocess.run(argv, preexec_fn=group.enter)  # the child runs pinned and throttled
    emulation.describe()  # "1 core (cpu 0), CFS quota 2500 us per 10000 us = 25% (cgroup v1 cpu)"

CFS bandwidth control runs a group for `quota` microseconds per `period`, then throttles it until
the next period. A short period (10 ms, not the default 100 ms) keeps a 5 ms inference from
finishing at full speed in one period and then stalling for 75 ms in the next: the cap is smoother.
cgroup v2 (`cpu.max` in the unified hierarchy) is used where its cpu controller is available; on a
hybrid host whose v2 tree lacks it (as the development machine has), the v1 cpu controller's
`cpu.cfs_quota_us` / `cpu.cfs_period_us`. `describe()` names which, and every measured number
taken inside one should be reported next to it. Needs root to create cgroups; pinning alone does not.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


class EmulationError(RuntimeError):
    """The emulation cannot be set up here; the message says what is missing."""


@dataclass(frozen=True)
class DeviceEmulation:
    """How slow a device to emulate."""

    cpus: tuple[int, ...] = (0,)
    """cores the device's processes may run on (sched_setaffinity)"""
    cpu_fraction: float | None = 0.25
    """share of one core per period the group may use (None: pinning only, no quota)"""
    period_us: int = 10_000
    """CFS period in microseconds"""
    root: Path = field(default=CGROUP_ROOT)
    """where cgroup hierarchies are mounted"""

    def __post_init__(self) -> None:
        if not self.cpus or any(c < 0 for c in self.cpus):
            raise ValueError(f"cpus must be a non-empty list of core ids, got {self.cpus}")
        if self.cpu_fraction is not None and not 0.01 <= self.cpu_fraction <= len(self.cpus):
            raise ValueError(f"cpu_fraction must be in [0.01, {len(self.cpus)}], got {self.cpu_fraction}")
        if not 1000 <= self.period_us <= 1_000_000:
            raise ValueError(f"period_us must be in [1000, 1000000], got {self.period_us}")

    @property
    def quota_us(self) -> int | None:
        return None if self.cpu_fraction is None else round(self.cpu_fraction * self.period_us)

    def backend(self) -> str:
        """'v2' or 'v1': which cgroup cpu controller a quota would use here (EmulationError if none)."""
        unified = self.root / "cgroup.controllers"
        if unified.is_file() and "cpu" in unified.read_text().split():
            return "v2"
        hybrid = self.root / "unified" / "cgroup.controllers"
        if hybrid.is_file() and "cpu" in hybrid.read_text().split():
            return "v2-hybrid"
        if (self.root / "cpu" / "cpu.cfs_quota_us").is_file():
            return "v1"
        raise EmulationError(f"no cgroup cpu controller under {self.root} (neither cpu.max in cgroup v2 nor "
                             "cpu.cfs_quota_us in v1); run with cpu_fraction=None to pin only")

    def describe(self) -> str:
        cores = f"{len(self.cpus)} core{'s' if len(self.cpus) > 1 else ''} (cpu {','.join(map(str, self.cpus))})"
        if self.quota_us is None:
            return f"{cores}, no CPU quota"
        try:
            kind = self.backend()
        except EmulationError:
            kind = "unavailable"
        return (f"{cores}, CFS quota {self.quota_us} us per {self.period_us} us = "
                f"{100 * self.quota_us / self.period_us:.0f}% of a core (cgroup {kind} cpu)")

    @contextlib.contextmanager
    def cgroup(self) -> Iterator[CpuGroup]:
        """A fresh cgroup with the quota (or none, when only pinning), removed on exit."""
        if self.quota_us is None:
            yield CpuGroup(self, path=None, procs=None)
            return
        kind = self.backend()
        name = f"edgecloud-device-{uuid.uuid4().hex[:8]}"
        if kind == "v1":
            path = self.root / "cpu" / name
            path.mkdir()
            (path / "cpu.cfs_period_us").write_text(str(self.period_us))
            (path / "cpu.cfs_quota_us").write_text(str(self.quota_us))
        else:
            base = self.root if kind == "v2" else self.root / "unified"
            path = base / name
            path.mkdir()
            (path / "cpu.max").write_text(f"{self.quota_us} {self.period_us}")
        try:
            yield CpuGroup(self, path=path, procs=path / "cgroup.procs")
        finally:
            _remove(path, kind)


def _remove(path: Path, kind: str) -> None:
    # A cgroup can only be removed once empty: move what is left back to the parent first.
    parent_procs = path.parent / "cgroup.procs"
    with contextlib.suppress(OSError):
        for pid in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                parent_procs.write_text(pid)
    with contextlib.suppress(OSError):
        path.rmdir()


@dataclass(frozen=True)
class CpuGroup:
    """A cgroup made by `DeviceEmulation.cgroup`; `enter` moves the calling process into it and pins it."""

    emulation: DeviceEmulation
    path: Path | None
    procs: Path | None

    def enter(self, pid: int = 0) -> None:
        """Put process `pid` (0: this one) in the group and pin it to the emulation's cores.

        Usable as a subprocess `preexec_fn`: the child is inside before it runs anything.
        """
        pid = pid or os.getpid()
        if self.procs is not None:
            self.procs.write_text(str(pid))
        os.sched_setaffinity(pid, set(self.emulation.cpus))

    def throttled_us(self) -> int | None:
        """Microseconds the group has been throttled so far (cpu.stat), if the controller reports it."""
        if self.path is None:
            return None
        try:
            stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines() if line)
        except (OSError, ValueError):
            return None
        if "throttled_usec" in stat:
            return int(stat["throttled_usec"])
        if "throttled_time" in stat:
            return int(stat["throttled_time"]) // 1000
        return None
