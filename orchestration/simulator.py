"""A discrete-event simulator of N end devices sharing an edge server and a cloud (numpy only).

Built from measured inputs only: each variant's per-tier compute time (orchestration.profiles, on
the machines of orchestration.hardware), each variant's per-sample correctness on the test split,
and real bandwidth traces (shared.traces) for each device's access link (orchestration.links).
Per request, with its own accuracy requirement and deadline (orchestration.scenario):

- **end**: the device computes it when its own earlier requests are done (one core, FIFO).
- **edge**: up the access link, into the edge server's queue, back down when the server finishes.
  The edge server has `cores` cores (one by default) shared by every device: FIFO, and a free core
  takes the head request and every queued request for the same model (up to `max_batch`), as the
  runtime's per-model batcher does.
- **cloud**: the same, with a WAN leg each way and the cloud's own (faster, wider) server.
- **deadline and fallback**, as the live agent (orchestration/agent.py) does: an offload that has not
  answered when only the device's fallback reserve is left (`deadline - reserve`, the reserve being
  the fallback variant's device time) is abandoned, and the device answers with its fastest variant
  meeting the request's requirement (`AnswerSource.FALLBACK`, reason `timeout`), at its response
  time plus the failure penalty in the reward. The request carries its remaining budget
  (`X-Deadline-Ms`), so the server drops it unanswered if it is still queued when the budget runs
  out there, as the runtime's batcher drops expired work; a late answer is discarded.
- **hedge** (a policy named `...+hedge`, orchestration/policies.py): an offload also queues the
  fallback variant on the device's core at once, and the first answer wins (`AnswerSource.FALLBACK`
  with reason `local_first` when the device's does, no failure penalty: nothing failed). The device's
  pass runs to its end either way (a thread cannot be stopped), and the server's work goes on unless
  its budget runs out in the queue; a server answer that comes after the device's still updates the
  device's view of that tier (its response time and load report), as the live agent's background
  wait for it does, but is not the request's answer. No abandon timer: the device's pass is the fallback.

Each response carries the server's load report (queue depth, moving-average service time, time in
the server), exactly what the live servers put in `X-Edgecloud-Load`, and the device's policy
learns from it. Scenarios change mid-run: users join and leave, the access bandwidth drops.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from orchestration.learners import FAILURE_PENALTY, Action, Decision, reward
from orchestration.links import NetworkConfig, UserLink
from orchestration.policies import MyopicOracle, Policy, fallback_variant, feasible_actions
from orchestration.profiles import Profiles
from orchestration.report import Outcome
from orchestration.scenario import (
    ARRIVALS,
    SCENARIOS,
    Arrivals,
    Phase,
    RequirementMix,
    Scenario,
    arrival_times,
    changing,
    churn,
    requirement_schedules,
    steady,
)
from orchestration.state import Observation, ServerLoad
from serving.metrics import EWMA_ALPHA as SERVER_EWMA_ALPHA
from shared.names import FallbackReason, Tier
from shared.traces import Trace

__all__ = ["ARRIVALS", "SCENARIOS", "Arrivals", "NetworkConfig", "Phase", "RequestRecord", "RequirementMix",
           "Scenario", "Simulator", "arrival_times", "changing", "churn", "steady"]


@dataclass(frozen=True)
class RequestRecord(Outcome):
    """One answered request, as the simulator records it (the tier is the one the policy chose)."""

    user: int
    explored: bool = False
    accuracy_req: float = 0.0
    """the request's own requirement."""
    missed: bool = False
    """answered by a variant below the requirement (a fallback too, if its variant is)."""
    fallback: str = ""
    """why the device answered itself after offloading (FallbackReason), or "" if it did not."""


@dataclass
class _Request:
    user: int
    arrival_s: float
    accuracy_req: float
    action: Action
    decision: Decision
    sample: int
    server_arrival_s: float = 0.0
    server_deadline_s: float = math.inf
    abandoned: bool = False
    answered: bool = False


