"""Size-budgeted actions: project a sampled action sequence onto a student that fits a byte budget.

Zhang et al.'s reward (eq. 7) only *encourages* compression; a short CPU search may never sample a
student as small as the user needs. AMC (He et al., 2018) solves the same problem with a
resource-constrained action space: the environment lowers actions until the budget holds. We do the
same on Φ: while the student is over budget, step down (to the next smaller φ in Φ) the one layer
whose step saves the most bytes. The policy's log-probability stays that of the action it sampled;
the projection is part of the environment, so REINFORCE (eqs. 8-9) is unchanged.

    actions = project_to_budget(teacher.arch, sampled, max_bytes=int(0.02 * model_bytes(teacher.arch)))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compression.surgery import ACTIONS, derive_arch
from networks.family import model_bytes


class BudgetError(ValueError):
    """No student of this teacher fits the budget, not even with every action at its smallest."""


def _step_down(phi: float) -> float:
    index = ACTIONS.index(phi)
    return ACTIONS[max(0, index - 1)]


def project_to_budget(teacher_arch: dict[str, Any], actions: Sequence[float], *, max_bytes: int) -> list[float]:
    """The actions, lowered greedily until ``model_bytes(derive_arch(...)) <= max_bytes``.

    Actions already within budget come back unchanged. Greedy by bytes saved: the wide late stages
    hold most of a ResNet's parameters, so they are cut first and the early feature extractors,
    which matter most for accuracy per byte, keep what the policy asked for as long as possible.
    """
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
    current = [float(a) for a in actions]
    size = model_bytes(derive_arch(teacher_arch, current))
    while size > max_bytes:
        best: tuple[int, list[float]] | None = None
        for t, phi in enumerate(current):
            if phi == ACTIONS[0]:
                continue
            candidate = [*current[:t], _step_down(phi), *current[t + 1:]]
            candidate_size = model_bytes(derive_arch(teacher_arch, candidate))
            # Ties (a conv2 below its stage's widest one saves nothing) go to the later layer: fewer bytes
            # upstream of it are touched. `<=` on a forward scan keeps the last of equals.
            if best is None or candidate_size <= best[0]:
                best = (candidate_size, candidate)
        if best is None:
            raise BudgetError(
                f"no student fits {max_bytes} bytes: the smallest this teacher allows is {size} bytes"
            )
        size, current = best
    return current


def budget_bytes(teacher_arch: dict[str, Any], fraction: float) -> int:
    """The byte budget for a student at most ``fraction`` of the teacher's size (eq. 5's size)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"size budget must be in (0, 1], got {fraction}")
    return int(fraction * model_bytes(teacher_arch))
