"""Device emulation: the cgroup quota slows a process down, and the description says what was used."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.device import DeviceEmulation, EmulationError


def test_describe_names_cores_and_quota() -> None:
    text = DeviceEmulation(cpus=(0,), cpu_fraction=0.25, period_us=10_000).describe()
    assert "cpu 0" in text and "2500 us per 10000 us = 25%" in text


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="cpu_fraction"):
        DeviceEmulation(cpus=(0,), cpu_fraction=3.0)
    with pytest.raises(ValueError, match="cpus"):
        DeviceEmulation(cpus=())


def test_no_controller_is_an_error_that_says_so(tmp_path: Path) -> None:
    with pytest.raises(EmulationError, match="no cgroup cpu controller"):
        DeviceEmulation(root=tmp_path).backend()


def _busy_seconds() -> list[str]:
    code = "import time\nt=time.perf_counter()\nn=0\nwhile n < 3_000_000: n += 1\nprint(time.perf_counter()-t)"
    return [sys.executable, "-c", code]


@pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups needs root")
def test_quota_caps_the_share_of_a_core() -> None:
    # Wall time over CPU time, not against an unlimited run: on a busy machine an unlimited process may
    # get no more than the quota either, but a capped one can never get more than its fraction.
    emulation = DeviceEmulation(cpus=(0,), cpu_fraction=0.2)
    try:
        emulation.backend()
    except EmulationError as err:
        pytest.skip(str(err))
    with emulation.cgroup() as group:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(_busy_seconds(), preexec_fn=group.enter, check=True, capture_output=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        assert group.path is not None and group.path.exists()
        throttled = group.throttled_us()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert not group.path.exists()  # removed on exit
    assert cpu / wall <= 0.2 * 1.25  # at most a fifth of a core (plus start-up outside the period accounting)
    assert throttled is None or throttled > 0


def test_trace_replay_paces_chunks_one_after_another() -> None:
    import numpy as np

    from shared.traces import Trace
    from testbed.delay_proxy import SerialLink

    # 1 Mbit/s for 10 s, then 0.1 Mbit/s: 1250 bytes take 10 ms, then 100 ms.
    link = SerialLink(Trace(name="t", times_s=np.array([0.0, 10.0]), mbit_s=np.array([1.0, 0.1])), start_unix=0.0)
    first = link.finish(1250, now=5.0, loop_to_unix=0.0)
    second = link.finish(1250, now=5.0, loop_to_unix=0.0)  # arrives while the first is on the link
    assert abs(first - 5.010) < 1e-9 and abs(second - 5.020) < 1e-9
    late = link.finish(1250, now=12.0, loop_to_unix=0.0)
    assert abs(late - 12.1) < 1e-9
