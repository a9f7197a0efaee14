"""Per-segment latency where it runs, stored in the bundle (numpy + onnxruntime; no torch).

    edgecloud profile --bundle B --role device --cpus 0 --cpu-fraction 0.25   # emulated slow device
    edgecloud profile --bundle B --role server                               # this machine as the server

A device profile times, one sample at a time as requests come: every head_p (head_S is device-only),
every tail_p (the device finishes a split on its own when the server fails), and the quantise + pack of
every (p, bits). A server profile times every tail_p and the teacher (server-only), and the JPEG decode
a server-only upload of the image file needs (`jpeg_decode`: Pillow on the bundle's own test JPEGs,
kept by artifact split_input_bytes, or on files given; without either the segment is absent and
`Profile.decode_ms` is `DEFAULT_JPEG_DECODE_MS`). Each segment's median, p90 and mean over `runs`
calls after `warmup` calls are written to the artifact `split_profile_<role>` with a description of
where they were measured (the emulation included), and the manifest is rewritten so its sha256
covers them.
"""

from __future__ import annotations

import io
import itertools
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared import bundle as B
from shared.feature_codec import quantize
from shared.preprocess import ImagePreprocessor
from splitting.segments import SegmentRunner, SplitPlan, head_name, open_session, tail_name
from testbed.slowdown import Slowdown

ROLES: tuple[str, ...] = ("device", "server")
TEACHER_SEGMENT = "teacher"
REQUEST_SEGMENT = "request"
"""The device's serving overhead per request besides its segments (HTTP, protocol, planner, pre-processing)."""
OFFLOAD_SEGMENT = "offload"
"""The device's own cost of one offload besides its request overhead: the HTTP client sending it and
reading the answer (measured on loopback against a running server, less both sides' profiled times)."""
JPEG_DECODE_SEGMENT = "jpeg_decode"
"""The server's decode of an uploaded image file to the (C, H, W) uint8 pixels the teacher reads."""
DEFAULT_JPEG_DECODE_MS = 0.1
"""`decode_ms` of a server profile that did not time it: Pillow decodes a 32x32 CIFAR-10 JPEG in 0.055 ms
(median of 200 test files) on the development host; twice that leaves room for a slower server."""


def artifact_name(role: str) -> str:
    return f"split_profile_{role}"


@dataclass(frozen=True)
class SegmentTiming:
    median_ms: float
    p90_ms: float
    mean_ms: float
    runs: int


@dataclass(frozen=True)
class Profile:
    """Per-segment latency (ms, one sample) measured somewhere."""

    role: str
    where: str
    segments: dict[str, SegmentTiming]
    emulation: dict[str, Any] | None = None
    """how an emulated device was made (factor k, its calibration, the per-segment check), if it was"""

    def ms(self, segment: str) -> float:
        """Median latency of `segment`; KeyError names the segments there are."""
        if segment not in self.segments:
            raise KeyError(f"profile ({self.role}) has no segment {segment!r}; it has {sorted(self.segments)}")
        return self.segments[segment].median_ms

    @property
    def decode_ms(self) -> float:
        """Median time to decode one uploaded image file (JPEG), or the documented default if not timed."""
        timing = self.segments.get(JPEG_DECODE_SEGMENT)
        return DEFAULT_JPEG_DECODE_MS if timing is None else timing.median_ms

    def to_json(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"role": self.role, "where": self.where,
                               "segments": {k: vars(v) for k, v in self.segments.items()}}
        if self.emulation is not None:
            raw["emulation"] = self.emulation
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Profile:
        return cls(role=raw["role"], where=raw["where"],
                   segments={k: SegmentTiming(**v) for k, v in raw["segments"].items()},
                   emulation=raw.get("emulation"))


def quantize_segment(p: int, bits: int) -> str:
    return f"quantize_{p}_{bits}"


def _time(fn: Callable[[], object], *, runs: int, warmup: int, device: Slowdown | None = None) -> SegmentTiming:
    """Median, p90 and mean of `runs` calls after `warmup`; through `device` (an emulated slower device:
    testbed/slowdown.py) when given, so the times are that device's."""
    call = fn if device is None else (lambda: device.run(fn))
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        samples.append(1000.0 * (time.perf_counter() - t0))
    a = np.asarray(samples)
    return SegmentTiming(median_ms=float(np.median(a)), p90_ms=float(np.percentile(a, 90)), mean_ms=float(a.mean()),
                         runs=runs)