class _Server:
    """`cores` cores, one FIFO queue, batching same-model requests at the head (the runtime's batcher)."""

    def __init__(self, tier: Tier, cores: int) -> None:
        self.tier = tier
        self.queue: list[_Request] = []
        self.free_at = [0.0] * cores    # when each core's current pass ends
        self.busy = [False] * cores
        self.service_ms: dict[str, float] = {}  # per model, EWMA per sample (serving/metrics.py)

    def idle_core(self) -> int | None:
        return next((i for i, b in enumerate(self.busy) if not b), None)

    def wait_ms(self, at_s: float, profiles: Profiles, max_batch: int) -> float:
        """How long a request reaching the server at `at_s` would wait for a core behind the work there
        now: the passes running, then the queue batched by model, each batch to the first free core."""
        cores = sorted(max(at_s, f) if b else at_s for f, b in zip(self.free_at, self.busy, strict=True))
        counts: dict[str, int] = {}
        for request in self.queue:
            counts[request.action[1]] = counts.get(request.action[1], 0) + 1
        for model, n in counts.items():
            full, left = divmod(n, max_batch)
            cost = profiles.variants[model]
            for size in [max_batch] * full + ([left] if left else []):
                heapq.heapreplace(cores, cores[0] + cost.compute_ms(self.tier, size) / 1000.0)
        return (cores[0] - at_s) * 1000.0

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
        self._actions: dict[float, list[Action]] = {}

    # -- what every run shares -------------------------------------------------------------------------
    def actions(self, accuracy_req: float) -> list[Action]:
        """The feasible actions of a request with this requirement."""
        if accuracy_req not in self._actions:
            self._actions[accuracy_req] = feasible_actions(self.profiles, accuracy_req)
        return self._actions[accuracy_req]

    def fallback_variant(self, accuracy_req: float) -> str:
        """What the device answers with when an offload fails: its fastest variant meeting the requirement
        (the live agent's `Orchestrator.fallback_variant`)."""
        return fallback_variant(self.profiles, accuracy_req)

    def offload_budget_ms(self, accuracy_req: float) -> float:
        """How long an offload may take before the device gives up: the deadline less its fallback reserve."""
        if self.scenario.deadline_ms is None:
            return math.inf
        reserve = self.profiles.variants[self.fallback_variant(accuracy_req)].compute_ms(Tier.END)
        return max(0.0, self.scenario.deadline_ms - reserve - self.network.end_overhead_ms)

    def _draws(self, rng: np.random.Generator) -> tuple[list[UserLink], list[np.ndarray]]:
        """Each device's link (its trace, cycled through the folder, at a random start) and its arrival
        times, drawn in run()'s order."""
        sc = self.scenario
        user_trace = [self.traces[(u + sc.seed) % len(self.traces)] for u in range(sc.users)]
        offsets = [float(rng.uniform(0, t.duration_s)) for t in user_trace]
        links = [UserLink(trace, offset, sc, self.network) for trace, offset in zip(user_trace, offsets, strict=True)]
        return links, arrival_times(sc, rng)

    def requests(self) -> tuple[list[UserLink], list[tuple[float, int, float]]]:
        """The links and every request run() will see, in arrival order: (time, user, requirement)."""
        sc = self.scenario
        links, arrivals = self._draws(np.random.default_rng(sc.seed))
        schedules = requirement_schedules(sc)
        out = [(float(t), u, schedules[u].at(float(t))) for u, times in enumerate(arrivals) for t in times
               if u < sc.phase_at(float(t)).users]
        out.sort()
        return links, out

    # -- one run ---------------------------------------------------------------------------------------
    def run(self, make_policy: Callable[[int], Policy], *, progress: Callable[[float], None] | None = None
            ) -> list[RequestRecord]:
        sc = self.scenario
        rng = np.random.default_rng(sc.seed)
        profiles = self.profiles
        net = self.network
        n_samples = min((len(v.correct) for v in profiles.variants.values() if v.correct is not None), default=0)
        policies = [make_policy(u) for u in range(sc.users)]
        observations = [Observation() for _ in range(sc.users)]
        links, arrivals = self._draws(rng)
        schedules = requirement_schedules(sc)
        device_free = [0.0] * sc.users
        servers = {tier: _Server(tier, profiles.tiers[tier].cores) for tier in (Tier.EDGE, Tier.CLOUD)}
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
            return 0.0 if (u, tier) in connected else net.connect_ms(tier)

        def compute_locally(u: int, variant: str, now: float) -> float:
            """Queue a pass on device u's core; when its answer is out."""
            start = max(now, device_free[u])
            device_free[u] = start + noisy(profiles.variants[variant].compute_ms(Tier.END)) / 1000.0
            return device_free[u] + net.end_overhead_ms / 1000.0

        def truth(u: int, t: float, req: float) -> Callable[[Action], float]:
            """The myopic oracle's view: each action's response given every queue and link as they are now."""
            budget = self.offload_budget_ms(req)
            fallback_ms = profiles.variants[self.fallback_variant(req)].compute_ms(Tier.END) + net.end_overhead_ms

            def response_ms(action: Action) -> float:
                tier, variant = action
                if tier is Tier.END:
                    return (max(0.0, device_free[u] - t) * 1000.0 + profiles.variants[variant].compute_ms(Tier.END)
                            + net.end_overhead_ms)
                at = t + (setup_ms(u, tier) + links[u].up_ms(tier, profiles.request_bytes, t)) / 1000.0
                finish = at + (servers[tier].wait_ms(at, profiles, sc.max_batch)
                               + profiles.variants[variant].compute_ms(tier)) / 1000.0
                total = ((finish - t) * 1000.0 + links[u].down_ms(tier, net.response_bytes, finish)
                         + net.overhead_ms(tier))
                if total <= budget:
                    return total
                return budget + max(0.0, device_free[u] - t - budget / 1000.0) * 1000.0 + fallback_ms
            return response_ms

        def start_batch(server: _Server, core: int, now: float) -> None:
            # The batcher drops queued work whose deadline has passed, uncomputed (its device gave up).
            server.queue = [r for r in server.queue if r.server_deadline_s > now]
            if not server.queue:
                return
            head = server.queue[0].action[1]
            batch = [r for r in server.queue if r.action[1] == head][: sc.max_batch]
            for r in batch:
                server.queue.remove(r)
            ms = noisy(profiles.variants[head].compute_ms(server.tier, len(batch)))
            server.busy[core], server.free_at[core] = True, now + ms / 1000.0
            server.record(head, ms / len(batch))
            push(server.free_at[core], "done", (server.tier, core, batch))

        def answer(request: _Request, now: float, load: ServerLoad | None, fallback: FallbackReason | None) -> None:
            u = request.user
            response_ms = (now - request.arrival_s) * 1000.0
            name = self.fallback_variant(request.accuracy_req) if fallback is not None else request.action[1]
            variant = profiles.variants[name]
            correct = (bool(variant.correct[request.sample]) if request.sample >= 0 and variant.correct is not None
                       else bool(rng.random() < variant.accuracy))
            r = reward(response_ms, accuracy=variant.accuracy, accuracy_req=request.accuracy_req)
            obs = observations[u]
            obs.now_s = now
            if fallback is FallbackReason.LOCAL_FIRST:
                pass  # a hedge the device won: nothing failed, and the server's answer is still to come
            elif fallback is not None:
                r -= FAILURE_PENALTY  # as the live agent charges a failed server
            else:
                obs.record(request.action[0], response_ms=response_ms, load=load)
            obs.local_busy_ms = max(0.0, device_free[u] - now) * 1000.0
            policies[u].update(request.decision, r, obs)
            records.append(RequestRecord(
                user=u, arrival_s=request.arrival_s, response_ms=response_ms, tier=request.action[0], variant=name,
                correct=correct, reward=r, explored=request.decision.explored, accuracy_req=request.accuracy_req,
                missed=variant.accuracy < request.accuracy_req, fallback="" if fallback is None else fallback.value))
            if progress is not None:
                progress(now)

        while events:
            now, _, kind, payload = heapq.heappop(events)
            if kind == "arrive":
                u = payload  # type: ignore[assignment]
                assert isinstance(u, int)
                if u >= sc.phase_at(now).users:
                    continue  # this device has left (or not yet joined)
                req = schedules[u].at(now)
                obs = observations[u]
                obs.now_s, obs.accuracy_req = now, req
                obs.local_busy_ms = max(0.0, device_free[u] - now) * 1000.0
                obs.uplink_mbit_s, obs.stalled_ms = links[u].recent_mbit_s(now), links[u].stalled_ms(now)
                policy = policies[u]
                if isinstance(policy, MyopicOracle):
                    policy.truth = truth(u, now, req)
                decision = policy.choose(obs, self.actions(req))
                request = _Request(user=u, arrival_s=now, accuracy_req=req, action=decision.action, decision=decision,
                                   sample=int(rng.integers(n_samples)) if n_samples else -1)
                tier, variant = decision.action
                if tier is Tier.END:
                    push(compute_locally(u, variant, now), "answer", (request, None))
                else:
                    budget_s = self.offload_budget_ms(req) / 1000.0
                    up_s = (setup_ms(u, tier) + links[u].up_ms(tier, profiles.request_bytes, now)) / 1000.0
                    push(now + up_s, "server", (request, budget_s))
                    connected.add((u, tier))
                    if policy.hedge:
                        push(compute_locally(u, self.fallback_variant(req), now), "local_first", request)
                    elif math.isfinite(budget_s):
                        push(now + budget_s, "abandon", request)
            elif kind == "server":
                request, budget_s = payload  # type: ignore[misc]
                if request.abandoned:
                    continue  # the device gave up before its upload finished: the server never got it
                server = servers[request.action[0]]
                # X-Deadline-Ms is the budget when sent; the server counts it from when the request arrives.
                request.server_arrival_s, request.server_deadline_s = now, now + budget_s
                server.queue.append(request)
                core = server.idle_core()
                if core is not None:
                    start_batch(server, core, now)
            elif kind == "done":
                tier, core, batch = payload  # type: ignore[misc]
                server = servers[tier]
                server.busy[core] = False
                for request in batch:
                    load = ServerLoad(queue_depth=len(server.queue),
                                      service_ms=server.service_ms.get(request.action[1], 0.0),
                                      server_ms=(now - request.server_arrival_s) * 1000.0)
                    back = links[request.user].down_ms(tier, net.response_bytes, now) + net.overhead_ms(tier)
                    push(now + back / 1000.0, "answer", (request, load))
                if server.queue:
                    start_batch(server, core, now)
            elif kind == "abandon":
                request = payload  # type: ignore[assignment]
                assert isinstance(request, _Request)
                if request.answered:
                    continue
                request.abandoned = True
                done_s = compute_locally(request.user, self.fallback_variant(request.accuracy_req), now)
                push(done_s, "fallback", request)
            elif kind == "fallback":
                answer(payload, now, None, FallbackReason.TIMEOUT)  # type: ignore[arg-type]
            elif kind == "local_first":
                request = payload  # type: ignore[assignment]
                assert isinstance(request, _Request)
                if request.answered:
                    continue  # the server answered first; this pass ran for nothing
                request.answered = True
                answer(request, now, None, FallbackReason.LOCAL_FIRST)
            elif kind == "answer":
                request, load = payload  # type: ignore[misc]
                if request.abandoned:
                    continue  # the device gave up on it: a late answer is discarded
                if request.answered:
                    # A hedge the device won: the server's answer is no longer the request's, but it tells
                    # the device how long that tier took now (the live agent waits for it in the background).
                    obs = observations[request.user]
                    obs.now_s = now
                    obs.record(request.action[0], response_ms=(now - request.arrival_s) * 1000.0, load=load)
                    continue
                request.answered = True
                answer(request, now, load, None)
        records.sort(key=lambda r: (r.arrival_s, r.user))
        return records
