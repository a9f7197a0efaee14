"""The edge's split model on the runtime: `split`, a planner choosing exit, partition and bits per request.

Input `input` (UINT8 raw pixels [N, C, H, W]; one sample per request is the intended use); request
parameters `strategy` (a planner: sac, dqn, device_only, server_only, neurosurgeon, edgent; default
sac), `deadline_ms` (default: the deadline the planners were trained for) and `action` (an action's
label, e.g. split@2:4b:exit4, taken instead of asking a planner: replays a plan, such as the
hindsight oracle's from the environment, through the live path). Per request:

1. the planner picks (exit e, partition p, bits b) from the state it measured itself (splitting/state.py);
2. device-only: head_e here. Split: head_p here, the feature quantised to b bits and sent to the
   server's `tail_p`, which answers with exit e. Server-only: raw pixels to the server's teacher;
   Hedge (a planner trained with `--hedge`): the server-only upload and the whole network (or, for
   `hedge:exitE`, the head to exit E) here at once; the first answer wins, the device's labelled
   `edge-fallback` / `local_first`. The upload is left to finish in the background (its measurement
   feeds the state; cancelling it would cost the connection);
3. the offload gets what is left of the deadline (less, for server-only, the time of exit 1 here). If
   the server is down, slow or overloaded, the device finishes on its own (splitting/latency.py's rule,
   which the environment models too): a split runs tail_p here if the profile says it fits the time
   left, else answers from exit p, which its head already computed; server-only runs the deepest
   head that fits. The answer is labelled `edge-fallback` with the reason. Nothing is dropped.

Outputs: `label` (INT64), `source` (BYTES: edge, cloud, edge-fallback), `fallback_reason` (BYTES),
`action` (BYTES: the planner's choice, e.g. split@2:4b:exit4) and `payload_bytes` (INT64: feature
bytes sent). The client to the server is the edge's resilient one (edge_agent/cloud_client.py).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.cloud_client import CloudClient, OffloadError, wire_pixels
from serving.model import INPUT, ServedModel, single_input
from shared.bundle import TensorSpec
from shared.feature_codec import FEATURE, parameters_of, quantize
from shared.names import AnswerSource, FallbackReason
from shared.oip import ProtocolError
from shared.preprocess import ImagePreprocessor, is_encoded
from shared.tasks import retrieve
from splitting.actions import Placement
from splitting.hint import greedy_hint
from splitting.segments import SegmentRunner, head_name, tail_name
from splitting.setup import LEGACY_STRATEGIES, STRATEGIES, SplitSetup
from splitting.state import StateTracker
from testbed.slowdown import Slowdown

SPLIT_MODEL = "split"
LIVE_STRATEGIES: tuple[str, ...] = tuple(s for s in STRATEGIES if s != "oracle")
"""Every strategy but the hindsight oracle, which needs the future."""


@dataclass
class _View:
    """What a planner may look at: the device's own measurements, this request's deadline, its load."""

    tracker: StateTracker
    deadline_ms: float
    load: float


@dataclass(frozen=True)
class _Fixed:
    """A planner that always picks one action (the request's `action` parameter)."""

    index: int
    name: str = "fixed"

    def choose(self, obs: np.ndarray, mask: np.ndarray, view: Any) -> int:
        return self.index


@dataclass(frozen=True)
class SplitAnswer:
    labels: np.ndarray
    source: AnswerSource
    reason: str
    action: str
    payload_bytes: int


class SplitAgent:
    """The split pipeline of one bundle: segments, planners, the device's measurements, the link."""

    def __init__(self, bundle: Path, *, cloud: CloudClient | None, threads: int = 1, slowdown: float = 1.0) -> None:
        self.setup = SplitSetup.load(bundle, need_spec=False)
        self.plan, self.space = self.setup.plan, self.setup.space
        s = self.plan.n_stages
        self.runner = SegmentRunner(bundle, manifest=self.setup.manifest, heads=range(1, s + 1), tails=range(1, s),
                                    threads=threads)
        # An emulated slower device (a Raspberry Pi 4: `edgecloud profile --pi4` gives its k): every segment
        # is computed here and its answer held k times its CPU time (testbed/slowdown.py), as the profile was.
        self.device = Slowdown(slowdown)
        self.model = self.setup.cost_model()
        self.preprocessor = ImagePreprocessor.from_spec(self.setup.manifest.input)
        self.cloud = cloud
        spec = self.setup.spec
        self.tracker = StateTracker(spec.state, initial_rtt_ms=spec.link.rtt_ms)
        self.hint = greedy_hint(self.model, self.setup.val_accuracy, spec.state, acc_weight=spec.acc_weight,
                                miss_penalty=spec.miss_penalty)
        self.planners = {name: self.setup.planner(name, self.model) for name in self.setup.strategies()
                         if name in LIVE_STRATEGIES} | {
            legacy: self.setup.planner(legacy, self.model) for legacy in LEGACY_STRATEGIES}
        self._lock = asyncio.Lock()  # one request at a time: the device is one core, and the state is shared
        self._background: set[asyncio.Task[Any]] = set()  # hedged uploads the device no longer waits for

    def _action_index(self, label: Any) -> int:
        labels = {a.label(self.plan.n_stages): i for i, a in enumerate(self.space.actions) if self.space.valid[i]}
        if not isinstance(label, str) or label not in labels:
            raise ProtocolError(f"parameter action must be one of {sorted(labels)}, got {label!r}")
        return labels[label]

    def _planner(self, name: Any) -> Any:
        if not isinstance(name, str) or name not in self.planners:
            raise ProtocolError(f"parameter strategy must be one of {sorted(self.planners)}, got {name!r}")
        return self.planners[name]

    async def infer(self, x_raw: np.ndarray, *, strategy: Any, deadline_ms: Any, action: Any = None
                    ) -> SplitAnswer:
        if isinstance(deadline_ms, bool) or not isinstance(deadline_ms, int | float) or not 0 < deadline_ms < 600_000:
            raise ProtocolError(f"parameter deadline_ms must be a number in (0, 600000), got {deadline_ms!r}")
        planner = self._planner(strategy) if action is None else _Fixed(self._action_index(action))
        x = await self.preprocessor.check_async(x_raw)
        async with self._lock:
            return await self._infer(x, planner, float(deadline_ms), encoded=x_raw if is_encoded(x_raw) else None)

    async def _infer(self, x: np.ndarray, planner: Any, deadline_ms: float, *, encoded: np.ndarray | None = None
                     ) -> SplitAnswer:
        """`x` is the decoded pixels; `encoded` the files they came as, if they came as files."""
        started = time.perf_counter()
        now = time.monotonic()
        load = self.tracker.load
        # An open breaker means the server is known to be down: only device-only actions are valid then.
        reachable = self.cloud is not None and not self.cloud.circuit_open
        mask = self.space.mask(server_available=reachable)
        view = _View(self.tracker, deadline_ms, load)
        obs = self.tracker.observe(now_s=now, deadline_ms=deadline_ms)
        if self.hint is not None:  # greedy's choice, as the planners saw it in training (splitting/hint.py)
            obs = self.hint.extend(obs, mask, view)
        index = planner.choose(obs, mask, view)
        a = self.space.actions[index]
        label = a.label(self.plan.n_stages)
        kind = a.placement(self.plan.n_stages)
        xn = self.preprocessor.normalize(x)
        if kind is Placement.DEVICE:
            exits = await self._head(a.exit, xn)
            return SplitAnswer(self._labels(exits[a.exit]), AnswerSource.EDGE, "", label, 0)
        if kind is Placement.HEDGE:
            return await self._hedge(index, a.exit, label, x, xn, encoded, started, deadline_ms)
        if kind is Placement.SERVER:
            sample, payload = self._server_sample(x, encoded)
            reserve_s = self.model.reserve_ms(index, load=load) / 1000.0
            budget_s = deadline_ms / 1000.0 - (time.perf_counter() - started) - reserve_s
            try:
                answer = await self._offload(index, self.setup.manifest.teacher, {INPUT: sample}, None,
                                             budget_s, len(x))
            except OffloadError as err:
                labels = await self._finish_from_raw(xn, started, deadline_ms)
                return SplitAnswer(labels, AnswerSource.FALLBACK, err.reason.value, label, payload)
            return SplitAnswer(answer, AnswerSource.CLOUD, "", label, payload)
        exits, feature = await self._head_with_feature(a.partition, xn)
        code = quantize(feature, a.bits)
        params = {**parameters_of(code), "exit": a.exit}
        budget_s = deadline_ms / 1000.0 - (time.perf_counter() - started)
        try:
            answer = await self._offload(index, tail_name(a.partition), {FEATURE: code.packed}, params, budget_s,
                                         len(x))
        except OffloadError as err:
            labels = await self._finish_split(a.partition, a.exit, exits, feature, started, deadline_ms)
            return SplitAnswer(labels, AnswerSource.FALLBACK, err.reason.value, label, code.nbytes)
        return SplitAnswer(answer, AnswerSource.CLOUD, "", label, code.nbytes)

    @staticmethod
    def _server_sample(x: np.ndarray, encoded: np.ndarray | None) -> tuple[np.ndarray, int]:
        """What server-only uploads, and its payload bytes: the sample as the device holds it, its file when
        it came as one (the server decodes it), else its raw pixels."""
        if encoded is None:
            return wire_pixels(x), int(x.size)
        return encoded, sum(len(item) for item in encoded)

    async def _hedge(self, index: int, s: int, label: str, x: np.ndarray, xn: np.ndarray,
                     encoded: np.ndarray | None, started: float, deadline_ms: float) -> SplitAnswer:
        """Upload as server-only and run the head to exit `s` here at once (S, or the early exit of a
        `hedge:exit{s}`); the first answer wins (splitting/latency.py models the same race)."""
        sample, payload = self._server_sample(x, encoded)
        budget_s = deadline_ms / 1000.0 - (time.perf_counter() - started)
        offload = asyncio.create_task(self._offload(index, self.setup.manifest.teacher, {INPUT: sample}, None,
                                                    budget_s, len(x)))
        local = asyncio.create_task(self._head(s, xn))
        done, _ = await asyncio.wait({offload, local}, return_when=asyncio.FIRST_COMPLETED)
        if offload in done:
            try:
                answer = offload.result()
            except OffloadError as err:
                exits = await local
                return SplitAnswer(self._labels(exits[s]), AnswerSource.FALLBACK, err.reason.value, label, payload)
            # The device's pass runs on in its thread (a thread cannot be stopped); nothing waits for it.
            local.add_done_callback(retrieve)
            return SplitAnswer(answer, AnswerSource.CLOUD, "", label, payload)
        # The device was first. Its upload goes on (it records its own transfer when it ends).
        self._background.add(offload)
        offload.add_done_callback(self._background.discard)
        offload.add_done_callback(retrieve)
        exits = local.result()
        return SplitAnswer(self._labels(exits[s]), AnswerSource.FALLBACK, FallbackReason.LOCAL_FIRST.value, label,
                           payload)

    @staticmethod
    def _labels(logits: np.ndarray) -> np.ndarray:
        return np.asarray(logits).argmax(axis=1).astype(np.int64)

    async def _head(self, p: int, xn: np.ndarray) -> dict[int, np.ndarray]:
        exits, _ = await self._timed_head(p, xn)
        return exits

    async def _head_with_feature(self, p: int, xn: np.ndarray) -> tuple[dict[int, np.ndarray], np.ndarray]:
        exits, feature = await self._timed_head(p, xn)
        assert feature is not None  # p < S: a split's head gives its feature
        return exits, feature

    async def _timed_head(self, p: int, xn: np.ndarray) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
        t0 = time.perf_counter()
        exits, feature = await asyncio.to_thread(self.device.run, self.runner.head, p, xn)
        # Device load: how much slower than profiled the head ran (1 = as profiled), per sample.
        self.tracker.record_load(1000.0 * (time.perf_counter() - t0) / len(xn), self.setup.device.ms(head_name(p)))
        return exits, feature

    async def _offload(self, index: int, model: str, inputs: dict[str, np.ndarray], params: dict[str, Any] | None,
                       budget_s: float, n: int) -> np.ndarray:
        if self.cloud is None:
            raise OffloadError(FallbackReason.UNREACHABLE, "this edge has no cloud_url", tried=False)
        t0 = time.monotonic()
        server_ms = self.model.server_ms(index)
        wire = self.model.request_bytes(index) + self.model.link.response_bytes
        try:
            answer = await self.cloud.infer_model(model, inputs, n=n, parameters=params, budget_s=budget_s)
        except OffloadError as err:
            if err.tried:  # waited this long and got nothing: the link is at most this fast
                waited_ms = 1000.0 * (time.monotonic() - t0)
                self.tracker.record_transfer(wire_bytes=self.model.request_bytes(index), network_ms=waited_ms,
                                             now_s=time.monotonic(), completed=False)
            raise
        # The round trip less what is not the link: the server's compute and the device's own client work
        # (both profiled; the environment's samples are the link alone, and its costs count the client
        # work as device time). Left in, the 2 ms of client work of a ~1.7 KB exchange read as a sixth less
        # bandwidth on a 1.3 Mbit/s uplink.
        network_ms = 1000.0 * answer.rtt_s - server_ms - self.model.offload_client_ms
        self.tracker.record_transfer(wire_bytes=wire, network_ms=max(network_ms, 0.1), now_s=time.monotonic())
        return answer.labels

    def _left_ms(self, started: float, deadline_ms: float) -> float:
        return deadline_ms - 1000.0 * (time.perf_counter() - started)

    async def _finish_split(self, p: int, exit_: int, exits: dict[int, np.ndarray], feature: np.ndarray,
                            started: float, deadline_ms: float) -> np.ndarray:
        """After a failed split: tail_p here if it fits the time left (unquantised feature), else exit p."""
        if self.model.local_ms(tail_name(p), load=self.tracker.load) <= self._left_ms(started, deadline_ms):
            later = await asyncio.to_thread(self.device.run, self.runner.tail, p, feature)
            return self._labels(later[exit_])
        return self._labels(exits[p])

    async def _finish_from_raw(self, xn: np.ndarray, started: float, deadline_ms: float) -> np.ndarray:
        """After a failed server-only request: the deepest exit whose head fits the time left (else exit 1)."""
        left = self._left_ms(started, deadline_ms)
        fits = [e for e in range(self.plan.n_stages, 0, -1)
                if self.model.local_ms(head_name(e), load=self.tracker.load) <= left]
        e = fits[0] if fits else 1
        exits = await self._head(e, xn)
        return self._labels(exits[e])


class SplitModel(ServedModel):
    """`SplitAgent` as model `split` of the edge's runtime."""

    platform = "edgecloud_split_onnxruntime"

    def __init__(self, agent: SplitAgent, *, name: str = SPLIT_MODEL, version: str = "1") -> None:
        c, h, w = agent.preprocessor.sample_shape
        super().__init__(
            name=name, version=version, inputs=[TensorSpec(name=INPUT, datatype="UINT8", shape=[-1, c, h, w])],
            outputs=[TensorSpec(name="label", datatype="INT64", shape=[-1]),
                     TensorSpec(name="source", datatype="BYTES", shape=[-1]),
                     TensorSpec(name="fallback_reason", datatype="BYTES", shape=[-1]),
                     TensorSpec(name="action", datatype="BYTES", shape=[-1]),
                     TensorSpec(name="payload_bytes", datatype="INT64", shape=[-1])])
        self.agent = agent
        self.classes = list(agent.setup.manifest.classes)

    def warm_up(self) -> float:
        started = time.perf_counter()
        x = np.zeros((1, *self.agent.plan.raw_shape), np.float32)
        for p in range(1, self.agent.plan.n_stages + 1):
            self.agent.runner.head(p, x)
        return 1000.0 * (time.perf_counter() - started)

    async def predict(self, tensors: dict[str, np.ndarray], *, timeout_s: float,
                      parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        x = single_input(self.name, tensors)
        answer = await self.agent.infer(x, strategy=parameters.get("strategy", "sac"),
                                        deadline_ms=parameters.get("deadline_ms", self.agent.setup.spec.deadline_ms),
                                        action=parameters.get("action"))
        n = len(answer.labels)
        return {"label": answer.labels, "source": np.full(n, answer.source.value, dtype=object),
                "fallback_reason": np.full(n, answer.reason, dtype=object),
                "action": np.full(n, answer.action, dtype=object),
                "payload_bytes": np.full(n, answer.payload_bytes, dtype=np.int64)}
