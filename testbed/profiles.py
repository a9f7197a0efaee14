"""Named links the testbed emulates: bandwidth (shaped with tc) and round-trip time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinkProfile:
    """One emulated edge-to-cloud link; symmetric (the same rate each way)."""

    name: str
    """what the profile is called on the command line."""
    rate_mbit: float
    """link rate in Mbit/s (10^6 bit/s), each direction, as tc's tbf counts it (Ethernet frames)."""
    rtt_ms: float
    """round-trip time added by the link, in ms; each direction gets half."""

    def __post_init__(self) -> None:
        if self.rate_mbit <= 0 or self.rtt_ms < 0:
            raise ValueError(f"profile {self.name!r}: rate must be > 0 and rtt >= 0, got {self}")

    @property
    def rate_bit_s(self) -> float:
        return self.rate_mbit * 1e6

    @property
    def one_way_delay_ms(self) -> float:
        return self.rtt_ms / 2


PROFILES: dict[str, LinkProfile] = {p.name: p for p in (
    LinkProfile("lan", rate_mbit=1000.0, rtt_ms=1.0),
    LinkProfile("wifi", rate_mbit=20.0, rtt_ms=20.0),
    LinkProfile("lte", rate_mbit=10.0, rtt_ms=60.0),
    LinkProfile("3g", rate_mbit=2.0, rtt_ms=150.0),
)}


def get_profile(name: str) -> LinkProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown link profile {name!r}; choose from {', '.join(PROFILES)}") from None
