"""What each model variant costs and is worth, per tier: the measured profiles the orchestrator uses.

A bundle built by `edgecloud variants` lists the variant family in its manifest (role `variant`,
plus the teacher). Each entry's `metrics` hold its measured test accuracy and `latency_ms`, a
per-tier latency profile of one sample (and of a batch of `BATCH` samples, for the servers'
dynamic batching). The artifact `variant_profile` (JSON) says how the tiers were emulated; the
artifact `variant_correct` (npz) holds each variant's per-sample correctness on the test split, so
that the simulator draws real right-or-wrong answers rather than coin flips at the mean accuracy.

Per-tier latency is measured once on the host with one onnxruntime thread and divided by the tier's
speed (`TierSpec.cpu_share`): the live run gives each tier exactly that share (an end device holds
its compute thread 1 / share as long as a pass took, `--device-slowdown`; the edge server and the
cloud each get a whole pinned core), so profile and live run describe the same machines. The format
itself (field names, artifacts, `TierSpec`, how a request's bytes are found) belongs to
`shared.variant_profile`, which the offline producer imports too; this module only reads it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.bundle import BundleError, Manifest, load_manifest
from shared.names import ModelRole, Tier
from shared.variant_profile import (
    BATCH,
    CORRECT_ARTIFACT,
    DEFAULT_TIERS,
    GAP_S,
    PROFILE_ARTIFACT,
    REQUEST_OVERHEAD_BYTES,
    ProfileError,
    TierSpec,
    measure_latency_ms,
    per_tier,
    request_bytes,
    tiers_from_json,
)

__all__ = ["BATCH", "CORRECT_ARTIFACT", "DEFAULT_TIERS", "GAP_S", "PROFILE_ARTIFACT", "ProfileError", "Profiles",
           "TierSpec", "VariantProfile", "measure_latency_ms", "per_tier", "profiles_from_manifest", "reprofile"]


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
    bits: int = 32
    """weight precision (8 for the int8 copies), from the manifest's `parameters`."""

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
    request_bytes: int = 64 + REQUEST_OVERHEAD_BYTES
    """bytes of one request on the wire, as a device sends it (shared.variant_profile.request_bytes)."""

    def __post_init__(self) -> None:
        if not self.variants:
            raise ProfileError("a profile needs at least one variant")
        if self.teacher not in self.variants:
            raise ProfileError(f"teacher {self.teacher!r} is not among the variants {sorted(self.variants)}")

    def with_tier_share(self, tier: Tier, cpu_share: float, *, cores: int | None = None,
                        description: str | None = None) -> Profiles:
        """The same family on a tier of another speed (compute scales as 1 / share), and `cores` passes at once.

        For sweeps over device speed and for a faster cloud: the profile was measured once on the host,
        and the live run enforces whatever share the profile says (`--device-slowdown` per device).
        """
        old = self.tiers[tier]
        spec = TierSpec(cpu_share=cpu_share, cores=old.cores if cores is None else cores,
                        description=description or f"{tier.value}: {cpu_share:g} of one host core")
        factor = old.cpu_share / cpu_share
        variants = {
            name: dataclasses.replace(
                v, latency_ms={**v.latency_ms, tier: v.latency_ms[tier] * factor},
                batch_ms={**v.batch_ms, tier: v.batch_ms[tier] * factor})
            for name, v in self.variants.items()}
        return dataclasses.replace(self, variants=variants, tiers={**self.tiers, tier: spec})

    def host_ms(self, name: str) -> float:
        """One sample's compute time of variant `name` on one host core (what the profile was measured as)."""
        return self.variants[name].latency_ms[Tier.EDGE] * self.tiers[Tier.EDGE].cpu_share

    @property
    def names(self) -> list[str]:
        """Variant names, smallest first."""
        return sorted(self.variants, key=lambda n: (self.variants[n].bytes, n))

    def meeting(self, accuracy_req: float) -> list[str]:
        """Variants whose accuracy is at least `accuracy_req` (the teacher's if none is)."""
        names = [n for n in self.names if self.variants[n].accuracy >= accuracy_req]
        return names or [max(self.names, key=lambda n: self.variants[n].accuracy)]


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


def profiles_from_manifest(bundle_dir: Path, manifest: Manifest | None = None) -> Profiles:
    """The variant family of a bundle (teacher, role `variant`, and the student where it has a latency profile)."""
    bundle_dir = Path(bundle_dir)
    manifest = manifest if manifest is not None else load_manifest(bundle_dir, verify=True)
    if PROFILE_ARTIFACT not in manifest.artifacts:
        raise ProfileError(f"bundle {bundle_dir} has no {PROFILE_ARTIFACT!r} artifact; run "
                           f"`edgecloud variants --bundle {bundle_dir}` first")
    raw = json.loads((bundle_dir / manifest.artifacts[PROFILE_ARTIFACT]).read_text())
    tiers = {**DEFAULT_TIERS, **tiers_from_json(raw.get("tiers", {}))}
    correct: dict[str, np.ndarray] = {}
    if CORRECT_ARTIFACT in manifest.artifacts:
        with np.load(bundle_dir / manifest.artifacts[CORRECT_ARTIFACT], allow_pickle=False) as data:
            correct = {k: np.asarray(data[k], dtype=bool) for k in data.files}
    variants: dict[str, VariantProfile] = {}
    for name, entry in manifest.models.items():
        if entry.role not in (ModelRole.VARIANT, ModelRole.TEACHER, ModelRole.STUDENT):
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
                correct=correct.get(name), bits=int(entry.parameters.get("bits", 32)))
        except (KeyError, ValueError, TypeError) as err:
            raise ProfileError(f"model {name!r}: bad metrics for a variant profile ({err!r})") from None
    if manifest.teacher not in variants:
        raise BundleError(f"bundle {bundle_dir}: teacher {manifest.teacher!r} has no latency profile; "
                          "rerun `edgecloud variants`")
    return Profiles(variants=variants, tiers=tiers, teacher=manifest.teacher,
                    request_bytes=request_bytes(raw, manifest.input.shape))
