"""A discrete-event simulator of N end devices sharing an edge server and a cloud (numpy only).

Built from measured inputs only: each variant's per-tier compute time (orchestration.profiles,
measured with onnxruntime), each variant's per-sample correctness on the test split, and real
bandwidth traces (shared.traces) for each device's access link. Per request:

- **end**: the device computes it when its own earlier requests are done (one core, FIFO).
- **edge**: up the access link (half its RTT + the request's bytes at the trace's rate at that
  moment), into the edge server's queue, back down. The edge server is one core shared by every
  device: FIFO, and when it frees it takes the head request and every queued request for the same
  model (up to `max_batch`), as the runtime's per-model batcher does.
- **cloud**: the same, with a WAN leg (extra RTT and a fixed rate) and the cloud's own queue.

Each response carries the server's load report (queue depth, moving-average service time, time in
the server), exactly what the live servers put in `X-Edgecloud-Load`, and the device's policy
learns from it. Scenarios change mid-run: users join and leave, the access bandwidth drops.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from orchestration.learners import Action, Decision, reward
from orchestration.policies import OraclePolicy, Policy, feasible_actions
from orchestration.profiles import Profiles
from orchestration.state import Observation, ServerLoad
from serving.metrics import EWMA_ALPHA as SERVER_EWMA_ALPHA
from shared.names import Tier
from shared.traces import Trace

Arrivals = Literal["poisson", "bursty"]
ARRIVALS: tuple[str, ...] = ("poisson", "bursty")


@dataclass(frozen=True)
class NetworkConfig:
    """The links between the tiers (the access link's rate comes from each device's trace)."""

    access_rtt_ms: float = 20.0
    """device <-> edge server round trip on the access link, without queueing."""
    wan_rtt_ms: float = 60.0
    """extra round trip from the edge of the access network to the cloud."""
    wan_mbit_s: float = 100.0
    """WAN rate to the cloud (each way)."""
    response_bytes: int = 300
    """bytes of one answer on the wire (label + OIP JSON header)."""
    end_overhead_ms: float = 0.0
    """software time per request answered on the device beyond the model's compute (calibrated live)."""
    edge_overhead_ms: float = 0.0
    """software time per request through the edge server's path (HTTP stacks, proxy; calibrated live)."""
    cloud_overhead_ms: float = 0.0
    """software time per request through the cloud's path (calibrated live)."""
    edge_connect_ms: float = 0.0
    """extra time of each device's first request to the edge server: opening the connection (TCP and
    HTTP set-up through the proxy, the client's start). Calibrated live; 0 keeps connections free."""
    cloud_connect_ms: float = 0.0
    """the same for each device's first request to the cloud."""

    def __post_init__(self) -> None:
        if min(self.access_rtt_ms, self.wan_rtt_ms, self.end_overhead_ms, self.edge_overhead_ms,
               self.cloud_overhead_ms, self.edge_connect_ms, self.cloud_connect_ms) < 0 \
                or self.wan_mbit_s <= 0 or self.response_bytes < 0:
            raise ValueError(f"bad network config {self}")

    def overhead_ms(self, tier: Tier) -> float:
        return {Tier.END: self.end_overhead_ms, Tier.EDGE: self.edge_overhead_ms,
                Tier.CLOUD: self.cloud_overhead_ms}[tier]

    def connect_ms(self, tier: Tier) -> float:
        return {Tier.END: 0.0, Tier.EDGE: self.edge_connect_ms, Tier.CLOUD: self.cloud_connect_ms}[tier]


@dataclass(frozen=True)
class Phase:
    """From `start_s` on: this many users are active, and the access rate is scaled by this much."""

    start_s: float
    users: int
    bandwidth_scale: float = 1.0


