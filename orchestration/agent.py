"""The live orchestrator on an end device: model `orchestrator` of the edge agent's runtime.

Per request it observes (its network estimates, the load the servers last reported, its own
backlog), asks its policy for (tier, variant), and runs the request there: on the device with the
variant's ONNX graph, or on the edge server or the cloud through the Open Inference Protocol (the
servers host every variant by name: `edgecloud cloud serve --models ...`). The response time it
observes, and the `X-Edgecloud-Load` report that came with the answer, are the learner's reward and
next observation. A server that fails (refused, timed out, 5xx, a bad answer) costs the time it
took, and the device's own variant answers (AnswerSource.FALLBACK with a FallbackReason), so no
request is lost.

Outputs: `label` (INT64), `source` (BYTES: edge / edge-server / cloud / edge-fallback), `tier`,
`variant` and `fallback_reason` (BYTES), and `response_ms` (FP64: the device's own measure, from its
decision to its answer, that the learner was rewarded with).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from orchestration.learners import Decision, QLearning, reward
from orchestration.metrics import OrchestratorMetrics
from orchestration.policies import Policy, feasible_actions, make_policy
from orchestration.profiles import Profiles, profiles_from_manifest
from orchestration.state import Observation, ServerLoad
from serving.model import INPUT, ServedModel, single_input
from shared.bundle import TensorSpec, load_manifest
from shared.names import AnswerSource, FallbackReason, Tier
from shared.oip import ProtocolError, decode_response, encode_request, parse_load
from shared.preprocess import ImagePreprocessor
from testbed.slowdown import Slowdown

log = logging.getLogger(__name__)

ORCHESTRATOR_MODEL = "orchestrator"
OUTPUTS: tuple[str, ...] = ("label", "source", "tier", "variant", "fallback_reason", "response_ms")
FAILURE_PENALTY = 1.0
"""Extra cost of a request a server failed, in reward units (100 ms): the learner should leave a dead tier."""
SOURCE_OF: dict[Tier, AnswerSource] = {Tier.END: AnswerSource.EDGE, Tier.EDGE: AnswerSource.EDGE_SERVER,
                                       Tier.CLOUD: AnswerSource.CLOUD}


class ServerFailed(Exception):
    """A remote tier gave no valid answer; `reason` says why."""

    def __init__(self, reason: FallbackReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class Answer:
    labels: np.ndarray
    tier: Tier
    variant: str
    source: AnswerSource
    reason: str
    response_ms: float


class TierClient:
    """OIP infer calls to one server by variant name, reading the load header; no retry (the device
    answers itself instead, which is faster than a second try)."""

    def __init__(self, base_url: str, *, timeout_s: float, headers: dict[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = headers or {}
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), transport=transport,
                                       limits=httpx.Limits(max_connections=32, max_keepalive_connections=32))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def infer(self, variant: str, x: np.ndarray) -> tuple[np.ndarray, ServerLoad | None]:
        body, headers = encode_request({INPUT: x}, outputs=("label",))
        url = f"{self.base_url}/v2/models/{variant}/infer"
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._http.post(url, content=body, headers={**headers, **self._headers})
        except (httpx.ConnectError, httpx.ConnectTimeout) as err:
            raise ServerFailed(FallbackReason.UNREACHABLE, f"{url}: {type(err).__name__}") from None
        except (httpx.TimeoutException, TimeoutError):
            raise ServerFailed(FallbackReason.TIMEOUT, f"{url}: no answer in {self.timeout_s * 1000:.0f} ms") from None
        except httpx.HTTPError as err:
            raise ServerFailed(FallbackReason.UNREACHABLE, f"{url}: {type(err).__name__} {err}") from None
        if response.status_code != 200:
            reason = {503: FallbackReason.OVERLOADED, 429: FallbackReason.OVERLOADED, 401: FallbackReason.UNAUTHORIZED,
                      403: FallbackReason.UNAUTHORIZED, 504: FallbackReason.TIMEOUT}.get(response.status_code,
                                                                                           FallbackReason.BAD_RESPONSE)
            raise ServerFailed(reason, f"{url} answered {response.status_code}: {response.text[:120]!r}")
        try:
            _, outputs = decode_response(response.content, response.headers)
            labels = np.asarray(outputs["label"]).reshape(-1).astype(np.int64)
        except (ProtocolError, KeyError, ValueError) as err:
            raise ServerFailed(FallbackReason.BAD_RESPONSE, f"{url}: {err}") from None
        if len(labels) != len(x):
            raise ServerFailed(FallbackReason.BAD_RESPONSE, f"{url}: {len(labels)} labels for {len(x)} samples")
        load = parse_load(response.headers)
        return labels, (None if load is None else ServerLoad(queue_depth=load[0], service_ms=load[1],
                                                              server_ms=load[2]))


class LocalVariants:
    """The variants the device runs itself: one onnxruntime session each, one compute thread."""

    def __init__(self, bundle: Path, names: list[str], *, threads: int = 1, slowdown: float = 1.0) -> None:
        import onnxruntime as ort

        self.device = Slowdown(slowdown)  # ValueError below 1
        manifest = load_manifest(bundle, verify=True)
        self.preprocessor = ImagePreprocessor.from_spec(manifest.input)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.sessions = {}
        for name in names:
            entry = manifest.models[name]
            if entry.file is None:
                raise ValueError(f"variant {name!r} has no ONNX file; the device cannot run it")
            self.sessions[name] = ort.InferenceSession(str(Path(bundle) / entry.file), options,
                                                       providers=["CPUExecutionProvider"])
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
                 clients: dict[Tier, TierClient], accuracy_req: float, metrics: OrchestratorMetrics | None = None
                 ) -> None:
        self.profiles = profiles
        self.policy = policy
        self.local = local
        self.clients = clients
        self.accuracy_req = accuracy_req
        self.metrics = metrics
        self.obs = Observation(accuracy_req=accuracy_req)
        self._changes_seen = 0
        reachable = {Tier.END, *clients}
        self.actions = [a for a in feasible_actions(profiles, accuracy_req)
                        if a[0] in reachable and (a[0] is not Tier.END or a[1] in local.sessions)]
        if not self.actions:
            raise ValueError(f"no (tier, variant) reaches accuracy {accuracy_req} with the device's variants "
                             f"{sorted(local.sessions)} and servers {sorted(clients)}")
        # The device's own answer when a server fails: its fastest local variant meeting the requirement.
        local_ok = [a[1] for a in self.actions if a[0] is Tier.END] or sorted(local.sessions)
        self.fallback_variant = min(local_ok, key=lambda n: profiles.variants[n].compute_ms(Tier.END))

    def _local_busy_ms(self) -> float:
        return self.local.pending * self.profiles.variants[self.fallback_variant].compute_ms(Tier.END)

    async def answer(self, x: np.ndarray) -> Answer:
        started = time.perf_counter()
        self.obs.local_busy_ms = self._local_busy_ms()
        decision: Decision = self.policy.choose(self.obs, self.actions)
        tier, variant = decision.action
        reason = ""
        load: ServerLoad | None = None
        if tier is Tier.END:
            labels = await self.local.infer(variant, x)
            source = AnswerSource.EDGE
        else:
            try:
                labels, load = await self.clients[tier].infer(variant, x)
                source = SOURCE_OF[tier]
            except ServerFailed as err:
                log.debug("%s failed: %s; the device answers", tier, err)
                reason = err.reason.value
                if self.metrics is not None:
                    self.metrics.fallbacks.labels(reason=reason).inc()
                labels = await self.local.infer(self.fallback_variant, x)
                source = AnswerSource.FALLBACK
        response_ms = (time.perf_counter() - started) * 1000.0
        answered_by = variant if source is not AnswerSource.FALLBACK else self.fallback_variant
        r = reward(response_ms, accuracy=self.profiles.variants[answered_by].accuracy, accuracy_req=self.accuracy_req)
        if source is AnswerSource.FALLBACK:
            # A refused connection fails in a millisecond and the device then answers at its usual
            # cost, so the latency alone barely tells a dead server from the device: penalise it (ours).
            r -= FAILURE_PENALTY
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

    async def aclose(self) -> None:
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
        x = self.orchestrator.local.preprocessor.check(single_input(self.name, tensors))
        a = await self.orchestrator.answer(x)
        n = len(x)
        return {"label": a.labels, "source": np.full(n, a.source.value, dtype=object),
                "tier": np.full(n, a.tier.value, dtype=object), "variant": np.full(n, a.variant, dtype=object),
                "fallback_reason": np.full(n, a.reason, dtype=object),
                "response_ms": np.full(n, a.response_ms, dtype=np.float64)}


def build_orchestrator(settings: Any, *, metrics: OrchestratorMetrics | None = None) -> OrchestratorModel:
    """Model `orchestrator` from EdgeSettings: every variant of the bundle on the device, the edge server
    and (if set) the cloud as remote tiers."""
    manifest = load_manifest(settings.bundle, verify=True)
    profiles = profiles_from_manifest(settings.bundle, manifest)
    if settings.device_slowdown > 1.0:
        # An emulated device `slowdown` times slower than this host: its latency model must say so too,
        # or greedy (and Q-learning's model prior) would price device passes at the profile's own share
        # while each one takes `slowdown` times the host's time (as the simulator's --end-cpu-share does).
        profiles = profiles.with_tier_share(Tier.END, 1.0 / settings.device_slowdown)
    timeout_s = settings.orchestrator_timeout_ms / 1000.0
    token = settings.bearer_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    clients: dict[Tier, TierClient] = {}
    if settings.base_edge_server_url is not None:
        clients[Tier.EDGE] = TierClient(settings.base_edge_server_url, timeout_s=timeout_s, headers=headers)
    if settings.base_cloud_url is not None:
        clients[Tier.CLOUD] = TierClient(settings.base_cloud_url, timeout_s=timeout_s, headers=headers)
    local = LocalVariants(settings.bundle, profiles.names, threads=settings.threads,
                          slowdown=settings.device_slowdown)
    policy = make_policy(settings.policy, profiles, seed=settings.orchestrator_seed)
    orchestrator = Orchestrator(profiles=profiles, policy=policy, local=local, clients=clients,
                                accuracy_req=settings.accuracy_req, metrics=metrics)
    return OrchestratorModel(orchestrator, sample_shape=tuple(manifest.input.shape))
