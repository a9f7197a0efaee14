"""Strategies that pick an (exit, partition, bits) per request; all run through the same environment and
the same live path (numpy only, except that `Oracle` needs the environment's hindsight).

Each `choose(obs, mask, view)` sees the observation vector, the valid-action mask and a view with
`tracker` (what the device measured), `deadline_ms` and `load`:

- DeviceOnly / ServerOnly: the two fixed ends (server-only uploads whatever the cost model's
  `server_payload` says: the JPEG file or raw pixels; the strategy's name says which);
- Neurosurgeon (Kang et al. 2017): the one partition (final exit, as it has no early exits) with the
  lowest predicted latency at the training traces' mean bandwidth, chosen once;
- Edgent (Li, Zhou, Chen 2018): per request, the most accurate (exit, partition, bits) whose
  predicted latency at the bandwidth of the last transfer meets the deadline (the lowest latency among
  equally accurate ones; if none meets it, the fastest); before any transfer, the prior bandwidth;
- Greedy (ours, the strongest simple planner at the learned planners' own objective): per request, the
  action (the hedge included) of the highest reward (splitting/reward.py, with the weights the learned
  planners were trained with) predicted by the cost model at the bandwidth of the last transfer and
  the device's load, an answer it predicts from the server or from the device's own exit taken as the
  hedge against that exit where the space has one; no learning, no memory beyond the last transfer. A
  learned planner is worth its training only where it beats this at equal accuracy;
- Hedge: always the hedge action (splitting/actions.py; only in a space trained with it): upload the
  image and run the whole network on the device at once, the first answer wins. The strongest simple
  planner once the device may race its own pass against the server; Neurosurgeon and Edgent choose
  from the (exit, partition, bits) grid only, as published;
- Learned: a trained SAC actor or DQN (splitting/policy.py), greedy;
- Oracle: with hindsight, the action of highest reward at the bandwidth that actually occurred.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from splitting.latency import CostModel
from splitting.policy import MlpPolicy
from splitting.reward import reward
from splitting.state import StateTracker


class View(Protocol):
    tracker: StateTracker
    deadline_ms: float
    load: float


class Planner(Protocol):
    name: str

    def choose(self, obs: np.ndarray, mask: np.ndarray, view: Any) -> int: ...


class DeviceOnly:
    name = "device_only"

    def __init__(self, model: CostModel) -> None:
        self.index = model.space.device_only(model.space.n_stages)

    def choose(self, obs: np.ndarray, mask: np.ndarray, view: Any) -> int:
        return self.index


class ServerOnly:
    def __init__(self, model: CostModel, *, name: str = "server_only_raw") -> None:
        self.index = model.space.server_only()
        self.name = name

    def choose(self, obs: np.ndarray, mask: np.ndarray, view: Any) -> int:
        return self.index if mask[self.index] else int(np.flatnonzero(mask)[-1])


class Neurosurgeon:
    name = "neurosurgeon"

    def __init__(self, model: CostModel, *, mean_mbit_s: float, rtt_ms: float) -> None:
        s = model.space.n_stages
        candidates = [i for i in np.flatnonzero(model.space.grid_mask()) if model.space.actions[i].exit == s]
        costs = {int(i): model.cost(int(i), load=1.0, mbit_s=mean_mbit_s, rtt_ms=rtt_ms).latency_ms
                 for i in candidates}
        self.index = min(costs, key=costs.__getitem__)
        self.mean_mbit_s = mean_mbit_s
        self.device_index = model.space.device_only(s)

    def choose(self, obs: np.ndarray, mask: np.ndarray, view: Any) -> int:
        return self.index if mask[self.index] else self.device_index


class Edgent:
    name = "edgent"

    def __init__(self, model: CostModel, val_accuracy: np.ndarray, *, prior_mbit_s: float) -> None:
        self.model, self.val_accuracy, self.prior_mbit_s = model, val_accuracy, prior_mbit_s

    def choose(self, obs: np.ndarray, mask: np.ndarray, view: Any) -> int:
        mbit_s = view.tracker.last_mbit_s or self.prior_mbit_s
        best, best_key, fastest, fastest_ms = -1, (-np.inf, 0.0), -1, np.inf
        for i in np.flatnonzero(mask & self.model.space.grid_mask()):
            ms = self.model.cost(int(i), load=view.load, mbit_s=mbit_s, rtt_ms=view.tracker.rtt_ms).latency_ms
            if ms < fastest_ms:
                fastest, fastest_ms = int(i), ms
            key = (round(float(self.val_accuracy[i]), 6), -ms)
            if ms <= view.deadline_ms and key > best_key:
                best, best_key = int(i), key
        return best if best >= 0 else fastest


class Greedy:
    name = "greedy"

    def __init__(self, model: CostModel, val_accuracy: np.ndarray, *, prior_mbit_s: float, acc_weight: float,
                 miss_penalty: float) -> None:
        self.model, self.val_accuracy, self.prior_mbit_s = model, val_accuracy, prior_mbit_s
        self.acc_weight, self.miss_penalty = acc_weight, miss_penalty

    def choose(self, obs: np.ndarray, mask: np.ndarray, view: Any) -> int:
        mbit_s = view.tracker.last_mbit_s or self.prior_mbit_s
        best, best_r = -1, -np.inf
        for i in np.flatnonzero(mask):
            cost = self.model.cost(int(i), load=view.load, mbit_s=mbit_s, rtt_ms=view.tracker.rtt_ms,
                                   deadline_ms=view.deadline_ms)
            answered = int(i) if cost.fallback is None else cost.fallback
            r = reward(accuracy=float(self.val_accuracy[answered]), latency_ms=cost.latency_ms,
                       deadline_ms=view.deadline_ms, acc_weight=self.acc_weight, miss_penalty=self.miss_penalty)
            if r > best_r:
                best, best_r = int(i), r
        space = self.model.space
        if not space.hedge or best < 0:
            return best
        # A point estimate sees no value in a hedge (it predicts one of its two sides), the real link does:
        # insurance. Server-only and device exit S both answer with the final exit, and the whole network's
        # hedge gives that answer from whichever comes first; device exit e, with a hedge against e,
        # answers no later and with the teacher whenever the server is sooner.
        a = space.actions[best]
        if best in (space.server_only(), space.device_only(space.n_stages)):
            hedge = space.hedged()
        elif a.partition == space.n_stages and a.exit in space.hedge_exits:
            hedge = space.hedged(a.exit)
        else:
            return best
        return hedge if mask[hedge] else best


class Hedge:
    name = "hedge"

    def __init__(self, model: CostModel) -> None:
        self.index = model.space.hedged()
        self.device_index = model.space.device_only(model.space.n_stages)

    def choose(self, obs: np.ndarray, mask: np.ndarray, view: Any) -> int:
        # No reachable server (the live breaker open): the device's own pass is all a hedge would get.
        return self.index if mask[self.index] else self.device_index


class Learned:
    def __init__(self, name: str, policy: MlpPolicy) -> None:
        self.name, self.policy = name, policy

    def choose(self, obs: np.ndarray, mask: np.ndarray, view: Any) -> int:
        return self.policy.act(obs, mask)


class Oracle:
    """Hindsight: needs the environment (its `cost` and `reward` at the trace's true bandwidth)."""

    name = "oracle"

    def choose(self, obs: np.ndarray, mask: np.ndarray, view: Any) -> int:
        best, best_r = -1, -np.inf
        for i in np.flatnonzero(mask):
            r = view.reward(int(i), view.cost(int(i)))
            if r > best_r:
                best, best_r = int(i), r
        return best
