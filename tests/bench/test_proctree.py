"""bench/_proctree.py finds a process's descendants, their CPU time and the cores their threads may use."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from _proctree import placement, tree, tree_cpu_seconds

# A parent that starts a busy child and then waits: two processes, the child burning CPU.
PARENT = ("import subprocess, sys, time; "
          "subprocess.Popen([sys.executable, '-c', 'import time\\nt=time.time()\\nwhile time.time()-t<20: pass']); "
          "time.sleep(20)")


@pytest.fixture
def family() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    core = max(os.sched_getaffinity(0))
    parent = subprocess.Popen([sys.executable, "-c", PARENT], start_new_session=True,
                              preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    try:
        deadline = time.monotonic() + 10
        while len(tree(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield parent, core
    finally:
        os.killpg(parent.pid, 9)
        parent.wait()


def test_the_tree_holds_the_child_and_its_cpu_time(family: tuple[subprocess.Popen[bytes], int]) -> None:
    parent, _ = family
    members = tree(parent.pid)
    assert members[0] == parent.pid and len(members) == 2
    before = tree_cpu_seconds(parent.pid)
    time.sleep(0.5)
    assert tree_cpu_seconds(parent.pid) > before  # the busy child is counted


def test_placement_sees_the_inherited_mask(family: tuple[subprocess.Popen[bytes], int]) -> None:
    parent, core = family
    where = placement(parent.pid)
    assert where.processes == 2 and where.threads >= 2
    assert where.cores == {core}
    assert where.within({core})
    others = set(os.sched_getaffinity(0)) - {core}
    if others:
        assert not where.within(others)
