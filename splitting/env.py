"""A trace-driven environment for the split planner (gymnasium API; numpy, no torch).

Requests of one sample arrive every `period_s`; each direction of the link replays a real trace
(shared/traces.py) in time: the request goes up on the uplink trace, the answer comes down on the
downlink trace (without one, the same file: regime.py says why), so a transfer sees the rate of the
moment it is sent, changing mid-way if the trace does. Each step the planner picks one (exit,
partition, bits); the step's cost comes from `latency.CostModel` (profiled segments, the traces, the
link's RTT and overheads, the request's own JPEG size for server-only JPEG, and the fallback to a
device exit when an offload would overrun the deadline) and the device's load at that moment. The
reward (ours; the paper's is not public):

    r = acc_weight * val_accuracy(a) - latency / deadline - miss_penalty * [latency > deadline]

Expected (validation) accuracy, not whether this sample came out right: the planner cannot know
that, and the expectation has far lower variance. When `correct` (per-sample correctness on the
test split) is given, `info["correct"]` reports the real outcome for sample `step % N`.

Training randomises what the deployed planner must cope with: which trace and where in it, the
deadline, the base RTT and a device load that switches between levels (a Markov chain). Evaluation
fixes them (`EnvConfig` defaults) so that strategies are compared on the same requests.
Each direction is one serial link, as on the testbed's delay proxy: a request's bytes wait until the
bytes before them (an abandoned offload's included) have crossed, so a stall leaves a backlog. The
device does not queue: each request's compute starts on an idle device (a latency above `period_s`
is reported as it is, not added to the next one's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from shared.traces import Trace, pair_traces
from splitting.hint import greedy_hint
from splitting.latency import Cost, CostModel
from splitting.regime import MNIST, Regime
from splitting.reward import reward as planner_reward
from splitting.state import StateConfig, StateTracker


@dataclass(frozen=True)
class EnvConfig:
    """Request stream, deadline, link and device conditions, and reward weights (defaults: the MNIST regime)."""

    period_s: float = MNIST.period_s
    """time between requests"""
    episode_steps: int = 200
    """requests per episode (training); evaluation runs a whole trace window"""
    deadline_ms: float = MNIST.deadline_ms
    """latency budget of a request"""
    deadline_range_ms: tuple[float, float] | None = None
    """training: draw each episode's deadline uniformly from this range instead"""
    rtt_ms: float = MNIST.rtt_ms
    """base RTT of the link"""
    rtt_range_ms: tuple[float, float] | None = None
    """training: draw each episode's RTT uniformly from this range instead"""
    load_levels: tuple[float, ...] = (1.0,)
    """device slowdowns the load switches between (1 = as profiled)"""
    load_switch_prob: float = 0.0
    """chance per request that the load jumps to another level"""
    measure_noise: float = 0.1
    """log-normal sigma of a throughput measurement (timer and scheduling noise of the live estimate)"""
    acc_weight: float = 20.0
    """reward per unit of validation accuracy (20: one point of accuracy = 0.2 deadlines of latency)"""
    miss_penalty: float = 2.0
    """extra penalty for missing the deadline"""
    random_start: bool = True
    """start each episode at a random time of a random trace (False: trace 0 at t = 0, in order)"""
    state: StateConfig = field(default_factory=StateConfig)
    """observation layout"""

    @classmethod
    def from_regime(cls, regime: Regime, **values: Any) -> EnvConfig:
        """The regime's request period, deadline and RTT; `values` set the other fields."""
        return cls(period_s=regime.period_s, deadline_ms=regime.deadline_ms, rtt_ms=regime.rtt_ms, **values)


