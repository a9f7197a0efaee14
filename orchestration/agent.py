"""The live orchestrator on an end device: model `orchestrator` of the edge agent's runtime.

Per request it observes (its network estimates, the load the servers last reported, its own
backlog), asks its policy for (tier, variant), and runs the request there: on the device with the
variant's ONNX graph, or on the edge server or the cloud through the Open Inference Protocol (the
servers host every variant by name: `edgecloud cloud serve --models ...`). The response time it
observes, and the `X-Edgecloud-Load` report that came with the answer, are the learner's reward and
next observation. A server that fails (refused, timed out, 5xx, a bad answer) costs the time it
took, and the device's own variant answers (AnswerSource.FALLBACK with a FallbackReason), so no
request is lost. Every offload carries its budget in `X-Deadline-Ms`, so a server drops the work
its device has given up on instead of computing it for nobody. The calls go through the device's one
client to the next tier (edge_agent/cloud_client.py) under the orchestrator's own failure policy
(`offload_policy`: one try, no breaker).

Each request may carry its own accuracy requirement (OIP request parameter `accuracy_req`, a
fraction); without it the device's configured one applies. With a `deadline_ms` the budget of an
offload is the deadline less the fallback's reserve (the fallback variant's device time), as the
simulator models it; without one it is the client's fixed timeout (`--orchestrator-timeout-ms`).

Outputs: `label` (INT64), `source` (BYTES: edge / edge-server / cloud / edge-fallback), `tier`,
`variant` and `fallback_reason` (BYTES), and `response_ms` (FP64: the device's own measure, from its
decision to its answer, that the learner was rewarded with).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from edge_agent.cloud_client import STATUS_REASONS, ClientPolicy, CloudClient, OffloadError
from edge_agent.settings import EdgeSettings
from orchestration.learners import FAILURE_PENALTY, Action, Decision, QLearning, reward
from orchestration.links import Radio
from orchestration.metrics import OrchestratorMetrics
from orchestration.policies import Policy, feasible_actions, make_policy
from orchestration.profiles import Profiles, profiles_from_manifest
from orchestration.state import Observation, ServerLoad
from serving.model import INPUT, ServedModel, single_input
from shared.bundle import TensorSpec, load_manifest
from shared.names import AnswerSource, FallbackReason, Tier
from shared.oip import KEEPALIVE_S, ProtocolError
from shared.onnx_session import open_session
from shared.preprocess import ImagePreprocessor, is_encoded
from shared.tasks import retrieve
from shared.traces import read_trace
from testbed.slowdown import Slowdown

log = logging.getLogger(__name__)

ORCHESTRATOR_MODEL = "orchestrator"
OUTPUTS: tuple[str, ...] = ("label", "source", "tier", "variant", "fallback_reason", "response_ms")
SOURCE_OF: dict[Tier, AnswerSource] = {Tier.END: AnswerSource.EDGE, Tier.EDGE: AnswerSource.EDGE_SERVER,
                                       Tier.CLOUD: AnswerSource.CLOUD}
OFFLOAD_STATUS_REASONS: Mapping[int, FallbackReason] = MappingProxyType(
    {code: reason for code, reason in STATUS_REASONS.items() if code != 408})
"""The orchestrator's reading of a failed status, as it has always been: the edge's, but a 408 (our
server's slow-upload limit, serving/http.py) is a bad response, not a timeout."""


@dataclass(frozen=True)
class Answer:
    labels: np.ndarray
    tier: Tier
    variant: str
    source: AnswerSource
    reason: str
    response_ms: float


def offload_policy(timeout_ms: float) -> ClientPolicy:
    """The failure policy of the orchestrator's clients: one try within `timeout_ms`, no breaker.

    No retry: when a server fails, the device answers itself with its fallback variant, which is
    faster than a second try. No breaker: the orchestrator's policy itself learns to avoid a failing
    tier (each fallback is penalised, learners.FAILURE_PENALTY), and its exploration, which finds a
    tier that came back, needs its calls to go out.
    """
    timeout_s = timeout_ms / 1000.0
    return ClientPolicy(deadline_ms=timeout_ms, connect_timeout_s=timeout_s, read_timeout_s=timeout_s, retries=0,
                        backoff_s=0.0, breaker=None, max_inflight=32, binary=True,
                        status_reasons=OFFLOAD_STATUS_REASONS)


class LocalVariants:
    """The variants the device runs itself: one onnxruntime session each, one compute thread."""

    def __init__(self, bundle: Path, names: list[str], *, threads: int = 1, slowdown: float = 1.0) -> None:
        self.device = Slowdown(slowdown)  # ValueError below 1
        manifest = load_manifest(bundle, verify=True)
        self.preprocessor = ImagePreprocessor.from_spec(manifest.input)
        self.sessions: dict[str, Any] = {}
        for name in names:
            entry = manifest.models[name]
            if entry.file is None:
                raise ValueError(f"variant {name!r} has no ONNX file; the device cannot run it")
            self.sessions[name] = open_session(Path(bundle) / entry.file, threads=threads)
        # One thread: the device is one core; requests for the device queue here, as on a real one.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgecloud-orchestrator")
        self.pending = 0

    @property
    def slowdown(self) -> float:
        return self.device.factor

    def run(self, name: str, x: np.ndarray) -> np.ndarray:
        # A device `slowdown` times slower holds this one compute thread that many times the pass's CPU
        # time (testbed/slowdown.py), so both its latency and the queueing behind it are the slow device's.
        logits = self.device.run(self.sessions[name].run, ["logits"], {"input": self.preprocessor.normalize(x)})[0]
        return logits.argmax(axis=1).astype(np.int64)

    async def infer(self, name: str, x: np.ndarray) -> np.ndarray:
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, self.run, name, x)
        finally:
            self.pending -= 1

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class Orchestrator:
    """Policy + observation + the device's variants + clients to the edge server and the cloud."""

    def __init__(self, *, profiles: Profiles, policy: Policy, local: LocalVariants,
                 clients: dict[Tier, CloudClient], accuracy_req: float, metrics: OrchestratorMetrics | None = None,
                 deadline_ms: float | None = None, keep_warm_s: float | None = KEEPALIVE_S / 2,
                 radio: Radio | None = None, radio_start_unix: float | None = None) -> None:
        if deadline_ms is not None and not deadline_ms > 0:
            raise ValueError(f"deadline_ms must be > 0 (or None), got {deadline_ms}")
        self.profiles = profiles
        self.policy = policy
        self.local = local
        self.clients = clients
        self.accuracy_req = accuracy_req
        self.metrics = metrics
        self.deadline_ms = deadline_ms
        self.obs = Observation(accuracy_req=accuracy_req)
        self._changes_seen = 0
        self._plans: dict[float, tuple[list[Action], str]] = {}
        self.actions, self.fallback_variant = self._plan(accuracy_req)
        self.keep_warm_s = keep_warm_s
        """idle seconds after which a readiness request keeps each server's connection open (None: never)"""
        self._warm: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()  # hedged uploads the device no longer waits for
        self.radio = radio
        """the device's radio report of its own uplink (None: unknown, as on a device that has none)"""
        self.radio_start_unix = time.time() if radio_start_unix is None else radio_start_unix

    def _plan(self, accuracy_req: float) -> tuple[list[Action], str]:
        """The feasible actions this device can take for a requirement, and its fallback variant: its
        fastest local variant meeting the requirement (what answers when a server fails)."""
        if accuracy_req not in self._plans:
            reachable = {Tier.END, *self.clients}
            actions = [a for a in feasible_actions(self.profiles, accuracy_req)
                       if a[0] in reachable and (a[0] is not Tier.END or a[1] in self.local.sessions)]
            if not actions:
                raise ValueError(f"no (tier, variant) reaches accuracy {accuracy_req} with the device's variants "
                                 f"{sorted(self.local.sessions)} and servers {sorted(self.clients)}")
            local_ok = [a[1] for a in actions if a[0] is Tier.END] or sorted(self.local.sessions)
            fallback = min(local_ok, key=lambda n: self.profiles.variants[n].compute_ms(Tier.END))
            self._plans[accuracy_req] = (actions, fallback)
        return self._plans[accuracy_req]

    def offload_budget_s(self, fallback_variant: str) -> float | None:
        """How long an offload may take: the deadline less the fallback's device time (None: the client's
        own timeout). The simulator's `Simulator.offload_budget_ms`, live."""
        if self.deadline_ms is None:
            return None
        reserve = self.profiles.variants[fallback_variant].compute_ms(Tier.END)
        return max(0.0, self.deadline_ms - reserve) / 1000.0

    def _local_busy_ms(self) -> float:
        return self.local.pending * self.profiles.variants[self.fallback_variant].compute_ms(Tier.END)

    async def answer(self, x: np.ndarray, *, accuracy_req: float | None = None,
                     encoded: np.ndarray | None = None) -> Answer:
        """Answer one request, with its own requirement (None: the device's configured one).

        `x` is the request's pixels; `encoded` the image files they were decoded from, if the device
        sent files: an offload then uploads the files (what the profiles' `input_bytes` counts).
        """
        if not self._warm and self.keep_warm_s is not None:
            # A device that answered on its own for a while would pay a handshake on its next offload
            # (the edge agent's reason for CloudClient.keep_warm); started here, where a loop runs.
            self._warm = [asyncio.create_task(c.keep_warm(idle_s=self.keep_warm_s)) for c in self.clients.values()]
        started = time.perf_counter()
        req = self.accuracy_req if accuracy_req is None else accuracy_req
        actions, fallback_variant = self._plan(req)
        self.obs.now_s = time.monotonic()
        self.obs.accuracy_req = req
        self.obs.local_busy_ms = self._local_busy_ms()
        if self.radio is not None:
            # What the modem says of the uplink now: the simulator's `UserLink` report, from the same trace.
            trace_s = time.time() - self.radio_start_unix
            self.obs.uplink_mbit_s = self.radio.recent_mbit_s(trace_s)
            self.obs.stalled_ms = self.radio.stalled_ms(trace_s)
        decision: Decision = self.policy.choose(self.obs, actions)
        tier, variant = decision.action
        reason = ""
        load: ServerLoad | None = None
        if tier is Tier.END:
            labels = await self.local.infer(variant, x)
            source = AnswerSource.EDGE
        else:
            client = self.clients[tier]
            # The offload's budget, never past the client's own timeout.
            budget_s = client.policy.deadline_ms / 1000.0
            offload_s = self.offload_budget_s(fallback_variant)
            if offload_s is not None:
                budget_s = min(budget_s, offload_s)
            sample = x if encoded is None else encoded
            offload = asyncio.create_task(self._offload(tier, variant, sample, len(x), budget_s))
            local: asyncio.Task[np.ndarray] | None = None
            if self.policy.hedge:
                # Race the device's own pass against the server (orchestration/policies.py, `+hedge`).
                local = asyncio.create_task(self.local.infer(fallback_variant, x))
                await asyncio.wait({offload, local}, return_when=asyncio.FIRST_COMPLETED)
            try:
                if local is not None and local.done() and not offload.done():
                    # The device was first: its answer is the request's. The upload goes on in the
                    # background, and its answer, when it comes, still tells the device about that tier.
                    labels, source, reason = local.result(), AnswerSource.FALLBACK, FallbackReason.LOCAL_FIRST.value
                    self._background.add(offload)
                    offload.add_done_callback(self._late_answer(tier, started))
                else:
                    labels, load = await offload
                    source = SOURCE_OF[tier]
                    if local is not None:
                        local.add_done_callback(retrieve)  # its thread runs on; nobody needs its answer
            except OffloadError as err:
                log.debug("%s failed: %s; the device answers", tier, err)
                reason = err.reason.value
                if self.metrics is not None:
                    self.metrics.fallbacks.labels(reason=reason).inc()
                labels = await (local if local is not None else self.local.infer(fallback_variant, x))
                source = AnswerSource.FALLBACK
        response_ms = (time.perf_counter() - started) * 1000.0
        answered_by = variant if source is not AnswerSource.FALLBACK else fallback_variant
        r = reward(response_ms, accuracy=self.profiles.variants[answered_by].accuracy, accuracy_req=req)
        failed = source is AnswerSource.FALLBACK and reason != FallbackReason.LOCAL_FIRST
        if failed:
            # A refused connection fails in a millisecond and the device then answers at its usual
            # cost, so the latency alone barely tells a dead server from the device: penalise it (ours).
            r -= FAILURE_PENALTY
        self.obs.now_s = time.monotonic()
        if source is not AnswerSource.FALLBACK:
            self.obs.record(tier, response_ms=response_ms, load=load)
        self.obs.local_busy_ms = self._local_busy_ms()
        self.policy.update(decision, r, self.obs)
        if self.metrics is not None:
            self.metrics.record(tier=tier.value, variant=variant, reward=r, response_s=response_ms / 1000.0)
            learner = getattr(self.policy, "learner", None)
            if isinstance(learner, QLearning):
                self.metrics.epsilon.set(learner.epsilon)
                if learner.changes > self._changes_seen:
                    self.metrics.changes.inc(learner.changes - self._changes_seen)
                    self._changes_seen = learner.changes
        return Answer(labels=labels, tier=tier, variant=answered_by, source=source, reason=reason,
                      response_ms=response_ms)

    async def _offload(self, tier: Tier, variant: str, sample: np.ndarray, n: int, budget_s: float
                       ) -> tuple[np.ndarray, ServerLoad | None]:
        """One offload: the labels and the load report that came with them (OffloadError if it failed)."""
        reply = await self.clients[tier].infer_model(variant, {INPUT: sample}, n=n, outputs=("label",),
                                                     budget_s=budget_s)
        load = None
        if reply.load is not None:
            load = ServerLoad(queue_depth=reply.load[0], service_ms=reply.load[1], server_ms=reply.load[2])
        return reply.labels, load

    def _late_answer(self, tier: Tier, started: float) -> Callable[[asyncio.Task[Any]], None]:
        """Done callback of a hedged upload the device no longer waits for: a server answer that came after
        the device's is still the latest news of that tier's link and load (the simulator records it too)."""
        def done(task: asyncio.Task[Any]) -> None:
            self._background.discard(task)
            if task.cancelled() or task.exception() is not None:
                return  # a failure after the device answered: nothing learnt, nothing lost
            _, load = task.result()
            self.obs.now_s = time.monotonic()
            self.obs.record(tier, response_ms=(time.perf_counter() - started) * 1000.0, load=load)
        return done

    async def aclose(self) -> None:
        for task in [*self._background, *self._warm]:
            task.cancel()
        await asyncio.gather(*self._background, *self._warm, return_exceptions=True)
        for client in self.clients.values():
            await client.aclose()
        self.local.close()


