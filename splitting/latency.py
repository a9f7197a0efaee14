"""What an action costs: device time, bytes on the wire, link time and server time (numpy only).

One request of one sample, for action (exit e, partition p, bits b):

    latency = device + up + RTT + server + down
    device  = load * (request + offload + head_p + quantise_{p,b})   split;  load * (request + head_e)  device-only;
              load * (request + offload)  server-only
              (request: the device's own serving overhead per request, HTTP + protocol + planner; offload: its
              HTTP client's work for one offload; both profiled, `edgecloud profile --request-overhead`)
    up      = time for payload(p, b) + request overhead bytes to cross the uplink, starting after `device`
              (server-only: raw pixels, or the image file as the device holds it, `Regime.server_payload`)
    server  = request + tail_p (split), request + teacher (server-only raw), request + decode + teacher
              (server-only JPEG: the server decodes the file first, `Profile.decode_ms`)
    down    = time for the response's bytes to cross the downlink

Each direction is its own serial link replaying its own trace (the uplink trace, and the downlink
trace or, without one, the same file; regime.py says why), as the testbed's delay proxy does: a
transfer starts when its bytes are ready *and* the link has finished the bytes before it, crosses at
the trace's rate of the moment, then waits the one-way delay (RTT / 2). `uplink_free_s` and
`downlink_free_s` carry that backlog from one request to the next (the environment keeps them).

An offload that has not answered when only `reserve` is left of the deadline is abandoned and the
device answers on its own (the live edge does exactly this, edge_agent/split.py): a split answers
from exit p, which its head already computed (reserve 0); server-only from exit 1 (reserve: head_1).
Such a request takes the deadline, and is answered by that device exit (`Cost.fallback`). Its bytes
were handed to the link already, so they still occupy it (and the server still answers): a stall
leaves a backlog the next requests wait behind.

A hedge (splitting/actions.py) uploads as server-only does and starts the device's whole network once
the request is sent (`local = device + load * head_S`; one core does both, so the client's work comes
first): it answers with the server if that answer arrives by the deadline and before the device's own,
else with the device's exit S (`Cost.fallback`). The upload is not cancelled when the device wins (a
cancelled HTTP request costs its connection, and the next offload a handshake): it finishes or times
out at the deadline in the background, and the device measures it then (`Cost.measured_at_ms`). A
hedge never falls back to an earlier exit than its own: the whole network's hedge answers with exit S,
`hedge:exit{e}` (splitting/actions.py) races the upload against the head up to exit e and answers with
it (`local = device + load * head_e`).

The same formula serves the environment (with the traces' real throughput over each transfer), the
planners that predict from an estimate (a constant Mbit/s on an idle link: Neurosurgeon, Edgent) and
the hindsight oracle. Overheads are HTTP and OIP headers, counted because on a slow link they are
most of a small split's bytes; `LinkModel` holds them, from the regime.
"""


from __future__ import annotations

import math
from dataclasses import dataclass

from shared.traces import Trace
from splitting.actions import Action, ActionSpace, Placement
from splitting.inputs import InputBytes
from splitting.profile import OFFLOAD_SEGMENT, REQUEST_SEGMENT, TEACHER_SEGMENT, Profile, quantize_segment
from splitting.regime import MNIST, Regime, ServerPayload
from splitting.segments import SplitPlan, head_name, tail_name


@dataclass(frozen=True)
class LinkModel:
    """The link between device and server, beyond its (changing) throughput (defaults: the MNIST regime's)."""

    rtt_ms: float = MNIST.rtt_ms
    """round-trip propagation delay of the link"""
    request_overhead_bytes: int = MNIST.request_overhead_bytes
    """bytes a request carries besides its tensor payload: HTTP request line and headers, the OIP JSON
    header with the quantisation parameters, TCP/IP framing"""
    response_bytes: int = MNIST.response_bytes
    """bytes of the answer: HTTP status and headers, the OIP JSON response with one label"""

    @classmethod
    def from_regime(cls, regime: Regime) -> LinkModel:
        return cls(rtt_ms=regime.rtt_ms, request_overhead_bytes=regime.request_overhead_bytes,
                   response_bytes=regime.response_bytes)


@dataclass(frozen=True)
class Cost:
    latency_ms: float
    device_ms: float
    network_ms: float
    server_ms: float
    payload_bytes: int
    wire_bytes: int  # request + response bytes on the link (0 for device-only)
    fallback: int | None = None  # device-only action that answered instead, when the offload timed out
    uplink_free_s: float | None = None    # trace time the uplink has sent this request (None: not on a trace)
    downlink_free_s: float | None = None  # trace time the downlink has sent its answer (None: not on a trace)
    transfer_done_ms: float | None = None  # when the device learns how its transfer went (None: latency_ms)
    transfer_completed: bool | None = None  # whether that transfer completed (None: when nothing fell back)

    @property
    def measured_at_ms(self) -> float:
        """When, after the request started, the device measures its transfer: at the answer, except for a
        hedge the device won, whose upload goes on and reports when it ends."""
        return self.latency_ms if self.transfer_done_ms is None else self.transfer_done_ms

    @property
    def completed(self) -> bool:
        """Whether the transfer completed (else it was abandoned at the deadline: an upper-bound sample)."""
        return self.fallback is None if self.transfer_completed is None else self.transfer_completed