def decode_image(data: bytes, *, channels: int) -> np.ndarray:
    """One encoded image file -> (C, H, W) uint8, as a server reading an uploaded file does (Pillow)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def measure_jpeg_decode(files: Sequence[bytes], *, channels: int = 3, runs: int = 200,
                        warmup: int = 20) -> SegmentTiming:
    """Time `decode_image` here, one file per call, cycling through `files` (the bundle's own test JPEGs)."""
    if not files:
        raise ValueError("measure_jpeg_decode needs at least one encoded file")
    cycle = itertools.cycle(files)
    return _time(lambda: decode_image(next(cycle), channels=channels), runs=runs, warmup=warmup)


def reference_host_ms(bundle: Path, *, runs: int = 200, warmup: int = 20) -> float:
    """Median ms of one sample through the bundle's student here (one thread): the network of the kind and
    size the published Pi 4 time is for (testbed.slowdown.PI4_CIFAR10), so their ratio is k."""
    manifest = B.load_manifest(bundle)
    student = manifest.models.get(manifest.student)
    if student is None or student.file is None:
        raise B.BundleError(f"{bundle}: no student ONNX to calibrate the device emulation on; pass --slowdown K")
    family = (student.arch or {}).get("family", "resnet")
    if family != "resnet":
        # The published time is for a ResNet student; another family's student has other FLOPs per byte,
        # so the ratio would not be the Pi's speed (an AlexNet student made it 80x instead of 34x).
        raise B.BundleError(f"{bundle}: its student is {family!r}, but the Pi 4 reference time is for a ResNet "
                            "student; calibrate on a ResNet bundle and pass its k with --slowdown K")
    session = open_session(B.verify_file(bundle, manifest, student.file))
    x = ImagePreprocessor.from_spec(manifest.input).normalize(np.zeros((1, *manifest.input.shape), np.uint8))
    name = session.get_inputs()[0].name
    return _time(lambda: session.run(None, {name: x}), runs=runs, warmup=warmup).median_ms


def live_slowdown(bundle: Path, emulation: dict[str, Any] | None) -> tuple[float, dict[str, Any]]:
    """k for emulating the profiled device live on this host now, and what it was derived from.

    The profile's segment times are k x the host's CPU time when it was measured; a live run holds k x
    the CPU time each pass takes *now*. This host's speed drifts between sessions (its student ran 1.6x
    slower one day than on the day the orchestration variants were profiled), so the profile's k would
    emulate a device that much slower than the profile, and every device segment would run long against
    the environment's model. The student (the calibration's reference) is timed again here, as the
    profile timed it, and k scaled by the ratio: k_now = k x then / now, which is the published Pi 4
    time over the student's host time now. A profile without a calibration (a real device's, or one
    measured with a k given by hand) keeps its k.
    """
    if not emulation:
        return 1.0, {"recalibrated": False, "k": 1.0}
    k = float(emulation.get("k", 1.0))
    then = ((emulation.get("calibration") or {}).get("student_host_ms"))
    if then is None:
        return k, {"recalibrated": False, "k": k}
    now = reference_host_ms(bundle)
    return k * then / now, {"recalibrated": True, "k": k * then / now, "profile_k": k, "student_host_ms": now,
                            "profile_student_host_ms": then}


def check_emulation(bundle: Path, factor: float, *, runs: int = 50) -> dict[str, float]:
    """Per device segment: emulated time / (factor x host time), the two measured interleaved here. Within
    0.85-1.15 the emulation is what the calibrated model says (the issue's check)."""
    manifest = B.load_manifest(bundle)
    plan = SplitPlan.from_manifest(manifest)
    pre = ImagePreprocessor.from_spec(manifest.input)
    x = pre.normalize(np.zeros((1, *plan.raw_shape), dtype=np.uint8))
    runner = SegmentRunner(bundle, manifest=manifest, heads=range(1, plan.n_stages + 1), tails=range(1, plan.n_stages))
    device = Slowdown(factor)
    ratios: dict[str, float] = {}
    for p in range(1, plan.n_stages + 1):
        host, emulated = [], []
        for _ in range(runs):  # interleaved, so a busy moment of the host hits both alike
            # One untimed call before each timed one: the emulated call sleeps, and a pass right after a
            # sleep runs on cold caches (about 20% slower here), so without it the host side would be timed
            # cold and the emulated side warm, and the check would measure that, not the emulation.
            runner.head(p, x)
            host.append(_time(lambda p=p: runner.head(p, x), runs=1, warmup=0).median_ms)
            runner.head(p, x)
            emulated.append(_time(lambda p=p: runner.head(p, x), runs=1, warmup=0, device=device).median_ms)
        ratios[head_name(p)] = float(np.median(emulated) / (factor * np.median(host)))
    return ratios


def measure(bundle: Path, role: str, *, where: str, runs: int = 200, warmup: int | None = None,
            jpegs: Sequence[bytes] | None = None, slowdown: float = 1.0) -> Profile:
    """Time this role's segments of `bundle` here, one sample per call. A server also times the decode of
    `jpegs` (default: the files artifact split_input_bytes keeps, if any). A device's segments run
    through `slowdown` (testbed.slowdown: a device that many times slower than this host)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    warmup = min(20, runs) if warmup is None else warmup
    device = Slowdown(slowdown) if slowdown != 1.0 else None  # below 1: ValueError
    manifest = B.load_manifest(bundle)
    plan = SplitPlan.from_manifest(manifest)
    s = plan.n_stages
    pre = ImagePreprocessor.from_spec(manifest.input)
    x = pre.normalize(np.zeros((1, *plan.raw_shape), dtype=np.uint8))
    segments: dict[str, SegmentTiming] = {}
    if role == "device":
        runner = SegmentRunner(bundle, manifest=manifest, heads=range(1, s + 1), tails=range(1, s))
        for p in range(1, s + 1):
            segments[head_name(p)] = _time(lambda p=p: runner.head(p, pre.normalize(
                np.zeros((1, *plan.raw_shape), np.uint8))), runs=runs, warmup=warmup, device=device)
        for p in range(1, s):
            _, feature = runner.head(p, x)
            assert feature is not None
            segments[tail_name(p)] = _time(lambda p=p, f=feature: runner.tail(p, f), runs=runs, warmup=warmup,
                                           device=device)
            for b in plan.bits:
                segments[quantize_segment(p, b)] = _time(lambda f=feature, b=b: quantize(f, b), runs=runs,
                                                         warmup=warmup, device=device)
    else:
        runner = SegmentRunner(bundle, manifest=manifest, heads=range(1, s), tails=range(1, s))
        for p in range(1, s):
            _, feature = runner.head(p, x)
            assert feature is not None
            segments[tail_name(p)] = _time(lambda p=p, f=feature: runner.tail(p, f), runs=runs, warmup=warmup)
        teacher = manifest.models[manifest.teacher]
        if teacher.file is not None:
            session = open_session(B.verify_file(bundle, manifest, teacher.file))
            name = session.get_inputs()[0].name
            segments[TEACHER_SEGMENT] = _time(lambda: session.run(None, {name: x}), runs=runs, warmup=warmup)
        if jpegs is None:
            from splitting.inputs import read_input_bytes

            jpegs = read_input_bytes(bundle, manifest, raw_shape=plan.raw_shape).samples
        if jpegs:
            segments[JPEG_DECODE_SEGMENT] = measure_jpeg_decode(jpegs, channels=plan.raw_shape[0], runs=runs,
                                                                warmup=warmup)
    return Profile(role=role, where=where, segments=segments)


def measure_request_overhead(url: str, model: str, *, compute_ms: float, parameters: dict[str, Any] | None = None,
                             requests: int = 60, period_s: float = 0.1) -> SegmentTiming:
    """Round trips of one-sample requests to `model` of a running server, less its profiled compute.

    What a request costs a server of the runtime besides its graph (HTTP, protocol, batcher; on the
    device also the planner). The edge's `split` is asked for device-only exit 1 (compute: head_1),
    the server's teacher for a raw image (compute: the teacher). The client calls from outside.
    """
    import httpx

    from shared.oip import encode_request

    samples = []
    with httpx.Client(timeout=30.0) as http:
        meta = http.get(f"{url}/v2/models/{model}").json()
        x = np.zeros((1, *meta["inputs"][0]["shape"][1:]), np.uint8)
        body, headers = encode_request({"input": x}, parameters=parameters)
        for i in range(requests + 5):
            t0 = time.perf_counter()
            response = http.post(f"{url}/v2/models/{model}/infer", content=body, headers=headers)
            elapsed = 1000.0 * (time.perf_counter() - t0)
            if response.status_code != 200:
                raise ValueError(f"edge answered {response.status_code}: {response.text[:200]}")
            if i >= 5:  # the first few warm the connection and the server
                samples.append(max(elapsed - compute_ms, 0.0))
            time.sleep(period_s)
    a = np.asarray(samples)
    return SegmentTiming(median_ms=float(np.median(a)), p90_ms=float(np.percentile(a, 90)), mean_ms=float(a.mean()),
                         runs=len(a))


def add_segment(bundle: Path, role: str, name: str, timing: SegmentTiming) -> Profile:
    """Add (or replace) one segment of a stored profile."""
    manifest = B.load_manifest(bundle)
    profile = load(bundle, manifest, role)
    updated = Profile(role=profile.role, where=profile.where, segments={**profile.segments, name: timing},
                      emulation=profile.emulation)
    store(bundle, updated)
    return updated


def host_description() -> str:
    return f"{platform.node()} ({platform.machine()}, {platform.processor() or 'cpu'})"


def store(bundle: Path, profile: Profile) -> Path:
    """Write the profile into the bundle as artifact split_profile_<role> and rehash the manifest."""
    bundle = Path(bundle)
    manifest = B.load_manifest(bundle)
    rel = f"split/profile_{profile.role}.json"
    (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
    (bundle / rel).write_text(json.dumps(profile.to_json(), indent=2) + "\n")
    artifacts = {**manifest.artifacts, artifact_name(profile.role): rel}
    B.write_manifest(bundle, manifest.model_copy(update={"artifacts": artifacts}))
    return bundle / rel


def load(bundle: Path, manifest: B.Manifest, role: str) -> Profile:
    """The bundle's profile for `role`; BundleError says how to make it when it is missing."""
    name = manifest.artifacts.get(artifact_name(role))
    if name is None:
        raise B.BundleError(f"{bundle}: no {role} profile; run `edgecloud profile --bundle {bundle} --role {role}`")
    return Profile.from_json(json.loads(B.read_verified(Path(bundle), manifest, name)))
