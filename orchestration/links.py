"""The links between a device and the servers, and what the device's radio tells it about its own (numpy only).

- **Access link** (device <-> edge of the network): half of `access_rtt_ms` each way, plus the bytes
  at the rate of the device's own trace at that moment (`shared.traces.Trace.transfer_s`, which
  integrates the rate, so a transfer sent into a stall waits for it to end; the trace reader floors
  0 Mbit/s samples, so nothing divides by zero). Requests go **up** the trace: the cellular traces
  are uplink captures. Answers come **down** either the same trace (`downlink_mbit_s` None, the
  default: we have no downlink capture of these drives, and a stall in a moving car is usually the
  radio itself, both ways: a handover or a coverage hole) or a fixed-rate downlink.
- **WAN** (edge of the network <-> cloud): `wan_rtt_ms` more round trip (default 60 ms: a cloud
  region a few thousand kilometres away) and `wan_mbit_s` each way.
- **Radio report**: the mean rate of the device's uplink over the last `state.LINK_WINDOW_S` and
  how long it has been stalled, as of now: what a phone's modem and TCP stack know about their
  own link, and what the learner's state bins (orchestration/state.py).

Every leg's time depends on when it starts, never on anything later: the down leg is timed when the
server finishes (the fix for a bound that timed it at the request's arrival, orchestration/bound.py).
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np
from pydantic import ConfigDict, model_validator

from orchestration.scenario import Scenario
from orchestration.state import LINK_WINDOW_S
from shared.names import Tier
from shared.run_config import ConfigModel
from shared.traces import STALL_MBIT_S, Trace


class NetworkConfig(ConfigModel):
    """The links between the tiers (the access link's rate comes from each device's trace)."""

    model_config = ConfigDict(frozen=True)

    access_rtt_ms: float = 20.0
    """device <-> edge server round trip on the access link, without queueing."""
    wan_rtt_ms: float = 60.0
    """extra round trip from the edge of the access network to the cloud (a region a few thousand km away)."""
    wan_mbit_s: float = 100.0
    """WAN rate to the cloud (each way)."""
    response_bytes: int = 300
    """bytes of one answer on the wire (label + OIP JSON header)."""
    downlink_mbit_s: float | None = None
    """rate of the answer's way down the access link (None: the device's own trace, as its requests)."""
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

    @model_validator(mode="after")
    def _check(self) -> Self:
        if min(self.access_rtt_ms, self.wan_rtt_ms, self.end_overhead_ms, self.edge_overhead_ms,
               self.cloud_overhead_ms, self.edge_connect_ms, self.cloud_connect_ms) < 0 \
                or self.wan_mbit_s <= 0 or self.response_bytes < 0 \
                or (self.downlink_mbit_s is not None and self.downlink_mbit_s <= 0):
            raise ValueError(f"bad network config {self!r}")
        return self

    def overhead_ms(self, tier: Tier) -> float:
        return {Tier.END: self.end_overhead_ms, Tier.EDGE: self.edge_overhead_ms,
                Tier.CLOUD: self.cloud_overhead_ms}[tier]

    def connect_ms(self, tier: Tier) -> float:
        return {Tier.END: 0.0, Tier.EDGE: self.edge_connect_ms, Tier.CLOUD: self.cloud_connect_ms}[tier]


class Radio:
    """What a device's modem reports about its own uplink, read off the trace its link replays: the mean
    rate over a recent window and how long nothing has got through. The simulator's links and a live
    device replaying the same trace (`EdgeSettings.radio_trace`) report the same figures.

    Times are trace times (seconds from the trace's start; past its end it wraps, as the replay does).
    """

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        # Cumulative bits at each sample's start, for the window means.
        ends = np.append(trace.times_s[1:], trace.duration_s)
        self._bits = np.concatenate([[0.0], np.cumsum(trace.mbit_s * 1e6 * (ends - trace.times_s))])

    def _bits_until(self, x: float) -> float:
        """Bits the trace carried from its time 0 to trace time x (x may span several passes)."""
        duration = self.trace.duration_s
        passes = math.floor(x / duration)
        local = x - passes * duration
        i = max(int(np.searchsorted(self.trace.times_s, local, side="right")) - 1, 0)
        return passes * self._bits[-1] + self._bits[i] + self.trace.mbit_s[i] * 1e6 * (local - self.trace.times_s[i])

    def recent_mbit_s(self, x: float, window_s: float = LINK_WINDOW_S) -> float:
        """Mean rate over trace times [x - window, x]."""
        return (self._bits_until(x) - self._bits_until(x - window_s)) / window_s / 1e6

    def stalled_ms(self, x: float) -> float:
        """How long nothing has got through up to trace time x (its samples at or below STALL_MBIT_S: the
        floored zeros), 0 when it flows."""
        times, rates = self.trace.times_s, self.trace.mbit_s
        duration = self.trace.duration_s
        passes = math.floor(x / duration)
        i = max(int(np.searchsorted(times, x - passes * duration, side="right")) - 1, 0)
        if rates[i] > STALL_MBIT_S:
            return 0.0
        start = passes * duration + times[i]
        for _ in range(len(times) - 1):  # walk back over the stall's earlier samples (wrapping)
            j = i - 1 if i > 0 else len(times) - 1
            if rates[j] > STALL_MBIT_S:
                break
            start -= (times[i] - times[j]) if i > 0 else (duration - times[j])
            i = j
        return (x - start) * 1e3


class UserLink:
    """One device's access link: its trace from its own offset, scaled by the scenario's phase."""

    def __init__(self, trace: Trace, offset_s: float, scenario: Scenario, network: NetworkConfig) -> None:
        self.trace = trace
        self.offset_s = offset_s
        self.scenario = scenario
        self.network = network
        self.radio = Radio(trace)

    def _scale(self, t: float) -> float:
        return self.scenario.phase_at(t).bandwidth_scale

    def _wan_ms(self, n_bytes: float) -> float:
        return self.network.wan_rtt_ms / 2 + n_bytes * 8 / (self.network.wan_mbit_s * 1e6) * 1000.0

    def up_ms(self, tier: Tier, n_bytes: float, t: float) -> float:
        """Device -> server, sent at t: the access link at the trace's rate (and the WAN for the cloud)."""
        # A scaled rate moves bytes/scale in the same time as the trace moves bytes.
        ms = self.network.access_rtt_ms / 2 + self.trace.transfer_s(n_bytes / self._scale(t), self.offset_s + t) * 1e3
        return ms + (self._wan_ms(n_bytes) if tier is Tier.CLOUD else 0.0)

    def down_ms(self, tier: Tier, n_bytes: float, t: float) -> float:
        """Server -> device, sent at t (when the server finished)."""
        scale = self._scale(t)
        if self.network.downlink_mbit_s is None:
            access = self.trace.transfer_s(n_bytes / scale, self.offset_s + t) * 1e3
        else:
            access = n_bytes * 8 / (self.network.downlink_mbit_s * scale * 1e6) * 1e3
        ms = self.network.access_rtt_ms / 2 + access
        return ms + (self._wan_ms(n_bytes) if tier is Tier.CLOUD else 0.0)

    # -- the radio's report -------------------------------------------------------------------------
    def recent_mbit_s(self, t: float, window_s: float = LINK_WINDOW_S) -> float:
        """Mean uplink rate over [t - window, t] (at the phase's scale in force at t)."""
        return self.radio.recent_mbit_s(self.offset_s + t, window_s) * self._scale(t)

    def stalled_ms(self, t: float) -> float:
        """How long nothing has got through the uplink up to t, 0 when it flows. A stall is the radio's,
        whatever the phase's rate scale."""
        return self.radio.stalled_ms(self.offset_s + t)
