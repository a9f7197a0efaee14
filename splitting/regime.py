"""The regime a split planner is trained and judged for, in one typed place (numpy-free, no torch).

Everything that differs between "MNIST over Pensieve downlink traces" and "CIFAR-10 on a Pi over a
cellular uplink with stalls" and is not the network itself lives here: how often requests come, their
deadline, the link's base RTT and per-request overheads, the bandwidth a device assumes before it has
measured anything, which trace folders replay the uplink and the downlink, and what server-only
uploads. `edgecloud split train` records the regime in the bundle (artifact `split_planner`,
splitting/setup.py); `split eval`, the environment and bench/split_headroom.py read it from there,
and a command-line flag overrides one field (`Regime.override`, `add_regime_arguments`).

`MNIST` is the regime the first planners were built for; its numbers stay the defaults only where a
bundle records no regime of its own:
- 420 / 360 bytes: HTTP + OIP overhead of a split request and of its answer, measured from the live
  client's requests on MNIST (splitting/latency.py);
- 0.25 s between requests (a camera at 4 frames/s), a 100 ms deadline and a 40 ms RTT: chosen;
- 1 Mbit/s: the throughput a device assumes before its first transfer (`prior_mbit_s`; a trained
  bundle records its training uplink traces' mean instead).

Downlink: the cellular traces (../shared/data/traces/cellular-up*) record only the uplink. With no
downlink folder, each uplink trace file also carries the answers, modelled as a second serial link of
its own (the answer never waits behind a request), so a stall hits both directions, as it does when a
car drives into a dead zone; the answer is ~360 bytes, so the downlink's rate matters only in stalls.
"""

from __future__ import annotations

import argparse
from enum import StrEnum
from typing import Any, Self

from pydantic import ConfigDict, field_validator, model_validator

from shared.run_config import ConfigModel


class ServerPayload(StrEnum):
    """What a server-only request uploads."""

    JPEG = "jpeg"  # the image as the device holds it: the dataset's own encoded file; the server decodes it
    RAW = "raw"    # raw pixels (C*H*W bytes), what the first (MNIST) planners sent


DEFAULT_PRIOR_MBIT_S = 1.0
"""MNIST's bandwidth prior: used where a regime records none (`Regime.bandwidth_prior`)."""


class Regime(ConfigModel):
    """Request stream, deadline, link and payload conditions a planner is trained and evaluated for."""

    model_config = ConfigDict(frozen=True)

    period_s: float = 0.25
    """time between requests (MNIST: a camera at 4 frames/s)"""
    deadline_ms: float = 100.0
    """latency budget of a request, the evaluation deadline (training draws around it)"""
    rtt_ms: float = 40.0
    """base round-trip propagation delay of the link"""
    request_overhead_bytes: int = 420
    """bytes a request carries besides its payload: HTTP request line and headers, the OIP JSON header,
    TCP/IP framing (MNIST: measured from the live client's requests)"""
    response_bytes: int = 360
    """bytes of the answer: HTTP status and headers, the OIP JSON response with one label (MNIST: measured)"""
    prior_mbit_s: float | None = None
    """throughput a device assumes before it has measured any (None: the training uplink traces' mean
    once trained, else 1 Mbit/s)"""
    uplink_traces: tuple[str, ...] = ()
    """trace folders the planners were trained on, device-to-server direction"""
    downlink_traces: tuple[str, ...] = ()
    """trace folders of the server-to-device direction (empty: each uplink trace file carries both)"""
    server_payload: ServerPayload = ServerPayload.RAW
    """what server-only uploads: `jpeg` (the dataset's own files; needs a bundle with split_input_bytes
    for their sizes, else a documented default ratio) or `raw` pixels"""
    hedge: bool = False
    """the planners may also hedge: upload as server-only and run the whole network on the device at the
    same time, the first answer winning (splitting/actions.py); it adds one action, so planners trained
    with and without it are not interchangeable"""
    hedge_exits: tuple[int, ...] = ()
    """early exits the device may also race an upload against (`hedge:exit{e}`, splitting/actions.py):
    one more action each; needs `hedge`"""

    @field_validator("uplink_traces", "downlink_traces", mode="before")
    @classmethod
    def _folders(cls, value: Any) -> Any:
        # Folders given as paths (a command line's) are recorded as the strings they were given as.
        return tuple(str(f) for f in value) if isinstance(value, list | tuple) else value

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name in ("period_s", "deadline_ms"):
            if not getattr(self, name) > 0:
                raise ValueError(f"regime {name} must be > 0, got {getattr(self, name)!r}")
        for name in ("rtt_ms", "request_overhead_bytes", "response_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"regime {name} must be >= 0, got {getattr(self, name)!r}")
        if self.hedge_exits and not self.hedge:
            raise ValueError(f"regime hedge_exits {list(self.hedge_exits)} needs hedge (the whole network's "
                             "hedge comes with them)")
        if any(e < 1 for e in self.hedge_exits) or len(set(self.hedge_exits)) != len(self.hedge_exits):
            raise ValueError(f"regime hedge_exits must be distinct exits >= 1, got {list(self.hedge_exits)}")
        if self.prior_mbit_s is not None and not self.prior_mbit_s > 0:
            raise ValueError(f"regime prior_mbit_s must be > 0, got {self.prior_mbit_s!r}")
        return self

    @property
    def bandwidth_prior(self) -> float:
        """The prior in force: the recorded one, else MNIST's 1 Mbit/s."""
        return DEFAULT_PRIOR_MBIT_S if self.prior_mbit_s is None else self.prior_mbit_s

    def override(self, **values: Any) -> Regime:
        """A copy with every field given a value other than None replaced (command-line flags over the bundle)."""
        known = set(type(self).model_fields)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"regime has no field {unknown[0]!r}; it has {sorted(known)}")
        changes = {k: v for k, v in values.items() if v is not None}
        return type(self).model_validate({**self.model_dump(), **changes}) if changes else self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Regime:
        return cls.model_validate(raw)


