"""The online learners that pick (tier, variant) per request (numpy only; they run on the end device).

- `QLearning`: tabular Q-learning over `StateSpace.encode` (Shahhosseini et al.'s learner), with
  ε-greedy exploration that decays with experience and comes back when a Page-Hinkley test on the
  rewards signals a change (orchestration.change).
- `LinUCB`: a contextual bandit (Li et al. 2010, disjoint model) over `StateSpace.features`, one
  ridge regression per action, with exponential forgetting (discounted LinUCB) so old conditions
  fade when the network or the load changes.

Both see only what a device sees (its own responses and the load the servers report) and keep
learning while they serve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from orchestration.change import PageHinkley
from orchestration.state import FEATURES, Observation, StateSpace
from shared.names import Tier

Action = tuple[Tier, str]
"""(tier, variant name): where a request runs and on which model."""
FAILURE_PENALTY = 1.0
"""Extra cost of a request a server failed (refused, timed out), in reward units (100 ms), on top of its
response time: a refused connection fails in a millisecond and the device then answers at its usual
cost, so the latency alone barely tells a dead server from the device (ours; the live agent and the
simulator both charge it)."""


def reward(response_ms: float, *, accuracy: float, accuracy_req: float, scale_ms: float = 100.0,
           penalty: float = 20.0) -> float:
    """The learners' reward: minus the response time (in units of `scale_ms`), minus a penalty per
    point of accuracy below the requirement (the paper's reward: latency with an accuracy penalty)."""
    if not math.isfinite(response_ms) or response_ms < 0:
        raise ValueError(f"response_ms must be finite and >= 0, got {response_ms}")
    shortfall_points = max(0.0, accuracy_req - accuracy) * 100.0
    return -response_ms / scale_ms - penalty * shortfall_points


@dataclass(frozen=True)
class Decision:
    """What a learner chose and what it saw when it chose, handed back with the reward."""

    action: Action
    state: tuple[int, ...] = ()
    features: np.ndarray | None = None
    explored: bool = False


@dataclass
class QConfig:
    """Tabular Q-learning settings."""

    alpha: float = 0.2
    """learning rate; constant, not decaying, so that values track a non-stationary system."""
    gamma: float = 0.0
    """discount of the next state's value. One device's choice barely moves the next state (the
    network and the other users do), so by default each request is its own episode."""
    epsilon_start: float = 0.3
    """exploration rate after a (re)start."""
    epsilon_min: float = 0.02
    """exploration floor: a little exploration never stops, so a freed tier is noticed."""
    epsilon_decay_steps: float = 20.0
    """ε = max(ε_min, ε_start / (1 + n / steps)) after n decisions since the last (re)start: 0.05
    after 100 decisions, the floor after about 300 (tuned on norway-hsdpa/: with 60, a 90 s run of
    360 requests per device spent 15% of them exploring)."""
    explore_within: float | None = 2.0
    """explore only actions whose model-predicted latency is within this factor of the best predicted
    one (ours; needs a `predict`), except right after a (re)start, when every action is explored."""
    model_prior: bool = True
    """start an action never tried from the reward its latency model predicts (ours; needs a `predict`),
    instead of an optimistic 0 that sends the first requests on a tour of every action."""
    detector: PageHinkley = field(default_factory=PageHinkley)
    """change test on the rewards; a change restarts exploration."""
    seed: int = 0
    """seeds exploration."""

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0 or not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"need alpha in (0, 1], gamma in [0, 1); got {self.alpha}, {self.gamma}")
        if self.explore_within is not None and self.explore_within < 1.0:
            raise ValueError(f"explore_within must be None or >= 1, got {self.explore_within}")
        if not 0.0 <= self.epsilon_min <= self.epsilon_start <= 1.0 or self.epsilon_decay_steps <= 0:
            raise ValueError(f"need 0 <= epsilon_min <= epsilon_start <= 1 and decay_steps > 0; got "
                             f"{self.epsilon_min}, {self.epsilon_start}, {self.epsilon_decay_steps}")


