"""Checkpoint selection on the training traces (splitting/select.py): the fastest actor at or above the
floor is kept, one below it never is, and `split train --select-floor-points` stores it with its scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecloud.cli import main
from shared.traces import Trace
from splitting.select import FloorSelector
from splitting.setup import SplitSetup
from tests.helpers.trace_folder import trace_folder

TRACES = [Trace(name=f"t{i}", times_s=np.array([0.0, 5.0]), mbit_s=np.array([2.0 + i, 0.05])) for i in range(2)]


def _always(setup: SplitSetup, action: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """An actor that scores `action` highest whatever the state."""
    bias = np.zeros(len(setup.space))
    bias[action] = 1.0
    return [(np.zeros((setup.spec.state.dim, len(setup.space))), bias)]


def test_the_fastest_actor_above_the_floor_is_kept(profiled_bundle: Path) -> None:
    setup = SplitSetup.load(profiled_bundle, need_spec=False)
    space = setup.space
    whole, exit1 = space.device_only(space.n_stages), space.device_only(1)
    assert setup.val_accuracy[exit1] < setup.val_accuracy[whole] - 0.01  # exit 1 is below a 1-point floor
    selector = FloorSelector(setup, TRACES, floor_points=1.0, duration_s=4.0)
    actor = _always(setup, whole)
    selector(1000, actor)
    actor[0][1][:] = 0.0  # training goes on moving the actor: the kept layers are a copy
    assert selector.best is not None and selector.best[1][0][1][whole] == 1.0
    selector(2000, _always(setup, exit1))  # faster, but below the floor: scored, never kept
    scores = {c.step: c for c in selector.scores}
    assert scores[2000].mean_latency_ms < scores[1000].mean_latency_ms and not scores[2000].above_floor
    assert selector.best is not None and selector.best[0].step == 1000
    assert scores[1000].expected_accuracy == pytest.approx(setup.val_accuracy[whole])
    record = selector.record()
    assert record["kept_step"] == 1000 and [c["step"] for c in record["checkpoints"]] == [1000, 2000]
    assert record["floor"] == pytest.approx(setup.val_accuracy[whole] - 0.01)
    with pytest.raises(ValueError, match="at least one training trace"):
        FloorSelector(setup, [])


def test_split_train_keeps_the_selected_checkpoint(profiled_bundle: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(profiled_bundle, bundle)
    traces = trace_folder(tmp_path / "up")
    # 1,200 steps: learning starts after 1,000; checkpoints at 1,050 and 1,200 (every 150 steps, and the end).
    assert main(["split", "train", "--bundle", str(bundle), "--traces", str(traces), "--steps", "1200", "--no-dqn",
                 "--select-floor-points", "100", "--select-every", "150", "--deadline-ms", "250",
                 "--no-progress"]) == 0
    setup = SplitSetup.load(bundle)
    selection = setup.spec.training["sac"]["selection"]
    steps = [c["step"] for c in selection["checkpoints"]]
    assert steps == [1050, 1200] and all(c["above_floor"] for c in selection["checkpoints"])  # 100 points down
    fastest = min(selection["checkpoints"], key=lambda c: c["mean_latency_ms"])
    assert selection["kept_step"] == fastest["step"]
    stored = json.loads((bundle / "split" / "config.json").read_text())
    assert stored["train"]["select_floor_points"] == 100.0