MNIST = Regime()
"""The regime of the first (MNIST) planners; every default above is its value."""


# Command-line flags, one per field, declared here so that every command spells them the same way.
_FLAGS: dict[str, tuple[type, str]] = {
    "period_s": (float, "time between requests"),
    "deadline_ms": (float, "deadline of every request"),
    "rtt_ms": (float, "base RTT of the modelled link"),
    "request_overhead_bytes": (int, "HTTP/OIP bytes a request carries besides its payload"),
    "response_bytes": (int, "bytes of an answer"),
    "prior_mbit_s": (float, "throughput a device assumes before it has measured any"),
}


class _HedgeFlag(argparse.BooleanOptionalAction):
    """--hedge / --no-hedge; --no-hedge also drops the early-exit hedges unless --hedge-exits is given."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        if namespace.hedge is False and getattr(namespace, "hedge_exits", None) is None:
            namespace.hedge_exits = []


class _HedgeExitsFlag(argparse.Action):
    """--hedge-exits E ...; early-exit hedges come with the whole network's, so it implies --hedge."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, list(values))
        if values and getattr(namespace, "hedge", None) is None:
            namespace.hedge = True


def add_regime_arguments(parser: argparse.ArgumentParser, *, exclude: tuple[str, ...] = ()) -> None:
    """--period-s, --deadline-ms, --rtt-ms, --request-overhead-bytes, --response-bytes, --prior-mbit-s,
    --server-payload and --downlink-traces; each defaults to None: the bundle's regime, else MNIST's."""
    for name, (kind, text) in _FLAGS.items():
        if name in exclude:
            continue
        mnist = DEFAULT_PRIOR_MBIT_S if name == "prior_mbit_s" else getattr(MNIST, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None,
                            help=f"{text} (default: the bundle's regime; MNIST's {mnist:g} without one)")
    if "server_payload" not in exclude:
        parser.add_argument("--server-payload", choices=[p.value for p in ServerPayload], default=None,
                            help="what server-only uploads: jpeg (the dataset's files) or raw pixels "
                                 "(default: the bundle's regime; raw without one)")
    if "hedge" not in exclude:
        parser.add_argument("--hedge", action=_HedgeFlag, default=None,
                            help="add the hedge action: upload as server-only and run the whole network on the "
                                 "device at once, first answer wins (default: the bundle's regime; off without one)")
        parser.add_argument("--hedge-exits", action=_HedgeExitsFlag, type=int, nargs="*", default=None, metavar="E",
                            help="also race the upload against the device's early exit E (one action each, "
                                 "hedge:exitE; implies --hedge; none given: no early-exit hedges; default: the "
                                 "bundle's regime)")
    if "downlink_traces" not in exclude:
        parser.add_argument("--downlink-traces", nargs="+", default=None, metavar="FOLDER",
                            help="trace folders of the server-to-device direction (default: each uplink trace "
                                 "file carries both directions, as two separate serial links)")


def regime_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The regime fields a parsed command line sets (None where a flag was not given)."""
    values: dict[str, Any] = {name: getattr(args, name, None) for name in _FLAGS}
    values["server_payload"] = getattr(args, "server_payload", None)
    values["hedge"] = getattr(args, "hedge", None)
    exits = getattr(args, "hedge_exits", None)
    values["hedge_exits"] = None if exits is None else tuple(exits)
    downlink = getattr(args, "downlink_traces", None)
    values["downlink_traces"] = tuple(str(f) for f in downlink) if downlink else None
    return values