class QLearning:
    """Tabular Q-learning with decaying, change-triggered ε-greedy exploration."""

    name = "qlearning"

    def __init__(self, space: StateSpace, cfg: QConfig | None = None,
                 predict: Callable[[Observation, Action], float] | None = None) -> None:
        self.space = space
        self.cfg = cfg if cfg is not None else QConfig()
        self.predict = predict
        self.rng = np.random.default_rng(self.cfg.seed)
        self.q: dict[tuple[int, ...], dict[Action, float]] = {}
        # A state seen for the first time starts from the mean value each action earned anywhere
        # (ours): generalises across states, so a new state needs no tour of every action.
        self._global: dict[Action, tuple[float, int]] = {}
        self.steps = 0          # decisions since the last (re)start of exploration
        self.changes = 0        # changes the detector signalled

    @property
    def epsilon(self) -> float:
        c = self.cfg
        return max(c.epsilon_min, c.epsilon_start / (1.0 + self.steps / c.epsilon_decay_steps))

    def _value(self, state: tuple[int, ...], action: Action, obs: Observation | None = None) -> float:
        row = self.q.setdefault(state, {})
        if action not in row:
            mean, count = self._global.get(action, (0.0, 0))
            if count:
                row[action] = mean
            elif self.predict is not None and obs is not None and self.cfg.model_prior:
                # Never tried anywhere: start from the device's latency model (ours), so the first
                # requests go where the profile says rather than on a tour of every action.
                row[action] = reward(self.predict(obs, action), accuracy=1.0, accuracy_req=0.0)
            else:
                row[action] = 0.0  # optimistic (every reward is negative): it gets tried
        return row[action]

    def choose(self, obs: Observation, actions: Sequence[Action]) -> Decision:
        if not actions:
            raise ValueError("no actions to choose from")
        state = self.space.encode(obs)
        self.steps += 1
        if self.rng.random() < self.epsilon:
            pool = self._exploration_pool(obs, actions)
            return Decision(action=pool[int(self.rng.integers(len(pool)))], state=state, explored=True)
        values = [self._value(state, a, obs) for a in actions]
        best = max(values)
        ties = [a for a, v in zip(actions, values, strict=True) if v == best]
        return Decision(action=ties[int(self.rng.integers(len(ties)))], state=state)

    def _exploration_pool(self, obs: Observation, actions: Sequence[Action]) -> Sequence[Action]:
        # Guided exploration (ours): once the device has measurements, exploring an action its own
        # latency model puts at 10x the best one only costs; right after a (re)start, explore everything.
        c = self.cfg
        if self.predict is None or c.explore_within is None or self.steps <= c.epsilon_decay_steps:
            return actions
        predicted = [self.predict(obs, a) for a in actions]
        best = min(predicted)
        pool = [a for a, p in zip(actions, predicted, strict=True) if p <= c.explore_within * max(best, 1e-6)]
        return pool or actions

    def update(self, decision: Decision, r: float, next_obs: Observation | None = None) -> None:
        """Q(s,a) += α (r + γ max_a' Q(s',a') − Q(s,a)); restart exploration on a detected change."""
        c = self.cfg
        target = r
        if c.gamma > 0.0 and next_obs is not None:
            row = self.q.get(self.space.encode(next_obs), {})
            target += c.gamma * (max(row.values()) if row else 0.0)
        old = self._value(decision.state, decision.action)
        self.q[decision.state][decision.action] = old + c.alpha * (target - old)
        mean, count = self._global.get(decision.action, (0.0, 0))
        self._global[decision.action] = (mean + c.alpha * (r - mean) if count else r, count + 1)
        # Only the rewards of greedy choices feed the change test: an exploratory choice is expected to
        # be worse, and counting it would make exploration itself look like a change (and feed itself).
        # Nor do the first decisions after a (re)start: they include each action's first, optimistic try.
        if not decision.explored and self.steps > c.epsilon_decay_steps and c.detector.update(r):
            self.changes += 1
            self.steps = 0  # ε back to ε_start: the learned values may be stale


@dataclass
class LinUCBConfig:
    """Discounted LinUCB settings."""

    alpha: float = 0.5
    """width of the confidence bonus α·sqrt(xᵀA⁻¹x)."""
    ridge: float = 1.0
    """λ of the ridge prior A = λI."""
    forget: float = 0.99
    """per-update discount of past evidence (1.0 = never forget); 0.99 halves it in ~70 updates."""

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.ridge <= 0 or not 0.0 < self.forget <= 1.0:
            raise ValueError(f"need alpha >= 0, ridge > 0, forget in (0, 1]; got {self.alpha}, {self.ridge}, "
                             f"{self.forget}")


class LinUCB:
    """Disjoint LinUCB: per action a, reward ≈ θ_aᵀx with θ_a = A_a⁻¹ b_a; pick the highest upper bound."""

    name = "linucb"

    def __init__(self, space: StateSpace, cfg: LinUCBConfig | None = None) -> None:
        self.space = space
        self.cfg = cfg if cfg is not None else LinUCBConfig()
        self._a: dict[Action, np.ndarray] = {}  # (d, d)
        self._b: dict[Action, np.ndarray] = {}  # (d,)

    def _arm(self, action: Action) -> tuple[np.ndarray, np.ndarray]:
        if action not in self._a:
            self._a[action] = self.cfg.ridge * np.eye(FEATURES)
            self._b[action] = np.zeros(FEATURES)
        return self._a[action], self._b[action]

    def choose(self, obs: Observation, actions: Sequence[Action]) -> Decision:
        if not actions:
            raise ValueError("no actions to choose from")
        x = self.space.features(obs)  # (d,)
        scores = []
        for action in actions:
            a, b = self._arm(action)
            a_inv = np.linalg.inv(a)
            theta = a_inv @ b
            scores.append(float(theta @ x + self.cfg.alpha * math.sqrt(max(0.0, float(x @ a_inv @ x)))))
        return Decision(action=actions[int(np.argmax(scores))], features=x)

    def update(self, decision: Decision, r: float, next_obs: Observation | None = None) -> None:
        if decision.features is None:
            raise ValueError("a LinUCB update needs the features it chose with")
        x = decision.features
        g = self.cfg.forget
        a, b = self._arm(decision.action)
        # Discounted LinUCB: old evidence decays towards the prior, so the bonus grows back for arms
        # not tried lately, and a changed system is re-explored.
        self._a[decision.action] = g * a + np.outer(x, x) + (1.0 - g) * self.cfg.ridge * np.eye(FEATURES)
        self._b[decision.action] = g * b + r * x
