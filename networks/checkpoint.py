"""Checkpoints of any network built from an ``arch`` dict: ``{"arch", "state_dict", **extras}``.

The offline tools write them and the cloud's optional torch backend reads them, so this module
lives beside the network definitions, not with the training code. The arch says which family (or
the multi-branch wrapper) rebuilds the network (networks/family.py), so one loader serves them all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from networks.family import FamilyError, build_model


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or lacks the ``arch`` / ``state_dict`` it must hold."""


def save_checkpoint(model: nn.Module, path: Path, **extra: Any) -> None:
    """Write ``{"arch", "state_dict", **extra}``; extras must be plain data (they load with weights_only)."""
    clash = {"arch", "state_dict"} & extra.keys()
    if clash:
        raise ValueError(f"extra keys {sorted(clash)} would overwrite the checkpoint's own fields")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    # Write then rename, so a crash never leaves a half-written checkpoint under the real name.
    torch.save({"arch": model.arch, "state_dict": state, **extra}, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict (arch, state_dict and any extras), validated."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        # weights_only: a checkpoint is data, never code to unpickle.
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a corrupt file
        raise CheckpointError(f"checkpoint {path} is not a readable torch checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or not {"arch", "state_dict"} <= ckpt.keys():
        raise CheckpointError(f"checkpoint {path} must be a dict with 'arch' and 'state_dict'")
    return ckpt


def rebuild(arch: dict[str, Any]) -> nn.Module:
    """A fresh network of ``arch``: any family's, or a multi-branch net around one."""
    from networks import multibranch

    if isinstance(arch, dict) and arch.get("kind") == multibranch.KIND:
        return multibranch.build_multibranch(arch)
    return build_model(arch)


def load_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network from the checkpoint's arch and load its weights (strictly), in eval mode."""
    ckpt = read_checkpoint(path, map_location=map_location)
    try:
        model = rebuild(ckpt["arch"])
        model.load_state_dict(ckpt["state_dict"])
    except FamilyError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    except (ValueError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not fit its arch: {exc}") from exc
    return model.to(map_location).eval()
