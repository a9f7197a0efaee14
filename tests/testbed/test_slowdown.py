"""testbed.slowdown: a pass held k times its CPU time, calibrated against a published device time."""

from __future__ import annotations

import time

import numpy as np
import pytest

from testbed.slowdown import PI4_CIFAR10, Slowdown, calibrate


def _work(n: int) -> float:
    """Pure CPU work in this thread (numpy releases nothing here worth measuring)."""
    x = np.random.default_rng(0).random((n, n))
    for _ in range(5):
        x = x @ x / n
    return float(x.sum())


def test_a_pass_takes_k_times_its_cpu_time() -> None:
    spent: list[float] = []

    def timed() -> float:
        cpu = time.thread_time()
        value = _work(150)
        spent.append(time.thread_time() - cpu)
        return value

    started = time.perf_counter()
    assert Slowdown(4.0).run(timed) == _work(150)
    wall = time.perf_counter() - started
    assert spent[0] > 0
    assert wall >= 4.0 * spent[0] * 0.95  # held until four times the pass's own CPU time


def test_factor_one_adds_nothing_and_below_one_is_refused() -> None:
    assert Slowdown(1.0).run(lambda: 7) == 7
    with pytest.raises(ValueError, match="slowdown factor must be >= 1"):
        Slowdown(0.5)


def test_calibration_is_the_published_time_over_the_host_time() -> None:
    assert PI4_CIFAR10.ms_per_image == 17.4
    assert calibrate(1.74) == pytest.approx(10.0)
    assert calibrate(100.0) == 1.0  # a device never emulates faster than the host
    with pytest.raises(ValueError, match="host_ms must be > 0"):
        calibrate(0.0)