@dataclass
class Scenario:
    """One simulated run: who sends what, when, and what changes."""

    users: int = 8
    """devices (the most active at once)."""
    duration_s: float = 60.0
    """arrivals stop here; requests in flight are still answered."""
    rate_per_user: float = 4.0
    """mean requests per second per active device."""
    arrivals: Arrivals = "poisson"
    """poisson, or bursty: on/off (exponential periods, mean `burst_s`) at the same mean rate."""
    burst_s: float = 2.0
    """mean length of a bursty device's on and off periods."""
    burst_duty: float = 0.25
    """fraction of time a bursty device is on (its rate then is rate_per_user / duty)."""
    accuracy_req: float = 0.0
    """every request's accuracy requirement in [0, 1]."""
    phases: list[Phase] = field(default_factory=list)
    """changes over time; empty: all users active at full bandwidth throughout."""
    max_batch: int = 8
    """largest batch a server computes at once."""
    service_cv: float = 0.1
    """coefficient of variation of compute times around the profile (lognormal)."""
    seed: int = 0
    """seeds arrivals, trace offsets, service noise and the samples drawn."""

    def __post_init__(self) -> None:
        if self.users < 1 or self.duration_s <= 0 or self.rate_per_user <= 0:
            raise ValueError(f"need users >= 1, duration_s > 0, rate_per_user > 0; got {self.users}, "
                             f"{self.duration_s}, {self.rate_per_user}")
        if self.arrivals not in ARRIVALS:
            raise ValueError(f"arrivals must be one of {ARRIVALS}, got {self.arrivals!r}")
        if not 0.0 < self.burst_duty <= 1.0 or self.burst_s <= 0:
            raise ValueError(f"need burst_duty in (0, 1] and burst_s > 0, got {self.burst_duty}, {self.burst_s}")
        if not 0.0 <= self.accuracy_req <= 1.0:
            raise ValueError(f"accuracy_req must be in [0, 1], got {self.accuracy_req}")
        for phase in self.phases:
            if not 0 <= phase.users <= self.users or phase.bandwidth_scale <= 0:
                raise ValueError(f"phase {phase}: users must be in [0, {self.users}], bandwidth_scale > 0")

    def phase_at(self, t: float) -> Phase:
        current = Phase(start_s=0.0, users=self.users)
        for phase in sorted(self.phases, key=lambda p: p.start_s):
            if phase.start_s <= t:
                current = phase
        return current

    @property
    def change_times(self) -> list[float]:
        return sorted(p.start_s for p in self.phases if p.start_s > 0)


def steady(users: int, *, duration_s: float = 60.0, **kwargs: object) -> Scenario:
    """All users, full bandwidth, throughout."""
    return Scenario(users=users, duration_s=duration_s, **kwargs)  # type: ignore[arg-type]


