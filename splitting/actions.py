"""The planner's discrete action: one (exit, partition, bits) of a grid, invalid cells masked (numpy only).

With S stages the grid is exits 1..S x partitions 0..S x bits (8, 4, 2). Partition p means the device
runs stages 1..p:
- p = S: device-only, answered by exit e on the device (bits unused: only b = 8 is valid);
- p = 0: server-only, the image to the server's full net, exit S (the teacher): raw pixels or the
  image's JPEG file, whichever the regime's `server_payload` says (splitting/latency.py costs it);
- 0 < p < S: split; the device sends the p-feature at b bits, the server answers with exit e > p.
Every other cell (an exit before the split, a second copy of a device-only or server-only choice)
is invalid and masked, so the planner's logits cover the whole grid but it only ever picks a valid cell.

With `hedge` (a regime trained with `edgecloud split train --hedge`), one more action follows the grid:
**hedge**, server-only whose device does not wait idle. It uploads the image as server-only does and,
at the same time, runs its own whole network (exit S); the first answer wins. A Raspberry Pi 4 has
four cores and an upload needs almost none of them, so the race costs the device energy (it computes
every request, as device-only does), not time. Neither Niu et al. nor the baselines (Neurosurgeon,
Edgent) have it: they choose from the grid only, and the `hedge` strategy (splitting/baselines.py)
always takes it, the simplest planner that uses it.

With `hedge_exits` (`split train --hedge --hedge-exits 3`), one more hedge per listed early exit e < S
comes before it, **hedge:exit{e}**: the same upload, raced against the device's head up to exit e, so
that when the link is slow the device answers from exit e (sooner, less accurate) instead of waiting
for its whole network. It never answers later than device exit e (the upload only costs the client's
work), and whenever the server is sooner it answers with the teacher: what the hindsight oracle does
by choosing between server-only and an early exit, done causally by the race. In hindsight its outcome
is one of those two actions', so the headroom bound (bench/split_headroom.py) does not move.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from shared.feature_codec import BITS


class Placement(StrEnum):
    DEVICE = "device"  # p = S: everything on the device
    SERVER = "server"  # p = 0: the image (raw or its JPEG file) to the server
    SPLIT = "split"    # head on the device, tail on the server
    HEDGE = "hedge"    # server-only and the device's own whole network at once; the first answer wins


@dataclass(frozen=True)
class Action:
    exit: int       # 1..S: which exit answers
    partition: int  # 0..S: stages run on the device
    bits: int       # bit width of the sent feature (8 for raw pixels and device-only)
    hedge: bool = False  # server-only raced against the device's own exit `exit` (module docstring)

    def placement(self, n_stages: int) -> Placement:
        if self.hedge:
            return Placement.HEDGE
        if self.partition == n_stages:
            return Placement.DEVICE
        return Placement.SERVER if self.partition == 0 else Placement.SPLIT

    def label(self, n_stages: int) -> str:
        kind = self.placement(n_stages)
        if kind is Placement.DEVICE:
            return f"device:exit{self.exit}"
        if kind is Placement.SERVER:
            return "server"
        if kind is Placement.HEDGE:
            return "hedge" if self.exit == n_stages else f"hedge:exit{self.exit}"
        return f"split@{self.partition}:{self.bits}b:exit{self.exit}"


class ActionSpace:
    """The (exit, partition, bits) grid of a net with `n_stages` stages, and which cells are valid; with
    `hedge`, the hedges after the grid: one per early exit of `hedge_exits` (ascending), then the
    whole network's, always last (`hedged()`)."""

    def __init__(self, n_stages: int, bits: tuple[int, ...] = BITS, *, hedge: bool = False,
                 hedge_exits: tuple[int, ...] = ()) -> None:
        if n_stages < 2:
            raise ValueError(f"a split needs at least 2 stages, got {n_stages}")
        if hedge_exits and not hedge:
            raise ValueError("hedge_exits needs the hedge action (hedge=True)")
        wrong = [e for e in hedge_exits if not 1 <= e < n_stages]
        if wrong:
            raise ValueError(f"a hedge exit must be an early exit, 1..{n_stages - 1} of this {n_stages}-stage "
                             f"network, got {wrong[0]}")
        self.n_stages = n_stages
        self.bits = tuple(bits)
        self.hedge = hedge
        self.hedge_exits = tuple(sorted(set(hedge_exits)))
        self.actions = [Action(e, p, b) for e in range(1, n_stages + 1) for p in range(n_stages + 1)
                        for b in self.bits]
        if hedge:
            self.actions += [Action(e, 0, self.bits[0], hedge=True) for e in (*self.hedge_exits, n_stages)]
        self.valid = np.array([self._valid(a) for a in self.actions], dtype=bool)

    def _valid(self, a: Action) -> bool:
        if a.hedge:
            return True
        if a.partition == self.n_stages:
            return a.bits == self.bits[0]
        if a.partition == 0:
            return a.exit == self.n_stages and a.bits == self.bits[0]
        return a.exit > a.partition

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def n_valid(self) -> int:
        return int(self.valid.sum())

    def index(self, action: Action) -> int:
        return self.actions.index(action)

    def valid_indices(self) -> np.ndarray:
        return np.flatnonzero(self.valid)

    def mask(self, *, server_available: bool = True) -> np.ndarray:
        """Valid cells; without a reachable server only device-only ones."""
        if server_available:
            return self.valid.copy()
        return self.valid & np.array([a.partition == self.n_stages and not a.hedge for a in self.actions])

    def grid_mask(self) -> np.ndarray:
        """Valid cells of the (exit, partition, bits) grid alone: what the published baselines choose from."""
        return self.valid & np.array([not a.hedge for a in self.actions])

    def hedged(self, exit_: int | None = None) -> int:
        """Index of the hedge against exit `exit_` (None: the whole network's; ValueError in a space
        without it)."""
        if not self.hedge:
            raise ValueError("this action space has no hedge action (a planner trained with --hedge has)")
        if exit_ is None or exit_ == self.n_stages:
            return len(self.actions) - 1
        if exit_ not in self.hedge_exits:
            raise ValueError(f"this action space has no hedge against exit {exit_} (its hedge exits: "
                             f"{list(self.hedge_exits)}; `split train --hedge-exits` adds them)")
        return self.index(Action(exit_, 0, self.bits[0], hedge=True))

    def hedge_indices(self) -> list[int]:
        """Indices of every hedge action (none without `hedge`)."""
        return [i for i, a in enumerate(self.actions) if a.hedge]

    def device_only(self, exit_: int) -> int:
        return self.index(Action(exit_, self.n_stages, self.bits[0]))

    def server_only(self) -> int:
        return self.index(Action(self.n_stages, 0, self.bits[0]))