class SplitEnv(gym.Env):
    """One device, one server, and a link whose uplink replays `traces[i]` and downlink `downlink[i]`."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, cost_model: CostModel, traces: list[Trace], val_accuracy: np.ndarray, *,
                 downlink: list[Trace] | None = None, cfg: EnvConfig | None = None, correct: np.ndarray | None = None,
                 seed: int | None = None) -> None:
        if not traces:
            raise ValueError("SplitEnv needs at least one trace")
        self.model, self.traces, self.cfg = cost_model, traces, cfg or EnvConfig()
        # Paired by index with the uplink traces (the same objects when there is no downlink folder).
        self.downlink = pair_traces(traces, downlink)
        self.space = cost_model.space
        if val_accuracy.shape != (len(self.space),):
            raise ValueError(f"val_accuracy must have one entry per action ({len(self.space)}), "
                             f"got shape {val_accuracy.shape}")
        self.val_accuracy = val_accuracy.astype(np.float64)
        self.correct = correct
        dim = self.cfg.state.dim
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(self.space))
        self._rng = np.random.default_rng(seed)
        self.trace, self.down_trace = traces[0], self.downlink[0]
        self.t = 0.0
        self.uplink_free_s = self.downlink_free_s = -np.inf  # trace time each link has sent what it was given
        self.steps = 0
        self.sample_index = 0
        self.deadline_ms = self.cfg.deadline_ms
        self.rtt_ms = self.cfg.rtt_ms
        self.load = 1.0
        self.tracker = StateTracker(self.cfg.state, initial_rtt_ms=self.rtt_ms)
        self.hint = greedy_hint(cost_model, self.val_accuracy, self.cfg.state, acc_weight=self.cfg.acc_weight,
                                miss_penalty=self.cfg.miss_penalty)

    # gymnasium API ---------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        options = options or {}
        c = self.cfg
        if "trace" in options:
            index = int(options["trace"])
        else:
            index = int(self._rng.integers(len(self.traces))) if c.random_start else 0
        self.trace, self.down_trace = self.traces[index], self.downlink[index]
        self.uplink_free_s = self.downlink_free_s = -np.inf
        default_start = float(self._rng.uniform(0, self.trace.duration_s)) if c.random_start else 0.0
        self.t = float(options.get("start_s", default_start))
        self.steps = 0
        self.deadline_ms = float(self._rng.uniform(*c.deadline_range_ms)) if c.deadline_range_ms else c.deadline_ms
        self.rtt_ms = float(self._rng.uniform(*c.rtt_range_ms)) if c.rtt_range_ms else c.rtt_ms
        self.load = float(self._rng.choice(c.load_levels)) if c.random_start else c.load_levels[0]
        self.tracker = StateTracker(c.state, initial_rtt_ms=self.rtt_ms)
        return self.observe(), {"action_mask": self.action_masks()}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        index = int(action)
        if not 0 <= index < len(self.space) or not self.space.valid[index]:
            raise ValueError(f"action {index} is not a valid (exit, partition, bits) of this bundle")
        cost = self.cost(index)
        reward = self.reward(index, cost)
        answered = index if cost.fallback is None else cost.fallback
        info: dict[str, Any] = {"latency_ms": cost.latency_ms, "miss": cost.latency_ms > self.deadline_ms,
                                "payload_bytes": cost.payload_bytes, "wire_bytes": cost.wire_bytes,
                                "action": index, "answered": answered, "fallback": cost.fallback is not None,
                                "t": self.t, "mbit_s": self.trace.at(self.t), "deadline_ms": self.deadline_ms}
        if self.correct is not None:
            info["correct"] = bool(self.correct[answered, self.sample_index % self.correct.shape[1]])
        if cost.uplink_free_s is not None:
            self.uplink_free_s = max(self.uplink_free_s, cost.uplink_free_s)
        if cost.downlink_free_s is not None:
            self.downlink_free_s = max(self.downlink_free_s, cost.downlink_free_s)
        if cost.wire_bytes:
            self._measure(cost)
        self.sample_index += 1
        self.steps += 1
        self.t += self.cfg.period_s
        if self.cfg.load_switch_prob and self._rng.random() < self.cfg.load_switch_prob:
            self.load = float(self._rng.choice(self.cfg.load_levels))
        truncated = self.steps >= self.cfg.episode_steps
        obs = self.observe()
        info["action_mask"] = self.action_masks()
        return obs, reward, False, truncated, info

    # helpers ---------------------------------------------------------------------------------
    def observe(self) -> np.ndarray:
        self.tracker.load = self.load  # the live device measures it from its own compute times
        obs = self.tracker.observe(now_s=self.t, deadline_ms=self.deadline_ms)
        # The environment is its own view (tracker, deadline_ms, load), as it is every planner's.
        return obs if self.hint is None else self.hint.extend(obs, self.action_masks(), self)

    def action_masks(self) -> np.ndarray:
        return self.space.mask()

    def cost(self, index: int) -> Cost:
        """What action `index` costs if taken now, on the real traces behind the links' backlog (the
        oracle's hindsight view too)."""
        return self.model.cost(index, load=self.load, start_s=self.t, trace=self.trace, downlink=self.down_trace,
                               rtt_ms=self.rtt_ms, deadline_ms=self.deadline_ms, sample=self.sample_index,
                               uplink_free_s=self.uplink_free_s, downlink_free_s=self.downlink_free_s)

    def reward(self, index: int, cost: Cost) -> float:
        """The reward of the module docstring; a fallback earns the accuracy of the exit that answered."""
        c = self.cfg
        answered = index if cost.fallback is None else cost.fallback
        return planner_reward(accuracy=float(self.val_accuracy[answered]), latency_ms=cost.latency_ms,
                              deadline_ms=self.deadline_ms, acc_weight=c.acc_weight, miss_penalty=c.miss_penalty)

    def _measure(self, cost: Cost) -> None:
        # What the live estimator measures: the round trip less the server's compute, and the bytes
        # moved in it (time behind earlier bytes on the link included, as live); here exact, then
        # blurred by the estimator's noise. An abandoned offload moved at most its request in the time
        # it waited: an upper bound, recorded as a sample too, and as abandoned.
        self.tracker.network_ms.append(self.rtt_ms)
        on_link_ms = max(cost.network_ms - self.rtt_ms, 1e-3)
        mbit_s = 8.0 * cost.wire_bytes / (on_link_ms * 1000.0)
        noise = float(np.exp(self._rng.normal(0.0, self.cfg.measure_noise))) if self.cfg.measure_noise else 1.0
        self.tracker.record_throughput(mbit_s * noise, now_s=self.t + cost.measured_at_ms / 1000.0,
                                       completed=cost.completed)
