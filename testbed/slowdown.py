"""A slower device on this host, faithfully: compute here, then hold the answer for (k − 1)× that time.

A CFS quota (testbed/device.py) caps a process's CPU time per period, but work shorter than the quota
runs at full speed and never notices it: a 2 ms segment under a 25% quota with a 10 ms period still
takes 2 ms (docs/results.md, "CFS quota does not stretch short work"). A device k times slower than a
host core needs k times the CPU time of every pass, so this emulation measures the pass's CPU time in
the calling thread (onnxruntime with one intra-op thread computes there) and sleeps until k times it
has passed. The thread stays busy throughout, so requests queue behind the slow pass as on a real
device. CPU time, not wall time: time the host spends on other work is not the device's.

k comes from a published measurement on the device being emulated, not from a guess:

    k = calibrate(host_ms=1.6)                 # our student's per-image time on one host core
    device = Slowdown(k)
    logits = device.run(session.run, ["logits"], {"input": x})

`PI4_CIFAR10` is the reference the project uses: Zhang et al.'s 675 KB CIFAR-10 student takes 17.4 ms
an image on a Raspberry Pi 4 (Cortex-A72, 1.5 GHz). k is the ratio for a network of the same kind and
size measured here; applying one k to every segment assumes the Pi's speed relative to this host is
the same for every convolution, which `edgecloud profile` on a real Pi replaces with measurements.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class PublishedTime:
    """One published inference time on a real device: what k is calibrated against."""

    device: str
    model: str
    ms_per_image: float
    source: str


PI4_CIFAR10 = PublishedTime(
    device="Raspberry Pi 4 Model B (Cortex-A72, 1.5 GHz)",
    model="the 675 KB RL-compressed, SP-distilled CIFAR-10 ResNet student",
    ms_per_image=17.4,
    source="Zhang et al., Edge-Cloud Cooperation for DNN Inference via RL and SL (the seed paper's Pi 4 runtime)",
)


def calibrate(host_ms: float, reference: PublishedTime | None = None) -> float:
    """k: how many times slower the reference device (default `PI4_CIFAR10`) runs a network that takes
    ``host_ms`` here."""
    if not host_ms > 0:
        raise ValueError(f"host_ms must be > 0, got {host_ms}")
    reference = PI4_CIFAR10 if reference is None else reference
    return max(1.0, reference.ms_per_image / host_ms)


class Slowdown:
    """Runs a callable and holds the calling thread until ``factor`` times its CPU time has passed."""

    def __init__(self, factor: float) -> None:
        if not factor >= 1.0:
            raise ValueError(f"slowdown factor must be >= 1, got {factor}")
        self.factor = float(factor)

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        started, cpu_started = time.perf_counter(), time.thread_time()
        result = fn(*args, **kwargs)
        if self.factor > 1.0:
            target = (time.thread_time() - cpu_started) * self.factor
            time.sleep(max(0.0, target - (time.perf_counter() - started)))
        return result

    def __repr__(self) -> str:
        return f"Slowdown({self.factor:g})"
