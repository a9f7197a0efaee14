"""Keep the SAC checkpoint the weight rule would pick, judged on the training traces (numpy; no test folder).

Why: at one reward weight SAC's seeds land 3-4 ms apart along the accuracy-latency frontier, and a
larger weight can land less accurate (docs/results.md, "Greedy's choice in SAC's state"): its actions
differ by a few ms of reward, below what its critics resolve, so the last actor of a run is a draw.
docs/results.md chooses weights by a rule on the training traces (the lowest mean latency whose
expected accuracy stays at or above the teacher's validation accuracy less a point); applying the same
rule to the actors a run passes through is model selection on training data, as early stopping on a
validation split is (the test folders are never read). Each checkpoint is scored as `split eval`
scores a planner: every training trace from its start at the regime's deadline, load 1.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from shared.traces import Trace
from splitting.baselines import Learned
from splitting.evaluate import eval_env, run_trace
from splitting.policy import MlpPolicy
from splitting.setup import SplitSetup

log = logging.getLogger(__name__)


def accuracy_floor(setup: SplitSetup, floor_points: float) -> float:
    """The rule's floor: the teacher's validation accuracy (the device's whole network) less `floor_points`."""
    return float(setup.val_accuracy[setup.space.device_only(setup.space.n_stages)]) - floor_points / 100.0


def meets_floor(expected_accuracy: float, floor: float) -> bool:
    """At or above the floor (a rounding hair below it counts: means over thousands of requests)."""
    return expected_accuracy >= floor - 1e-12


@dataclass
class Checkpoint:
    """One actor's score on the training traces."""

    step: int
    mean_latency_ms: float
    expected_accuracy: float
    """mean validation accuracy of whatever answered (the reward's accuracy)"""
    above_floor: bool


class FloorSelector:
    """Scores actors (`__call__(step, layers)`) and keeps the fastest one at or above the floor."""

    def __init__(self, setup: SplitSetup, traces: list[Trace], *, floor_points: float = 1.0,
                 duration_s: float | None = None) -> None:
        if not traces:
            raise ValueError("checkpoint selection needs at least one training trace")
        self.setup, self.traces, self.duration_s = setup, traces, duration_s
        self.env = eval_env(setup, traces)  # reset per trace, so one serves every checkpoint
        self.floor = accuracy_floor(setup, floor_points)
        self.scores: list[Checkpoint] = []
        self.best: tuple[Checkpoint, list[tuple[np.ndarray, np.ndarray]]] | None = None

    def score(self, layers: list[tuple[np.ndarray, np.ndarray]], step: int) -> Checkpoint:
        planner = Learned("sac", MlpPolicy(layers, {}))
        latency, accuracy = [], []
        for i in range(len(self.traces)):
            self.env.reset(seed=i)  # the estimator noise `split eval` gives trace i
            run = run_trace(self.env, planner, i, duration_s=self.duration_s)
            latency += run.latency_ms
            accuracy += [float(self.setup.val_accuracy[a]) for a in run.answered]
        mean_accuracy = float(np.mean(accuracy))
        return Checkpoint(step, float(np.mean(latency)), mean_accuracy, meets_floor(mean_accuracy, self.floor))

    def __call__(self, step: int, layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
        point = self.score(layers, step)
        self.scores.append(point)
        if point.above_floor and (self.best is None or point.mean_latency_ms < self.best[0].mean_latency_ms):
            self.best = (point, [(w.copy(), b.copy()) for w, b in layers])
        log.info("SAC checkpoint %d: %.2f ms at %.3f%% expected%s", step, point.mean_latency_ms,
                 100 * point.expected_accuracy, "" if point.above_floor else " (below the floor)")

    def record(self) -> dict[str, Any]:
        """What the spec keeps: the floor, every checkpoint's score and the one kept (None: the last actor)."""
        return {"floor": self.floor, "checkpoints": [asdict(c) for c in self.scores],
                "kept_step": None if self.best is None else self.best[0].step}
