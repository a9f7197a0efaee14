"""The variant-profile format: what a variant family's producer writes and the orchestrator reads (numpy only).

One owner for both sides. The producer (`compression/variants.py`, offline, torch) measures every
variant and writes, per model, manifest metrics `accuracy`, `onnx_bytes`, `host_ms`, `latency_ms`
and `batch_ms` (per tier, `per_tier`), plus two artifacts: `PROFILE_ARTIFACT` (a JSON document,
`profile_document`) and `CORRECT_ARTIFACT` (per-sample correctness on the test split). The reader
(`orchestration.profiles`, online, torch-free) reads them back. Neither imports the other.

The profile document's fields (all optional for a reader; defaults in brackets):

- `tiers`: per tier (`end`, `edge`, `cloud`) a `TierSpec`: the share of one host core a pass gets
  (`cpu_share`), the passes it runs at once (`cores` [1]) and a `description` [DEFAULT_TIERS].
- `batch`: the second latency point's batch size [BATCH].
- `input_bytes`: bytes of one sample **as a device sends it** (an encoded image: for CIFAR-10 the
  dataset's own JPEG files, about 0.9 kB, rather than 3,072 raw pixels). The request on the wire is
  `input_bytes + REQUEST_OVERHEAD_BYTES`.
- `request_bytes`: the older field: the whole request on the wire (raw pixels + overhead). Read only
  when `input_bytes` is absent. With neither, a request is the raw pixels + overhead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.names import Tier
from shared.onnx_session import open_session

PROFILE_ARTIFACT = "variant_profile"
"""Name in Manifest.artifacts of the JSON that says how the tiers were emulated (`profile_document`)."""
CORRECT_ARTIFACT = "variant_correct"
"""Name in Manifest.artifacts of the npz of per-sample correctness, one bool array per variant."""
BATCH = 8
"""Batch size of the second latency point; the servers' batch cost is interpolated between 1 and BATCH."""
GAP_S = 0.005
"""Idle time before each timed pass (a request arriving on its own finds cold caches)."""
REQUEST_OVERHEAD_BYTES = 200
"""OIP JSON header + HTTP headers of one binary infer request, measured on the edge's client (~180 B)."""
INPUT_BYTES_FIELD = "input_bytes"
"""Profile field: bytes of one sample as a device sends it (encoded), without the request's overhead."""
REQUEST_BYTES_FIELD = "request_bytes"
"""Profile field (older): bytes of one whole request on the wire."""


class ProfileError(ValueError):
    """A bundle has no usable variant profile; the message names the model, file or field."""


@dataclass(frozen=True)
class TierSpec:
    """How one tier's hardware is emulated on the host."""

    cpu_share: float
    """speed of one pass as a share of one host core: 0.25 = 4x slower (an end device), 2.0 = twice as
    fast (a faster cloud core). A pass on the tier takes host time / cpu_share."""
    description: str = ""
    """what the tier stands for, for people reading the profile."""
    cores: int = 1
    """passes the tier runs at once (a server's cores or workers, each taking its own batch)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.cpu_share <= 16.0:
            raise ValueError(f"cpu_share must be in (0, 16], got {self.cpu_share}")
        if not 1 <= self.cores <= 256:
            raise ValueError(f"cores must be in [1, 256], got {self.cores}")


DEFAULT_TIERS: dict[Tier, TierSpec] = {
    # What a build measures against: a Raspberry Pi 4 core ran our digits student about 4x slower
    # than a laptop core (README), so the device gets a quarter of a host core; the edge server and
    # the cloud one core each. The orchestrator's experiments recalibrate the device and the cloud
    # (orchestration/hardware.py); these are the build's own record of what `latency_ms` assumed.
    Tier.END: TierSpec(cpu_share=0.25, description="end device: a quarter of one host core"),
    Tier.EDGE: TierSpec(cpu_share=1.0, description="edge server: one pinned host core, shared by all users"),
    Tier.CLOUD: TierSpec(cpu_share=1.0, description="cloud: one pinned host core behind a WAN-like link"),
}


def per_tier(host_ms: float, tiers: Mapping[Tier, TierSpec]) -> dict[str, float]:
    """Host latency scaled to each tier's speed (a tier with share s runs a pass in host_ms / s)."""
    return {tier.value: host_ms / spec.cpu_share for tier, spec in tiers.items()}