class OrchestratorModel(ServedModel):
    """The orchestrator behind the Open Inference Protocol; each request is one decision."""

    platform = "edgecloud_orchestrator"

    def __init__(self, orchestrator: Orchestrator, *, sample_shape: tuple[int, ...]) -> None:
        super().__init__(
            name=ORCHESTRATOR_MODEL,
            inputs=[TensorSpec(name=INPUT, datatype="UINT8", shape=[-1, *sample_shape])],
            outputs=[TensorSpec(name="label", datatype="INT64", shape=[-1]),
                     *[TensorSpec(name=n, datatype="BYTES", shape=[-1]) for n in OUTPUTS[1:-1]],
                     TensorSpec(name="response_ms", datatype="FP64", shape=[-1])])
        self.orchestrator = orchestrator

    def warm_up(self) -> float:
        started = time.perf_counter()
        shape = self.inputs[0].shape[1:]
        for name in self.orchestrator.local.sessions:
            self.orchestrator.local.run(name, np.zeros((1, *shape), np.uint8))
        return (time.perf_counter() - started) * 1000.0

    async def stop(self) -> None:
        self.ready = False
        await self.orchestrator.aclose()

    async def predict(self, tensors: dict[str, np.ndarray], *, timeout_s: float,
                      parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        raw = single_input(self.name, tensors)
        x = await self.orchestrator.local.preprocessor.check_async(raw)
        a = await self.orchestrator.answer(x, accuracy_req=_accuracy_req(parameters),
                                           encoded=raw if is_encoded(raw) else None)
        n = len(x)
        return {"label": a.labels, "source": np.full(n, a.source.value, dtype=object),
                "tier": np.full(n, a.tier.value, dtype=object), "variant": np.full(n, a.variant, dtype=object),
                "fallback_reason": np.full(n, a.reason, dtype=object),
                "response_ms": np.full(n, a.response_ms, dtype=np.float64)}


def _accuracy_req(parameters: dict[str, Any]) -> float | None:
    """The request's own `accuracy_req` parameter (a fraction in [0, 1]), or None; junk is a 400."""
    raw = parameters.get("accuracy_req")
    if raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ProtocolError(f"parameter accuracy_req must be a number in [0, 1], got {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ProtocolError(f"parameter accuracy_req must be in [0, 1], got {value}")
    return value


def build_orchestrator(settings: EdgeSettings, *, metrics: OrchestratorMetrics | None = None) -> OrchestratorModel:
    """Model `orchestrator` from EdgeSettings: every variant of the bundle on the device, the edge server
    and (if set) the cloud as remote tiers."""
    manifest = load_manifest(settings.bundle, verify=True)
    profiles = profiles_from_manifest(settings.bundle, manifest)
    if settings.device_slowdown > 1.0:
        # An emulated device `slowdown` times slower than this host: its latency model must say so too,
        # or greedy (and Q-learning's model prior) would price device passes at the profile's own share
        # while each one takes `slowdown` times the host's time (as the simulator's --end-cpu-share does).
        profiles = profiles.with_tier_share(Tier.END, 1.0 / settings.device_slowdown)
    client_policy = offload_policy(settings.orchestrator_timeout_ms)
    urls = {Tier.EDGE: settings.base_edge_server_url, Tier.CLOUD: settings.base_cloud_url}
    clients = {tier: CloudClient(settings, base_url=url, policy=client_policy, num_classes=len(manifest.classes))
               for tier, url in urls.items() if url is not None}
    local = LocalVariants(settings.bundle, profiles.names, threads=settings.threads,
                          slowdown=settings.device_slowdown)
    policy = make_policy(settings.policy, profiles, seed=settings.orchestrator_seed)
    radio = Radio(read_trace(settings.radio_trace)) if settings.radio_trace is not None else None
    orchestrator = Orchestrator(profiles=profiles, policy=policy, local=local, clients=clients,
                                accuracy_req=settings.accuracy_req, metrics=metrics, radio=radio,
                                radio_start_unix=settings.radio_trace_start_unix)
    return OrchestratorModel(orchestrator, sample_shape=tuple(manifest.input.shape))
