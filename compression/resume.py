"""Resumable training runs: the whole state of a loop saved after every epoch, restored on restart.

A CIFAR-10 teacher or student trains for tens of minutes to hours on the CPU; a stopped run must not
start over. After each epoch the loop writes the model, optimiser, scheduler, the data generator
(shuffling and augmentation), torch's RNG and the history so far to one file (write-then-rename, so a
crash never leaves half a file). A restarted run whose settings ``key`` matches continues with the
next epoch and replays exactly the batches the uninterrupted run would have seen; one whose key
differs starts over and says why. The file is removed when the run completes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


def save_state(path: Path, *, key: str, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: Any, generator: torch.Generator, history: list[dict]) -> None:
    """Everything needed to continue after ``epoch`` (1-based, completed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "key": key, "epoch": epoch, "history": history,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path | None, *, key: str, model: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: Any, generator: torch.Generator) -> tuple[int, list[dict]]:
    """(epochs already done, their history): 0 and [] without a matching state file."""
    if path is None or not Path(path).is_file():
        return 0, []
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a torn or foreign file: start over rather than fail the run
        log.warning("%s: not a resumable state (%s); starting over", path, exc)
        return 0, []
    if state.get("key") != key:
        log.warning("%s: saved by a run with other settings; starting over", path)
        return 0, []
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    log.info("%s: resuming after epoch %d", path, state["epoch"])
    return int(state["epoch"]), list(state["history"])


def finish(path: Path | None) -> None:
    """Drop the state file of a completed run."""
    if path is not None:
        Path(path).unlink(missing_ok=True)