class CostModel:
    """Costs of the actions of `space` for one bundle's plan and profiles.

    `server_payload` says what the server-only action uploads; with JPEG, `input_bytes` gives each
    test sample's file size (default: `InputBytes.default`, a documented ratio of the raw bytes).
    """

    def __init__(self, *, plan: SplitPlan, space: ActionSpace, device: Profile, server: Profile,
                 link: LinkModel, server_payload: ServerPayload = ServerPayload.RAW,
                 input_bytes: InputBytes | None = None) -> None:
        if space.n_stages != plan.n_stages:
            raise ValueError(f"action space has {space.n_stages} stages, the bundle's split {plan.n_stages}")
        self.plan, self.space, self.device, self.server, self.link = plan, space, device, server, link
        self.server_payload = ServerPayload(server_payload)
        self.input_bytes = input_bytes if input_bytes is not None else InputBytes.default(plan.raw_shape)
        # The actions that upload the image itself (server-only and the hedge): their payload is the file.
        self._file_indices = {space.server_only(), *space.hedge_indices()}
        s = plan.n_stages
        self._device_ms, self._server_ms, self._payload = [], [], []
        for a in space.actions:
            valid = space.valid[space.index(a)]
            self._device_ms.append(self._device(a, s) if valid else 0.0)
            self._server_ms.append(self._server(a, s) if valid else 0.0)
            self._payload.append(self._planned_payload(a) if valid else 0)

    def _planned_payload(self, a: Action) -> int:
        if a.partition == 0 and self.server_payload is ServerPayload.JPEG:
            return round(self.input_bytes.mean)  # a prediction: the mean file (cost() uses the sample's own)
        return self.plan.payload_bytes(a.partition, a.bits)

    @property
    def offload_client_ms(self) -> float:
        """The device's own work for one offload (its HTTP client sending it and reading the answer; the
        profile's `offload` segment, 0 if not profiled). The cost model counts it as device time, not
        link time, so a live device takes it out of a round trip before estimating throughput."""
        segments = self.device.segments
        return segments[OFFLOAD_SEGMENT].median_ms if OFFLOAD_SEGMENT in segments else 0.0

    def _device(self, a: Action, s: int) -> float:
        # Every request also costs the device its serving overhead (HTTP, protocol, planner), and every
        # offload its client's work (sending, reading the answer), each when profiled.
        segments = self.device.segments
        overhead = segments[REQUEST_SEGMENT].median_ms if REQUEST_SEGMENT in segments else 0.0
        kind = a.placement(s)
        if kind is Placement.DEVICE:
            return overhead + self.device.ms(head_name(a.exit))
        overhead += self.offload_client_ms
        if kind in (Placement.SERVER, Placement.HEDGE):
            return overhead
        return overhead + self.device.ms(head_name(a.partition)) + self.device.ms(quantize_segment(a.partition, a.bits))

    def _server(self, a: Action, s: int) -> float:
        kind = a.placement(s)
        if kind is Placement.DEVICE:
            return 0.0
        overhead = self.server.segments[REQUEST_SEGMENT].median_ms if REQUEST_SEGMENT in self.server.segments else 0.0
        if kind in (Placement.SERVER, Placement.HEDGE):
            decode = self.server.decode_ms if self.server_payload is ServerPayload.JPEG else 0.0
            return overhead + decode + self.server.ms(TEACHER_SEGMENT)
        return overhead + self.server.ms(tail_name(a.partition))

    def offloads(self, index: int) -> bool:
        return self.space.actions[index].placement(self.plan.n_stages) is not Placement.DEVICE

    def payload_bytes(self, index: int, sample: int | None = None) -> int:
        """Tensor (or file) bytes action `index` uploads; for server-only JPEG, test sample `sample`'s file
        (None: the mean, as a planner predicts)."""
        if sample is not None and index in self._file_indices and self.server_payload is ServerPayload.JPEG:
            return round(self.input_bytes.at(sample))
        return self._payload[index]

    def request_bytes(self, index: int, sample: int | None = None) -> int:
        return self.payload_bytes(index, sample) + self.link.request_overhead_bytes if self.offloads(index) else 0

    def server_ms(self, index: int) -> float:
        """The server's profiled time for action `index` (0 for device-only)."""
        return self._server_ms[index]

    def fallback_action(self, index: int) -> int:
        """The device-only action that answers when offloading `index` fails: exit p (split) or exit 1; a
        hedge's own pass, its exit (S, or the early exit it races)."""
        a = self.space.actions[index]
        s = self.plan.n_stages
        if a.hedge:
            return self.space.device_only(a.exit)
        return self.space.device_only(a.partition if a.placement(s) is Placement.SPLIT else 1)

    def reserve_ms(self, index: int, *, load: float) -> float:
        """Device time the fallback of `index` still needs after the offload is abandoned."""
        a = self.space.actions[index]
        if a.placement(self.plan.n_stages) is Placement.SERVER:
            return load * self.device.ms(head_name(1))
        return 0.0

    def local_ms(self, segment: str, *, load: float) -> float:
        """Profiled device time of one segment (head_p, tail_p) at `load`."""
        return load * self.device.ms(segment)

    def cost(self, index: int, *, load: float, start_s: float = 0.0, trace: Trace | None = None,
             downlink: Trace | None = None, mbit_s: float | None = None, rtt_ms: float | None = None,
             deadline_ms: float | None = None, sample: int | None = None, uplink_free_s: float = -math.inf,
             downlink_free_s: float = -math.inf) -> Cost:
        """Cost of action `index` starting at `start_s`: over `trace` (real; the answer over `downlink`, else
        the same trace) or at a constant `mbit_s` on idle links (a prediction).

        `sample` is the test sample the request carries (its JPEG size, for server-only JPEG). On a trace,
        the upload waits until `uplink_free_s` and the answer until `downlink_free_s` (trace times the
        links finish earlier requests' bytes). With `deadline_ms`, an offload that would answer after the
        deadline less its reserve falls back.
        """
        device_ms = load * self._device_ms[index]
        if not self.offloads(index):
            return Cost(latency_ms=device_ms, device_ms=device_ms, network_ms=0.0, server_ms=0.0,
                        payload_bytes=0, wire_bytes=0)
        payload = self.payload_bytes(index, sample)
        up_bytes = payload + self.link.request_overhead_bytes
        down_bytes = self.link.response_bytes
        rtt = self.link.rtt_ms if rtt_ms is None else rtt_ms
        server_ms = self._server_ms[index]
        up_free = down_free = None
        if trace is not None:
            ready_s = start_s + device_ms / 1000.0
            up_start = max(ready_s, uplink_free_s)
            up_s = trace.transfer_s(up_bytes, up_start)
            up_free = up_start + up_s
            # The request reaches the server half an RTT after it crossed the link; the answer leaves
            # after the server's compute and, like the request, first waits for its link to be free.
            sent_s = up_free + (0.5 * rtt + server_ms) / 1000.0
            down_start = max(sent_s, downlink_free_s)
            down_s = (downlink or trace).transfer_s(down_bytes, down_start)
            down_free = down_start + down_s
            network = 1000.0 * ((up_start - ready_s) + up_s + (down_start - sent_s) + down_s) + rtt
        elif mbit_s is not None and mbit_s > 0:
            network = 8.0 * up_bytes / (mbit_s * 1000.0) + rtt + 8.0 * down_bytes / (mbit_s * 1000.0)
        else:
            raise ValueError("cost needs a trace or a positive mbit_s")
        total = device_ms + network + server_ms
        action = self.space.actions[index]
        if action.hedge:
            local_ms = device_ms + load * self.device.ms(head_name(action.exit))
            in_time = deadline_ms is None or total <= deadline_ms
            if in_time and local_ms < total:
                # The device answers first; the upload is left to finish, so the device still measures it.
                return Cost(latency_ms=local_ms, device_ms=local_ms, network_ms=network, server_ms=server_ms,
                            payload_bytes=payload, wire_bytes=up_bytes + down_bytes,
                            fallback=self.fallback_action(index), uplink_free_s=up_free, downlink_free_s=down_free,
                            transfer_done_ms=total, transfer_completed=True)
            if not in_time:
                assert deadline_ms is not None
                return Cost(latency_ms=local_ms, device_ms=local_ms, network_ms=max(deadline_ms - device_ms, 0.0),
                            server_ms=0.0, payload_bytes=payload, wire_bytes=up_bytes,
                            fallback=self.fallback_action(index), uplink_free_s=up_free, downlink_free_s=down_free,
                            transfer_done_ms=max(deadline_ms, device_ms), transfer_completed=False)
        reserve = self.reserve_ms(index, load=load)
        if deadline_ms is not None and total > deadline_ms - reserve:
            give_up = max(deadline_ms - reserve, device_ms)
            return Cost(latency_ms=give_up + reserve, device_ms=device_ms, network_ms=give_up - device_ms,
                        server_ms=0.0, payload_bytes=payload, wire_bytes=up_bytes,
                        fallback=self.fallback_action(index), uplink_free_s=up_free, downlink_free_s=down_free)
        return Cost(latency_ms=total, device_ms=device_ms, network_ms=network, server_ms=server_ms,
                    payload_bytes=payload, wire_bytes=up_bytes + down_bytes, uplink_free_s=up_free,
                    downlink_free_s=down_free)
