"""A server's whole process tree, read from /proc (Linux): its processes, their CPU time and cores.

A server is more than the process we started: Triton runs pytriton's Python process, the
`tritonserver` binary and a python-backend stub per model instance, and all of them do the work of
a request. Pinning and CPU accounting therefore cover every process under the one we started.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (proc(5) fields 14, 15)


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])  # proc(5) field 4, ppid
    except (OSError, IndexError, ValueError):  # gone between the listing and the read
        return None


def tree(pid: int) -> list[int]:
    """`pid` and every live process descended from it (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (parent := _parent(int(entry.name))) is not None:
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time used so far by every live process of the tree; a process that already exited is not counted."""
    total = 0.0
    for member in tree(pid):
        try:
            total += cpu_seconds(member)
        except (OSError, IndexError):  # exited while we looked
            continue
    return total


@dataclass(frozen=True)
class Placement:
    """Where a process tree may run: what was looked at, and the union of its threads' affinity masks."""

    processes: int
    """Live processes in the tree."""
    threads: int
    """Threads over all those processes."""
    cores: frozenset[int]
    """Every core at least one of those threads may run on."""

    def within(self, allowed: set[int]) -> bool:
        return self.threads > 0 and self.cores <= allowed


def placement(pid: int) -> Placement:
    """The affinity of every thread of every process in the tree (threads can be pinned one by one)."""
    processes = threads = 0
    cores: set[int] = set()
    for member in tree(pid):
        try:
            tids = [int(t.name) for t in Path(f"/proc/{member}/task").iterdir()]
        except OSError:  # exited while we looked
            continue
        processes += 1
        for tid in tids:
            try:
                cores |= os.sched_getaffinity(tid)
            except OSError:
                continue
            threads += 1
    return Placement(processes=processes, threads=threads, cores=frozenset(cores))