def changing(users: int, *, duration_s: float = 90.0, drop: float = 0.1, **kwargs: object) -> Scenario:
    """Conditions change mid-run: half the users, then all join (1/3), then the bandwidth drops (2/3)."""
    third = duration_s / 3
    phases = [Phase(0.0, max(1, users // 2)), Phase(third, users), Phase(2 * third, users, bandwidth_scale=drop)]
    return Scenario(users=users, duration_s=duration_s, phases=phases, **kwargs)  # type: ignore[arg-type]


SCENARIOS: dict[str, Callable[..., Scenario]] = {"steady": steady, "change": changing}


@dataclass
class RequestRecord:
    """One answered request."""

    user: int
    arrival_s: float
    response_ms: float
    tier: Tier
    variant: str
    correct: bool
    reward: float
    explored: bool = False


@dataclass
class _Request:
    user: int
    arrival_s: float
    action: Action
    decision: Decision
    sample: int
    server_arrival_s: float = 0.0


class _Server:
    """One core, FIFO, batching same-model requests at the head (the runtime's per-model batcher)."""

    def __init__(self, tier: Tier) -> None:
        self.tier = tier
        self.queue: list[_Request] = []
        self.busy_until = 0.0
        self.busy = False
        self.service_ms: dict[str, float] = {}  # per model, EWMA per sample (serving/metrics.py)
        self.current: tuple[str, int] = ("", 0)

    def backlog_ms(self, now_s: float, profiles: Profiles, max_batch: int) -> float:
        """Work ahead of a request arriving now: the current batch's rest, then the queue batched by model."""
        rest = max(0.0, self.busy_until - now_s) * 1000.0 if self.busy else 0.0
        counts: dict[str, int] = {}
        for request in self.queue:
            counts[request.action[1]] = counts.get(request.action[1], 0) + 1
        for model, n in counts.items():
            full, left = divmod(n, max_batch)
            cost = profiles.variants[model]
            rest += full * cost.compute_ms(self.tier, max_batch) + (cost.compute_ms(self.tier, left) if left else 0.0)
        return rest

    def record(self, model: str, per_sample_ms: float) -> None:
        old = self.service_ms.get(model, 0.0)
        self.service_ms[model] = per_sample_ms if old == 0.0 else (
            SERVER_EWMA_ALPHA * per_sample_ms + (1 - SERVER_EWMA_ALPHA) * old)


class Simulator:
    """Runs a scenario with one policy instance per device; `run` returns every answered request."""

    def __init__(self, profiles: Profiles, scenario: Scenario, traces: Sequence[Trace], *,
                 network: NetworkConfig | None = None) -> None:
        if not traces:
            raise ValueError("the simulator needs at least one bandwidth trace")
        self.profiles = profiles
        self.scenario = scenario
        self.traces = list(traces)
        self.network = network if network is not None else NetworkConfig()

    # -- links ---------------------------------------------------------------------------------------
    def _access_ms(self, trace: Trace, offset: float, n_bytes: float, t: float, scale: float) -> float:
        # A scaled rate moves bytes/scale in the same time as the trace moves bytes.
        return self.network.access_rtt_ms / 2 + trace.transfer_s(n_bytes / scale, offset + t) * 1000.0

    def _wan_ms(self, n_bytes: float) -> float:
        return self.network.wan_rtt_ms / 2 + n_bytes * 8 / (self.network.wan_mbit_s * 1e6) * 1000.0

    def _leg_ms(self, trace: Trace, offset: float, tier: Tier, n_bytes: float, t: float) -> float:
        """One way between a device and a server at time t: the access link at the phase's rate, and
        the WAN as well for the cloud."""
        scale = self.scenario.phase_at(t).bandwidth_scale
        ms = self._access_ms(trace, offset, n_bytes, t, scale)
        return ms + (self._wan_ms(n_bytes) if tier is Tier.CLOUD else 0.0)

    def _idle_ms(self, action: Action, trace: Trace, offset: float, t: float) -> float:
        """Response time of `action` at time t if the device and both servers were idle (no queue)."""
        tier, variant = action
        ms = self.profiles.variants[variant].compute_ms(tier) + self.network.overhead_ms(tier)
        if tier is Tier.END:
            return ms
        return (ms + self._leg_ms(trace, offset, tier, self.profiles.request_bytes, t)
                + self._leg_ms(trace, offset, tier, self.network.response_bytes, t))

    def _draws(self, rng: np.random.Generator) -> tuple[list[Trace], list[float], list[np.ndarray]]:
        """Each device's trace, its start offset in it and its arrival times, drawn in run()'s order."""
        sc = self.scenario
        user_trace = [self.traces[(u + sc.seed) % len(self.traces)] for u in range(sc.users)]
        user_offset = [float(rng.uniform(0, t.duration_s)) for t in user_trace]
        return user_trace, user_offset, arrival_times(sc, rng)

    def lower_bound_ms(self) -> np.ndarray:
        """Per request, in arrival order, the least response time *any* policy could get for it.

        The best feasible action with the device and both servers idle: queueing, batching behind
        other requests and the device's own backlog only add to a request's time, and compute noise
        is drawn after the choice with mean 1, so no policy (clairvoyant included) has a lower
        expected mean than this array's; with `service_cv` 0 no request is ever below its entry. (A
        short noisy run's realised mean can dip below it by the noise.) The arrivals, traces and
        offsets are run()'s for the same scenario seed.
        """
        sc = self.scenario
        user_trace, user_offset, arrivals = self._draws(np.random.default_rng(sc.seed))
        actions = feasible_actions(self.profiles, sc.accuracy_req)
        out = [(t, min(self._idle_ms(a, user_trace[u], user_offset[u], t) for a in actions))
               for u, times in enumerate(arrivals) for t in map(float, times) if u < sc.phase_at(t).users]
        out.sort()
        return np.array([ms for _, ms in out], dtype=float)

    def run(self, make_policy: Callable[[int], Policy], *, progress: Callable[[float], None] | None = None
            ) -> list[RequestRecord]:
        sc = self.scenario
        rng = np.random.default_rng(sc.seed)
        profiles = self.profiles
        n_samples = min((len(v.correct) for v in profiles.variants.values() if v.correct is not None), default=0)
        policies = [make_policy(u) for u in range(sc.users)]
        observations = [Observation(accuracy_req=sc.accuracy_req) for _ in range(sc.users)]
        user_trace, user_offset, arrivals = self._draws(rng)
        device_free = [0.0] * sc.users
        servers = {Tier.EDGE: _Server(Tier.EDGE), Tier.CLOUD: _Server(Tier.CLOUD)}
        actions = feasible_actions(profiles, sc.accuracy_req)
        records: list[RequestRecord] = []
        events: list[tuple[float, int, str, object]] = []
        seq = itertools.count()

        def push(t: float, kind: str, payload: object) -> None:
            heapq.heappush(events, (t, next(seq), kind, payload))

        def noisy(ms: float) -> float:
            if sc.service_cv <= 0:
                return ms
            sigma = math.sqrt(math.log1p(sc.service_cv ** 2))
            return ms * float(rng.lognormal(-sigma * sigma / 2, sigma))

        for u, t in enumerate(arrivals):
            for arrival in t:
                push(arrival, "arrive", u)

        connected: set[tuple[int, Tier]] = set()  # (device, server) pairs with an open connection

        def setup_ms(u: int, tier: Tier) -> float:
            return 0.0 if (u, tier) in connected else self.network.connect_ms(tier)

        def up_ms(u: int, tier: Tier, t: float) -> float:
            return setup_ms(u, tier) + self._leg_ms(user_trace[u], user_offset[u], tier, profiles.request_bytes, t)

        def down_ms(u: int, tier: Tier, t: float) -> float:
            return self._leg_ms(user_trace[u], user_offset[u], tier, self.network.response_bytes, t)

        def truth(u: int, t: float) -> Callable[[Action], float]:
            def response_ms(action: Action) -> float:
                tier = action[0]
                idle = self._idle_ms(action, user_trace[u], user_offset[u], t)
                if tier is Tier.END:
                    return max(0.0, device_free[u] - t) * 1000.0 + idle
                arrives_s = t + up_ms(u, tier, t) / 1000.0
                return setup_ms(u, tier) + idle + servers[tier].backlog_ms(arrives_s, profiles, sc.max_batch)
            return response_ms

        def start_batch(server: _Server, now: float) -> None:
            head = server.queue[0].action[1]
            batch = [r for r in server.queue if r.action[1] == head][: sc.max_batch]
            for r in batch:
                server.queue.remove(r)
            ms = noisy(profiles.variants[head].compute_ms(server.tier, len(batch)))
            server.busy, server.busy_until = True, now + ms / 1000.0
            server.record(head, ms / len(batch))
            push(server.busy_until, "done", (server.tier, batch))

        while events:
            now, _, kind, payload = heapq.heappop(events)
            if kind == "arrive":
                u = payload  # type: ignore[assignment]
                assert isinstance(u, int)
                if u >= sc.phase_at(now).users:
                    continue  # this device has left (or not yet joined)
                obs = observations[u]
                obs.local_busy_ms = max(0.0, device_free[u] - now) * 1000.0
                policy = policies[u]
                if isinstance(policy, OraclePolicy):
                    policy.truth = truth(u, now)
                decision = policy.choose(obs, actions)
                request = _Request(user=u, arrival_s=now, action=decision.action, decision=decision,
                                   sample=int(rng.integers(n_samples)) if n_samples else -1)
                tier, variant = decision.action
                if tier is Tier.END:
                    start = max(now, device_free[u])
                    device_free[u] = start + noisy(profiles.variants[variant].compute_ms(Tier.END)) / 1000.0
                    push(device_free[u] + self.network.end_overhead_ms / 1000.0, "answer", (request, None))
                else:
                    push(now + up_ms(u, tier, now) / 1000.0, "server", request)
                    connected.add((u, tier))
            elif kind == "server":
                request = payload  # type: ignore[assignment]
                assert isinstance(request, _Request)
                server = servers[request.action[0]]
                request.server_arrival_s = now
                server.queue.append(request)
                if not server.busy:
                    start_batch(server, now)
            elif kind == "done":
                tier, batch = payload  # type: ignore[misc]
                server = servers[tier]
                server.busy = False
                for request in batch:
                    load = ServerLoad(queue_depth=len(server.queue),
                                      service_ms=server.service_ms.get(request.action[1], 0.0),
                                      server_ms=(now - request.server_arrival_s) * 1000.0)
                    back = down_ms(request.user, tier, now) + self.network.overhead_ms(tier)
                    push(now + back / 1000.0, "answer", (request, load))
                if server.queue:
                    start_batch(server, now)
            elif kind == "answer":
                request, load = payload  # type: ignore[misc]
                response_ms = (now - request.arrival_s) * 1000.0
                variant = profiles.variants[request.action[1]]
                correct = (bool(variant.correct[request.sample]) if request.sample >= 0 and variant.correct is not None
                           else bool(rng.random() < variant.accuracy))
                r = reward(response_ms, accuracy=variant.accuracy, accuracy_req=sc.accuracy_req)
                obs = observations[request.user]
                obs.record(request.action[0], response_ms=response_ms, load=load)
                obs.local_busy_ms = max(0.0, device_free[request.user] - now) * 1000.0
                policies[request.user].update(request.decision, r, obs)
                records.append(RequestRecord(user=request.user, arrival_s=request.arrival_s, response_ms=response_ms,
                                             tier=request.action[0], variant=request.action[1], correct=correct,
                                             reward=r, explored=request.decision.explored))
                if progress is not None:
                    progress(now)
        records.sort(key=lambda r: r.arrival_s)
        return records


def arrival_times(sc: Scenario, rng: np.random.Generator) -> list[np.ndarray]:
    """Per device, its request times over the whole run (inactive ones are dropped as they come).

    The live run draws its users' times here too, so simulated and live users send alike.
    """
    out = []
    for _ in range(sc.users):
        if sc.arrivals == "poisson":
            n = rng.poisson(sc.rate_per_user * sc.duration_s * 1.2) + 10
            times = np.cumsum(rng.exponential(1.0 / sc.rate_per_user, n))
        else:
            times_list: list[float] = []
            t, on = 0.0, bool(rng.random() < sc.burst_duty)
            on_rate = sc.rate_per_user / sc.burst_duty
            off_mean = sc.burst_s * (1 - sc.burst_duty) / sc.burst_duty if sc.burst_duty < 1 else 0.0
            while t < sc.duration_s:
                span = rng.exponential(sc.burst_s if on else max(off_mean, 1e-9))
                if on:
                    k = rng.poisson(on_rate * span)
                    times_list.extend(sorted(t + rng.uniform(0, span, k)))
                t += span
                on = not on
            times = np.asarray(times_list)
        out.append(times[times < sc.duration_s])
    return out
