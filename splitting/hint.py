"""Greedy's choice as part of the learned planners' state: a one-hot over the actions (numpy only).

Why: SAC and DQN with the device's measurements alone land on greedy's accuracy-latency frontier,
not past it, and their seeds spread 3 ms along it (docs/results.md, "Early-exit hedges"): rediscovering
what the cost model already predicts from the last transfer takes most of their training. Given
greedy's answer as an input, a learner only has to learn when to depart from it (a stall the
throughput history shows and the last sample hides, a deadline greedy's point estimate will miss), as
residual policy learning starts from a hand-built controller (Silver et al. 2018, "Residual Policy
Learning"). The hint is computed from what the device knows (splitting/baselines.py, `Greedy`: the
last measured bandwidth, the base RTT, the deadline and the load, under the valid-action mask), so the
environment and the live device compute it identically. It uses the planners' own reward weights
unless the spec names greedy's accuracy weight apart (`--hint-acc-weight`): greedy's frontier has a
cliff (on the CIFAR-10 ResNet, from 58 ms to always-hedge's 64 ms between weights 3.28 and 3.3), so a
learner rewarded a little more for accuracy than the greedy that hints it needs a hint from below it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from splitting.baselines import Greedy
from splitting.latency import CostModel
from splitting.state import StateConfig


class GreedyHint:
    """Appends greedy's choice, one-hot over the `n_actions` actions, to an observation."""

    def __init__(self, greedy: Greedy, n_actions: int) -> None:
        self.greedy, self.n_actions = greedy, n_actions

    def extend(self, obs: np.ndarray, mask: np.ndarray, view: Any) -> np.ndarray:
        """`obs` (StateTracker.observe) with the one-hot after it; `view` as every planner's (`tracker`,
        `deadline_ms`, `load`)."""
        hint = np.zeros(self.n_actions, dtype=np.float32)
        hint[self.greedy.choose(obs, mask, view)] = 1.0
        return np.concatenate([np.asarray(obs, dtype=np.float32), hint])


def greedy_hint(model: CostModel, val_accuracy: np.ndarray, state: StateConfig, *, acc_weight: float,
                miss_penalty: float) -> GreedyHint | None:
    """The hint `state` asks for (None: a state without one), greedy at `state.hint_acc_weight` or else
    `acc_weight` (the planners' own). A state whose one-hot does not cover the model's action space is a
    ValueError: its planners were trained for other actions."""
    if not state.hint_actions:
        return None
    if state.hint_actions != len(model.space):
        raise ValueError(f"the state holds greedy's choice over {state.hint_actions} actions, but the action "
                         f"space has {len(model.space)}; re-train the planners for these actions")
    weight = acc_weight if state.hint_acc_weight is None else state.hint_acc_weight
    greedy = Greedy(model, val_accuracy, prior_mbit_s=state.prior_mbit_s, acc_weight=weight,
                    miss_penalty=miss_penalty)
    return GreedyHint(greedy, state.hint_actions)
