"""A trained planner as the device runs it: an MLP in numpy, no torch (weights in an .npz artifact).

The SAC actor and the DQN Q-network are both MLPs (Linear-ReLU-...-Linear) from the state vector
(splitting/state.py) to one score per (exit, partition, bits) cell; the device masks invalid cells
and takes the argmax (greedy, as deployed). Training (splitting/sac.py, dqn.py) saves the layers
with `save_mlp`; `MlpPolicy.load` reads them back and checks the shapes agree.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np


class PolicyError(ValueError):
    """A policy file that does not fit the state or the action space."""


def save_mlp(path: Path, layers: list[tuple[np.ndarray, np.ndarray]], *, meta: dict[str, Any]) -> Path:
    """Layers as (W (in, out), b (out,)) pairs, plus JSON metadata, in one .npz."""
    arrays = {f"W{i}": w.astype(np.float32) for i, (w, _) in enumerate(layers)}
    arrays |= {f"b{i}": b.astype(np.float32) for i, (_, b) in enumerate(layers)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        np.savez(handle, **arrays)
    return path


class MlpPolicy:
    """state (dim,) -> scores (A,); `act` masks and takes the argmax."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], meta: dict[str, Any]) -> None:
        for i in range(1, len(layers)):
            if layers[i][0].shape[0] != layers[i - 1][0].shape[1]:
                raise PolicyError(f"layer {i} takes {layers[i][0].shape[0]} inputs, layer {i - 1} gives "
                                  f"{layers[i - 1][0].shape[1]}")
        self.layers = layers
        self.meta = meta

    @property
    def obs_dim(self) -> int:
        return int(self.layers[0][0].shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.layers[-1][0].shape[1])

    @classmethod
    def from_bytes(cls, data: bytes) -> MlpPolicy:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            n = sum(1 for k in z.files if k.startswith("W"))
            layers = [(z[f"W{i}"], z[f"b{i}"]) for i in range(n)]
            meta = json.loads(bytes(z["meta"]).decode()) if "meta" in z.files else {}
        return cls(layers, meta)

    @classmethod
    def load(cls, path: Path) -> MlpPolicy:
        return cls.from_bytes(Path(path).read_bytes())

    def scores(self, obs: np.ndarray) -> np.ndarray:
        h = np.asarray(obs, dtype=np.float32)
        if h.shape[-1] != self.obs_dim:
            raise PolicyError(f"policy takes a state of {self.obs_dim} values, got {h.shape[-1]}")
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h

    def act(self, obs: np.ndarray, mask: np.ndarray) -> int:
        """The masked argmax: the deployed, greedy choice."""
        if mask.shape != (self.n_actions,):
            raise PolicyError(f"mask has {mask.shape} entries, the policy scores {self.n_actions} actions")
        if not mask.any():
            raise PolicyError("every action is masked; nothing to choose")
        scores = np.where(mask, self.scores(obs), -np.inf)
        return int(np.argmax(scores))
