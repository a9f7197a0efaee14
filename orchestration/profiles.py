"""What each model variant costs and is worth, per tier: the measured profiles the orchestrator uses.

A bundle built by `edgecloud variants` lists the variant family in its manifest (role `variant`,
plus the teacher). Each entry's `metrics` hold its measured test accuracy and `latency_ms`, a
per-tier latency profile of one sample (and of a batch of `BATCH` samples, for the servers'
dynamic batching). The artifact `variant_profile` (JSON) says how the tiers were emulated; the
artifact `variant_correct` (npz) holds each variant's per-sample correctness on the test split, so
that the simulator draws real right-or-wrong answers rather than coin flips at the mean accuracy.

Per-tier latency is measured once on the host with one onnxruntime thread and divided by the tier's
share of a core (`TierSpec.cpu_share`): the live run gives each tier exactly that share (an end
device holds its compute thread 1 / share as long as a pass took, `--device-slowdown`; the edge
server and the cloud each get a whole pinned core), so profile and live run describe the same machines.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.bundle import BundleError, Manifest, load_manifest
from shared.names import ModelRole, Tier

PROFILE_ARTIFACT = "variant_profile"
"""Name in Manifest.artifacts of the JSON that says how the tiers were emulated."""
CORRECT_ARTIFACT = "variant_correct"
"""Name in Manifest.artifacts of the npz of per-sample correctness, one bool array per variant."""
BATCH = 8
"""Batch size of the second latency point; the servers' batch cost is interpolated between 1 and BATCH."""
GAP_S = 0.005
"""Idle time before each timed pass (a request arriving on its own finds cold caches)."""


class ProfileError(ValueError):
    """A bundle has no usable variant profile; the message names the model or file."""


@dataclass(frozen=True)
class TierSpec:
    """How one tier's hardware is emulated on the host."""

    cpu_share: float
    """fraction of one host core the tier computes with (an end device's CPU quota; 1.0 = a pinned core)."""
    description: str = ""
    """what the tier stands for, for people reading the profile."""

    def __post_init__(self) -> None:
        if not 0.0 < self.cpu_share <= 16.0:
            raise ValueError(f"cpu_share must be in (0, 16], got {self.cpu_share}")


DEFAULT_TIERS: dict[Tier, TierSpec] = {
    # A Raspberry Pi 4 core ran our digits student about 4x slower than a laptop core (README); a
    # quarter of a host core is the same order. The edge server and the cloud get a whole core each.
    Tier.END: TierSpec(cpu_share=0.25, description="end device: a quarter of one host core"),
    Tier.EDGE: TierSpec(cpu_share=1.0, description="edge server: one pinned host core, shared by all users"),
    Tier.CLOUD: TierSpec(cpu_share=1.0, description="cloud: one pinned host core behind a WAN-like link"),
}