def tiers_to_json(tiers: Mapping[Tier, TierSpec]) -> dict[str, dict[str, Any]]:
    return {tier.value: asdict(spec) for tier, spec in tiers.items()}


def tiers_from_json(raw: Mapping[str, Any]) -> dict[Tier, TierSpec]:
    """The `tiers` field of a profile document; ProfileError names what is wrong."""
    try:
        return {Tier(k): TierSpec(**v) for k, v in raw.items()}
    except (ValueError, TypeError) as err:
        raise ProfileError(f"bad tiers in the variant profile: {err}") from None


def raw_input_bytes(input_shape: Sequence[int]) -> int:
    """Bytes of one raw UINT8 sample of this shape (what the live agent's OIP request carries)."""
    return int(math.prod(int(d) for d in input_shape))


def request_bytes(document: Mapping[str, Any], input_shape: Sequence[int]) -> int:
    """Bytes of one request on the wire, read from a profile document (module docstring: the rule)."""
    try:
        if document.get(INPUT_BYTES_FIELD) is not None:
            value = int(document[INPUT_BYTES_FIELD]) + REQUEST_OVERHEAD_BYTES
        elif document.get(REQUEST_BYTES_FIELD) is not None:
            value = int(document[REQUEST_BYTES_FIELD])
        else:
            value = raw_input_bytes(input_shape) + REQUEST_OVERHEAD_BYTES
    except (TypeError, ValueError) as err:
        raise ProfileError(f"bad {INPUT_BYTES_FIELD} / {REQUEST_BYTES_FIELD} in the variant profile: {err}") from None
    if value < 1:
        raise ProfileError(f"a request must be at least 1 byte on the wire, the variant profile says {value}")
    return value


def profile_document(*, tiers: Mapping[Tier, TierSpec], input_shape: Sequence[int], input_bytes: int | None = None,
                     **extra: Any) -> dict[str, Any]:
    """The profile JSON a producer writes: tiers, batch size, the request's bytes and anything in `extra`.

    `input_bytes`: one sample as a device sends it (e.g. the mean size of the dataset's JPEG files);
    None when the bundle does not know it, and a request is then the raw pixels + overhead.
    """
    if input_bytes is not None and input_bytes < 1:
        raise ProfileError(f"input_bytes must be >= 1, got {input_bytes}")
    doc: dict[str, Any] = {"tiers": tiers_to_json(tiers), "batch": BATCH}
    if input_bytes is not None:
        doc[INPUT_BYTES_FIELD] = int(input_bytes)
    doc[REQUEST_BYTES_FIELD] = request_bytes(doc, input_shape)
    return {**doc, **extra}


def measure_latency_ms(onnx_path: Path, sample_shape: Sequence[int], *, batch_sizes: Sequence[int] = (1, BATCH),
                       rounds: int = 30, threads: int = 1, gap_s: float = GAP_S) -> dict[int, float]:
    """Median wall time (ms) of one onnxruntime pass per batch size, on `threads` threads.

    Each pass follows `gap_s` of idling, as a request that arrives on its own does: back to back, a
    small model's pass ran about 3x faster on our host than after a few milliseconds idle (warm
    caches), and requests to an orchestrated tier arrive one by one. The median of `rounds` passes
    after two warm-up passes: the host is shared, and the median ignores a neighbour's bursts.
    """
    session = open_session(onnx_path, threads=threads)
    name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    out: dict[int, float] = {}
    for batch in batch_sizes:
        x = rng.standard_normal((batch, *sample_shape)).astype(np.float32)
        for _ in range(2):
            session.run(None, {name: x})
        times = []
        for _ in range(rounds):
            if gap_s > 0:
                time.sleep(gap_s)
            started = time.perf_counter()
            session.run(None, {name: x})
            times.append((time.perf_counter() - started) * 1000.0)
        out[batch] = float(np.median(times))
    return out
