"""What each tier's machine is: an emulated Raspberry Pi 4 per user, one edge core for all, a faster cloud.

The profile (orchestration.profiles) holds each variant's time on one host core. `apply` turns it
into the three tiers of the experiments (Shahhosseini et al.'s end, edge and cloud):

- **end device**: a Raspberry Pi 4, emulated as testbed/slowdown.py does live: a pass takes k times
  its host time, k = `calibrate(host_ms)` of a reference variant against the published Pi 4 time
  (`PI4_CIFAR10`: Zhang et al.'s 675 KB CIFAR-10 student, 17.4 ms an image). The reference is by
  default the full-precision variant nearest that student in size (a network "of the same kind and
  size", as the calibration asks); `device_reference` names another, `device_slowdown` sets k outright.
  One k for every variant assumes the Pi's speed relative to this host is the same for all of them
  (int8 included), which a profile measured on a real Pi would replace.
- **edge server**: `edge_cores` host cores (default one), shared by every user near it.
- **cloud**: `cloud_cores` workers, each `cloud_speed` times a host core. The default (4 workers at
  2x) stands for a small cloud instance of newer server cores than the edge box's: an assumption,
  not a measurement. To map it to a real server, profile the variants on it (`edgecloud variants
  --profile-only` there): `cloud_speed` = the edge host's time / the cloud's time of the same
  variant, `cloud_cores` = the processes (or GPU streams) its runtime computes with at once.

The WAN between the edge of the access network and the cloud is orchestration.links.NetworkConfig's.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import ConfigDict, model_validator

from orchestration.profiles import Profiles
from shared.names import Tier
from shared.run_config import ConfigModel
from testbed.slowdown import PI4_CIFAR10, PublishedTime, calibrate

REFERENCE_BYTES = 675_000
"""Size of the network behind PI4_CIFAR10 ("the 675 KB ... student"): the default reference is the
variant nearest it."""


class TierHardware(ConfigModel):
    """The machines of the three tiers, relative to the host the profile was measured on."""

    model_config = ConfigDict(frozen=True)

    device_reference: str | None = None
    """variant whose host time calibrates the device's slowdown k against the published Pi 4 time
    (None: the full-precision variant nearest REFERENCE_BYTES in ONNX bytes)."""
    device_slowdown: float | None = None
    """k itself: the device runs every pass k times slower than a host core (None: calibrated)."""
    edge_cores: int = 1
    """cores of the one edge server every user shares."""
    cloud_cores: int = 4
    """passes the cloud runs at once (its cores or workers)."""
    cloud_speed: float = 2.0
    """one cloud pass is this many times faster than on a host core (the edge server's)."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.device_slowdown is not None and not 1.0 <= self.device_slowdown <= 10_000.0:
            raise ValueError(f"device_slowdown must be in [1, 10000], got {self.device_slowdown}")
        if not 1 <= self.edge_cores <= 256 or not 1 <= self.cloud_cores <= 256:
            raise ValueError(f"cores must be in [1, 256], got edge {self.edge_cores}, cloud {self.cloud_cores}")
        if not 0.0 < self.cloud_speed <= 16.0:
            raise ValueError(f"cloud_speed must be in (0, 16], got {self.cloud_speed}")
        return self


def reference_variant(profiles: Profiles, hw: TierHardware) -> str:
    """The variant whose host time calibrates the device (TierHardware.device_reference)."""
    if hw.device_reference is not None:
        if hw.device_reference not in profiles.variants:
            raise ValueError(f"device_reference {hw.device_reference!r} is not a variant; variants: {profiles.names}")
        return hw.device_reference
    full = [n for n in profiles.names if profiles.variants[n].bits >= 16] or profiles.names
    return min(full, key=lambda n: (abs(profiles.variants[n].bytes - REFERENCE_BYTES), n))


def apply(profiles: Profiles, hw: TierHardware, *, published: PublishedTime = PI4_CIFAR10
          ) -> tuple[Profiles, dict[str, Any]]:
    """The profile on these machines, and what was assumed (for report.json)."""
    reference = reference_variant(profiles, hw)
    host_ms = profiles.host_ms(reference)
    k = hw.device_slowdown if hw.device_slowdown is not None else calibrate(host_ms, published)
    out = profiles.with_tier_share(Tier.END, 1.0 / k, cores=1,
                                   description=f"end device: {published.device}, {k:.3g}x slower than a host core")
    out = out.with_tier_share(Tier.EDGE, 1.0, cores=hw.edge_cores,
                              description=f"edge server: {hw.edge_cores} host core(s) shared by every user")
    out = out.with_tier_share(Tier.CLOUD, hw.cloud_speed, cores=hw.cloud_cores,
                              description=f"cloud: {hw.cloud_cores} worker(s), each {hw.cloud_speed:g}x a host core")
    record = {
        "device": {"emulates": published.device, "published_model": published.model,
                   "published_ms_per_image": published.ms_per_image, "source": published.source,
                   "reference": reference, "reference_host_ms": host_ms, "slowdown": k,
                   "calibrated": hw.device_slowdown is None, "cpu_share": 1.0 / k},
        "edge": {"cores": hw.edge_cores, "speed": 1.0},
        "cloud": {"cores": hw.cloud_cores, "speed": hw.cloud_speed},
    }
    return out, record