@dataclass(frozen=True)
class VariantProfile:
    """One (name, accuracy, latency per tier) point of the variant family."""

    name: str
    accuracy: float
    """test-split accuracy in [0, 1], measured through onnxruntime exactly as served."""
    bytes: int
    """ONNX file size: what an end device must hold to run it."""
    latency_ms: dict[Tier, float]
    """compute time of one sample on each tier."""
    batch_ms: dict[Tier, float]
    """compute time of a batch of BATCH samples on each tier."""
    correct: np.ndarray | None = None
    """(N,) bool: whether the variant is right on each test sample (None if not stored)."""

    def compute_ms(self, tier: Tier, batch: int = 1) -> float:
        """Compute time of a batch of `batch` samples on `tier`: linear between 1 and BATCH samples."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        one, many = self.latency_ms[tier], self.batch_ms[tier]
        per_extra = max(0.0, (many - one) / (BATCH - 1))
        return one + per_extra * (batch - 1)


@dataclass(frozen=True)
class Profiles:
    """The variant family of a bundle, by name, and how its tiers were emulated."""

    variants: dict[str, VariantProfile]
    tiers: dict[Tier, TierSpec] = field(default_factory=lambda: dict(DEFAULT_TIERS))
    teacher: str = "teacher"
    request_bytes: int = 64
    """bytes of one sample on the wire (raw UINT8 pixels plus the OIP header)."""

    def __post_init__(self) -> None:
        if not self.variants:
            raise ProfileError("a profile needs at least one variant")
        if self.teacher not in self.variants:
            raise ProfileError(f"teacher {self.teacher!r} is not among the variants {sorted(self.variants)}")

    def with_tier_share(self, tier: Tier, cpu_share: float) -> Profiles:
        """The same family on a tier with another share of a core (compute scales as 1 / share).

        For sweeps over device speed: the profile was measured once on the host, and the live run
        enforces whatever share the profile says (`--device-slowdown` per device).
        """
        spec = TierSpec(cpu_share=cpu_share, description=f"{tier.value}: {cpu_share:g} of one host core")
        factor = self.tiers[tier].cpu_share / cpu_share
        variants = {
            name: dataclasses.replace(
                v, latency_ms={**v.latency_ms, tier: v.latency_ms[tier] * factor},
                batch_ms={**v.batch_ms, tier: v.batch_ms[tier] * factor})
            for name, v in self.variants.items()}
        return dataclasses.replace(self, variants=variants, tiers={**self.tiers, tier: spec})

    @property
    def names(self) -> list[str]:
        """Variant names, smallest first."""
        return sorted(self.variants, key=lambda n: (self.variants[n].bytes, n))

    def meeting(self, accuracy_req: float) -> list[str]:
        """Variants whose accuracy is at least `accuracy_req` (the teacher's if none is)."""
        names = [n for n in self.names if self.variants[n].accuracy >= accuracy_req]
        return names or [max(self.names, key=lambda n: self.variants[n].accuracy)]


def measure_latency_ms(onnx_path: Path, sample_shape: Sequence[int], *, batch_sizes: Sequence[int] = (1, BATCH),
                       rounds: int = 30, threads: int = 1, gap_s: float = GAP_S) -> dict[int, float]:
    """Median wall time (ms) of one onnxruntime pass per batch size, on `threads` threads.

    Each pass follows `gap_s` of idling, as a request that arrives on its own does: back to back, a
    small model's pass ran about 3x faster on our host than after a few milliseconds idle (warm
    caches), and requests to an orchestrated tier arrive one by one. The median of `rounds` passes
    after two warm-up passes: the host is shared, and the median ignores a neighbour's bursts.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
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


def reprofile(bundle_dir: Path, *, rounds: int = 30, tiers: dict[Tier, TierSpec] | None = None) -> Manifest:
    """Measure every variant's (and the teacher's) latency again and rewrite their manifest metrics."""
    from shared.bundle import write_manifest

    bundle_dir = Path(bundle_dir)
    manifest = load_manifest(bundle_dir, verify=True)
    tiers = tiers if tiers is not None else DEFAULT_TIERS
    models = dict(manifest.models)
    for name in profiles_from_manifest(bundle_dir, manifest).variants:
        entry = models[name]
        assert entry.file is not None  # profiles_from_manifest lists only measured ONNX models
        host = measure_latency_ms(bundle_dir / entry.file, manifest.input.shape, rounds=rounds)
        metrics = {**entry.metrics, "host_ms": {str(k): v for k, v in host.items()},
                   "latency_ms": per_tier(host[1], tiers), "batch_ms": per_tier(host[BATCH], tiers)}
        models[name] = entry.model_copy(update={"metrics": metrics})
    write_manifest(bundle_dir, manifest.model_copy(update={"models": models}))
    return load_manifest(bundle_dir)


def per_tier(host_ms: float, tiers: dict[Tier, TierSpec]) -> dict[str, float]:
    """Host latency scaled to each tier's share of a core (a quota of s cores runs 1/s as fast)."""
    return {tier.value: host_ms / spec.cpu_share for tier, spec in tiers.items()}


def _tiers_from(raw: dict) -> dict[Tier, TierSpec]:
    try:
        return {Tier(k): TierSpec(**v) for k, v in raw.items()}
    except (ValueError, TypeError) as err:
        raise ProfileError(f"bad tiers in the variant profile: {err}") from None


def profiles_from_manifest(bundle_dir: Path, manifest: Manifest | None = None) -> Profiles:
    """The variant family of a bundle (teacher + role `variant` with a latency profile)."""
    bundle_dir = Path(bundle_dir)
    manifest = manifest if manifest is not None else load_manifest(bundle_dir, verify=True)
    if PROFILE_ARTIFACT not in manifest.artifacts:
        raise ProfileError(f"bundle {bundle_dir} has no {PROFILE_ARTIFACT!r} artifact; run "
                           f"`edgecloud variants --bundle {bundle_dir}` first")
    raw = json.loads((bundle_dir / manifest.artifacts[PROFILE_ARTIFACT]).read_text())
    tiers = _tiers_from(raw.get("tiers", {}))
    correct: dict[str, np.ndarray] = {}
    if CORRECT_ARTIFACT in manifest.artifacts:
        with np.load(bundle_dir / manifest.artifacts[CORRECT_ARTIFACT], allow_pickle=False) as data:
            correct = {k: np.asarray(data[k], dtype=bool) for k in data.files}
    variants: dict[str, VariantProfile] = {}
    for name, entry in manifest.models.items():
        if entry.role not in (ModelRole.VARIANT, ModelRole.TEACHER):
            continue
        m = entry.metrics
        if "latency_ms" not in m:
            if entry.role is ModelRole.VARIANT:
                raise ProfileError(f"variant {name!r} has no latency_ms in its metrics")
            continue
        try:
            variants[name] = VariantProfile(
                name=name, accuracy=float(m["accuracy"]), bytes=int(m.get("onnx_bytes", m.get("bytes", 0))),
                latency_ms={Tier(k): float(v) for k, v in m["latency_ms"].items()},
                batch_ms={Tier(k): float(v) for k, v in m["batch_ms"].items()},
                correct=correct.get(name))
        except (KeyError, ValueError, TypeError) as err:
            raise ProfileError(f"model {name!r}: bad metrics for a variant profile ({err!r})") from None
    if manifest.teacher not in variants:
        raise BundleError(f"bundle {bundle_dir}: teacher {manifest.teacher!r} has no latency profile; "
                          "rerun `edgecloud variants`")
    return Profiles(variants=variants, tiers=tiers, teacher=manifest.teacher,
                    request_bytes=int(raw.get("request_bytes", 64)))
