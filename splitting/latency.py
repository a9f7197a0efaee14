"""What an action costs: device time, bytes on the wire, link time and server time (numpy only).

One request of one sample, for action (exit e, partition p, bits b):

    latency = device + up + RTT + server + down
    device  = load * (request + head_p + quantise_{p,b})   split;  load * (request + head_e)  device-only
              (request: the device's own serving overhead per request, HTTP + protocol + planner, profiled)
    up      = time for payload(p, b) + request overhead bytes to cross the link, starting after `device`
    server  = request + tail_p (split) or request + teacher (server-only);  down = the response's bytes back

An offload that has not answered when only `reserve` is left of the deadline is abandoned and the
device answers on its own (the live edge does exactly this, splitting/fallback.py): a split answers
from exit p, which its head already computed (reserve 0); server-only from exit 1 (reserve: head_1).
Such a request takes the deadline, and is answered by that device exit (`Cost.fallback`).

The same formula serves the environment (with the trace's real throughput over the transfer), the
planners that predict from an estimate (a constant Mbit/s: Neurosurgeon, Edgent) and the hindsight
oracle. Overheads are HTTP and OIP headers, counted because on a slow link they are most of a
small split's bytes; `LinkModel` holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.traces import Trace
from splitting.actions import Action, ActionSpace, Placement
from splitting.profile import REQUEST_SEGMENT, TEACHER_SEGMENT, Profile, quantize_segment
from splitting.segments import SplitPlan, head_name, tail_name


@dataclass(frozen=True)
class LinkModel:
    """The link between device and server, beyond its (changing) throughput."""

    rtt_ms: float = 40.0
    """round-trip propagation delay of the link"""
    request_overhead_bytes: int = 420
    """bytes a request carries besides its tensor payload: HTTP request line and headers, the OIP JSON
    header with the quantisation parameters, TCP/IP framing (measured from the live client's requests)"""
    response_bytes: int = 360
    """bytes of the answer: HTTP status and headers, the OIP JSON response with one label"""


@dataclass(frozen=True)
class Cost:
    latency_ms: float
    device_ms: float
    network_ms: float
    server_ms: float
    payload_bytes: int
    wire_bytes: int  # request + response bytes on the link (0 for device-only)
    fallback: int | None = None  # device-only action that answered instead, when the offload timed out


class CostModel:
    """Costs of the actions of `space` for one bundle's plan and profiles."""

    def __init__(self, *, plan: SplitPlan, space: ActionSpace, device: Profile, server: Profile,
                 link: LinkModel) -> None:
        if space.n_stages != plan.n_stages:
            raise ValueError(f"action space has {space.n_stages} stages, the bundle's split {plan.n_stages}")
        self.plan, self.space, self.device, self.server, self.link = plan, space, device, server, link
        s = plan.n_stages
        self._device_ms, self._server_ms, self._payload = [], [], []
        for a in space.actions:
            self._device_ms.append(self._device(a, s) if space.valid[space.index(a)] else 0.0)
            self._server_ms.append(self._server(a, s) if space.valid[space.index(a)] else 0.0)
            self._payload.append(plan.payload_bytes(a.partition, a.bits) if space.valid[space.index(a)] else 0)

    def _device(self, a: Action, s: int) -> float:
        # Every request also costs the device its serving overhead (HTTP, protocol, planner), when profiled.
        overhead = self.device.segments[REQUEST_SEGMENT].median_ms if REQUEST_SEGMENT in self.device.segments else 0.0
        kind = a.placement(s)
        if kind is Placement.DEVICE:
            return overhead + self.device.ms(head_name(a.exit))
        if kind is Placement.SERVER:
            return overhead
        return overhead + self.device.ms(head_name(a.partition)) + self.device.ms(quantize_segment(a.partition, a.bits))

    def _server(self, a: Action, s: int) -> float:
        kind = a.placement(s)
        if kind is Placement.DEVICE:
            return 0.0
        overhead = self.server.segments[REQUEST_SEGMENT].median_ms if REQUEST_SEGMENT in self.server.segments else 0.0
        return overhead + self.server.ms(TEACHER_SEGMENT if kind is Placement.SERVER else tail_name(a.partition))

    def offloads(self, index: int) -> bool:
        return self.space.actions[index].placement(self.plan.n_stages) is not Placement.DEVICE

    def payload_bytes(self, index: int) -> int:
        return self._payload[index]

    def request_bytes(self, index: int) -> int:
        return self._payload[index] + self.link.request_overhead_bytes if self.offloads(index) else 0

    def fallback_action(self, index: int) -> int:
        """The device-only action that answers when offloading `index` fails: exit p (split) or exit 1."""
        a = self.space.actions[index]
        s = self.plan.n_stages
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
             mbit_s: float | None = None, rtt_ms: float | None = None, deadline_ms: float | None = None) -> Cost:
        """Cost of action `index` starting at `start_s`: over `trace` (real) or at a constant `mbit_s`.

        With `deadline_ms`, an offload that would answer after the deadline less its reserve falls back.
        """
        device_ms = load * self._device_ms[index]
        payload = self._payload[index]
        if not self.offloads(index):
            return Cost(latency_ms=device_ms, device_ms=device_ms, network_ms=0.0, server_ms=0.0,
                        payload_bytes=0, wire_bytes=0)
        up_bytes = self.request_bytes(index)
        down_bytes = self.link.response_bytes
        rtt = self.link.rtt_ms if rtt_ms is None else rtt_ms
        server_ms = self._server_ms[index]
        if trace is not None:
            t_up = start_s + device_ms / 1000.0
            up_ms = 1000.0 * trace.transfer_s(up_bytes, t_up)
            t_down = t_up + (up_ms + rtt + server_ms) / 1000.0
            down_ms = 1000.0 * trace.transfer_s(down_bytes, t_down)
        elif mbit_s is not None and mbit_s > 0:
            up_ms = 8.0 * up_bytes / (mbit_s * 1000.0)
            down_ms = 8.0 * down_bytes / (mbit_s * 1000.0)
        else:
            raise ValueError("cost needs a trace or a positive mbit_s")
        network = up_ms + rtt + down_ms
        total = device_ms + network + server_ms
        if deadline_ms is not None and total > deadline_ms - self.reserve_ms(index, load=load):
            give_up = max(deadline_ms - self.reserve_ms(index, load=load), device_ms)
            return Cost(latency_ms=give_up + self.reserve_ms(index, load=load), device_ms=device_ms,
                        network_ms=give_up - device_ms, server_ms=0.0, payload_bytes=payload,
                        wire_bytes=up_bytes, fallback=self.fallback_action(index))
        return Cost(latency_ms=device_ms + network + server_ms, device_ms=device_ms, network_ms=network,
                    server_ms=server_ms, payload_bytes=payload, wire_bytes=up_bytes + down_bytes)
