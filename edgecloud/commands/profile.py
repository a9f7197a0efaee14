"""`edgecloud profile`: time a bundle's split segments where this runs, optionally as an emulated slow device."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "profile", help="measure per-segment latency of a bundle's split and store it in the bundle",
        description="Times every split segment one sample at a time and stores the result as artifact "
                    "split_profile_ROLE. On a real device (a Pi) run it there with --role device; its profile "
                    "replaces an emulated one unchanged. On this machine --pi4 emulates a Raspberry Pi 4: each "
                    "segment runs on one pinned core and its answer is held until k times its CPU time has passed, "
                    "k calibrated so that the bundle's student takes what the published Pi 4 measurement says "
                    "(testbed/slowdown.py), and every head is checked against that model (within 15%%). "
                    "--cpus and --cpu-fraction instead cap a child process with a CFS quota (needs root; a quota "
                    "does not slow work shorter than its slice). Example: "
                    "edgecloud profile --bundle B --role device --pi4 --cpus 0")
    parser.add_argument("--bundle", type=Path, required=True, help="bundle with split segments")
    parser.add_argument("--role", choices=("device", "server"), required=True,
                        help="device: heads, local tails, quantisation; server: tails and the teacher")
    parser.add_argument("--cpus", default=None, metavar="CORES", help="pin to these cores, e.g. 0 or 0,1")
    parser.add_argument("--cpu-fraction", type=float, default=None,
                        help="CPU quota as a fraction of one core, e.g. 0.25 (needs --cpus)")
    parser.add_argument("--period-us", type=int, default=10_000, help="CFS period of the quota")
    parser.add_argument("--pi4", action="store_true",
                        help="device: emulate a Raspberry Pi 4 (compute here, hold k times as long; k calibrated on "
                             "the bundle's student against the seed paper's 17.4 ms Pi 4 time)")
    parser.add_argument("--slowdown", type=float, default=None, metavar="K",
                        help="device: emulate a device K times slower than this host (instead of --pi4's calibration)")
    parser.add_argument("--runs", type=int, default=200, help="timed calls per segment")
    parser.add_argument("--where", default=None, help="description stored with the numbers (default: generated)")
    parser.add_argument("--request-overhead", action="store_true",
                        help="also serve the bundle and time the serving overhead per request: device: the edge agent "
                             "inside the emulation (needs the server profile first); server: the cloud's teacher")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from shared.bundle import BundleError, load_manifest
    from splitting import profile as P
    from testbed.device import DeviceEmulation, EmulationError

    if args.cpu_fraction is not None and args.cpus is None:
        print("edgecloud profile: --cpu-fraction needs --cpus", file=sys.stderr)
        return 2
    if args.pi4 or args.slowdown is not None:
        # The emulation pins this process (--cpus); a caller that runs the command in process (a test, a
        # script) gets its own cores back.
        before = os.sched_getaffinity(0)
        try:
            return _emulated(args)
        finally:
            os.sched_setaffinity(0, before)
    if args.cpus is not None:
        cpus = tuple(int(c) for c in args.cpus.split(","))
        emulation = DeviceEmulation(cpus=cpus, cpu_fraction=args.cpu_fraction, period_us=args.period_us)
        what = "emulated device" if args.cpu_fraction is not None else "pinned"
        where = args.where or f"{P.host_description()}, {what}: {emulation.describe()}"
        child = [sys.executable, "-m", "edgecloud", "profile", "--bundle", str(args.bundle), "--role", args.role,
                 "--runs", str(args.runs), "--where", where]
        try:
            with emulation.cgroup() as group:
                code = subprocess.run(child, preexec_fn=group.enter, check=False).returncode
                if code == 0 and args.request_overhead:
                    code = _request_overhead(args.bundle, group, role=args.role)
                return code
        except (EmulationError, OSError) as err:
            print(f"edgecloud profile: cannot emulate the device: {err}", file=sys.stderr)
            return 2
    try:
        profile = P.measure(args.bundle, args.role, where=args.where or P.host_description(), runs=args.runs)
        path = P.store(args.bundle, profile)
        if args.role == "server" and args.request_overhead:
            code = _request_overhead(args.bundle, None, role="server")
            if code:
                return code
            profile = P.load(args.bundle, load_manifest(args.bundle), "server")
    except (BundleError, ValueError) as err:
        print(f"edgecloud profile: {err}", file=sys.stderr)
        return 2
    _print_profile(profile, path)
    return 0


def _print_profile(profile: Any, path: Path) -> None:
    """Where the stored profile was measured and its table: median and p90 milliseconds per segment."""
    print(f"{profile.role} profile ({profile.where}) -> {path}")
    print("| segment | median ms | p90 ms |\n|---|---:|---:|")
    for name, t in profile.segments.items():
        print(f"| {name} | {t.median_ms:.3f} | {t.p90_ms:.3f} |")


def _emulated(args: argparse.Namespace) -> int:
    """A device profile measured through testbed.slowdown on one pinned core (no root needed)."""
    import os

    from shared.bundle import BundleError
    from splitting import profile as P
    from testbed import slowdown

    if args.role != "device":
        print("edgecloud profile: --pi4 and --slowdown emulate the device; the server runs as it is", file=sys.stderr)
        return 2
    if args.cpu_fraction is not None:
        print("edgecloud profile: --pi4/--slowdown replace --cpu-fraction; give one of them", file=sys.stderr)
        return 2
    try:
        if args.cpus is not None:
            os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
        emulation: dict[str, Any] = {"method": "compute on one host core, hold the answer k times its CPU time"}
        if args.slowdown is not None:
            k = args.slowdown
        else:
            host_ms = P.reference_host_ms(args.bundle, runs=args.runs)
            k = slowdown.calibrate(host_ms)
            emulation["calibration"] = {"reference": vars(slowdown.PI4_CIFAR10), "student_host_ms": host_ms}
        emulation["k"] = k
        emulation["check"] = P.check_emulation(args.bundle, k, runs=min(50, args.runs))
        pinned = f", pinned to cores {args.cpus}" if args.cpus else ""
        what = "Raspberry Pi 4" if args.pi4 and args.slowdown is None else f"device {k:.2f}x slower than the host"
        where = args.where or f"emulated {what}: {P.host_description()}{pinned}, k = {k:.2f}"
        profile = P.measure(args.bundle, "device", where=where, runs=args.runs, slowdown=k)
        profile = P.Profile(role=profile.role, where=profile.where, segments=profile.segments, emulation=emulation)
        path = P.store(args.bundle, profile)
    except (BundleError, ValueError, OSError) as err:
        print(f"edgecloud profile: {err}", file=sys.stderr)
        return 2
    _print_profile(profile, path)
    if args.request_overhead:
        # The edge agent serves inside the same pinning; its overheads are the host's (the docstring says why).
        code = _request_overhead(args.bundle, None, role="device", slowdown=k)
        if code:
            return code
    outside = {n: r for n, r in emulation["check"].items() if not 0.85 <= r <= 1.15}
    print("emulation check (emulated / (k x host), per head): "
          + ", ".join(f"{n} {r:.3f}" for n, r in emulation["check"].items())
          + ("" if not outside else f"; OUTSIDE 15%: {', '.join(outside)}"))
    return 0 if not outside else 1


def _request_overhead(bundle: Path, group: Any, *, role: str, slowdown: float | None = None) -> int:
    """Serve the bundle (the edge's split model, or the server's teacher) and time a request's overhead
    from outside. `slowdown`: the device emulation's k. The emulation holds only the segments (as
    `edgecloud split eval --live` does); the agent's own Python is not held, so an emulated device's
    overheads are the host's: they are timed on an edge that holds nothing, less head_1 as timed here.
    (Timed on an emulating edge, less the profile's emulated head_1, they vanished: the live hold of
    head_1 ran ~10% shorter than its profiled time, more than the 2 ms overhead, and the overhead was
    stored as 0.)

    On the device, with a server profile that has its own request overhead, it also times what an
    offload costs the device: the edge's server-only path against a teacher served on loopback, less
    the device's and the server's request overheads and the teacher's compute (segment `offload`).
    """
    from shared.bundle import BundleError, load_manifest
    from splitting import profile as P
    from testbed.services import free_port, start_service, stop_service, wait_ready

    manifest = load_manifest(bundle)
    log_dir = Path(bundle) / "reports"
    started = []
    try:
        # The edge hosts `split` only with both profiles, so the device's overhead needs the server's first.
        server = P.load(bundle, manifest, "server") if role == "device" else None
        cloud_url = None
        if server is not None and P.REQUEST_SEGMENT in server.segments:
            # The server on every core, not inside the device's pinning: it stands for the other machine.
            cloud = start_service("profile-cloud", ["cloud", "serve", "--bundle", str(bundle), "--models",
                                                    manifest.teacher],
                                  port=free_port(), log_dir=log_dir, preexec_fn=_all_cores)
            started.append(cloud)
            wait_ready(cloud, timeout_s=180)
            cloud_url = cloud.url
        serve = ["edge", "serve", *(["--cloud-url", cloud_url] if cloud_url else [])] if role == "device" \
            else ["cloud", "serve"]
        service = start_service("profile-edge", [*serve, "--bundle", str(bundle)], port=free_port(),
                                log_dir=log_dir, preexec_fn=group.enter if group is not None else None)
        started.append(service)
        wait_ready(service, timeout_s=180)
        rows = []
        if role == "device":
            head_1 = (P.load(bundle, manifest, "device").ms("head_1") if slowdown is None
                      else P.measure(bundle, "device", where="host", runs=50).ms("head_1"))
            timing = P.measure_request_overhead(service.url, "split", parameters={"action": "device:exit1",
                                                                                  "deadline_ms": 10_000},
                                                compute_ms=head_1)
            P.add_segment(bundle, role, P.REQUEST_SEGMENT, timing)
            rows.append((f"{P.REQUEST_SEGMENT} (device serving overhead per request)", timing))
            if cloud_url is not None and server is not None:
                known = (timing.median_ms + server.segments[P.REQUEST_SEGMENT].median_ms
                         + server.ms(P.TEACHER_SEGMENT))
                offload = P.measure_request_overhead(service.url, "split", parameters={"action": "server",
                                                                                       "deadline_ms": 10_000},
                                                     compute_ms=known)
                P.add_segment(bundle, role, P.OFFLOAD_SEGMENT, offload)
                rows.append((f"{P.OFFLOAD_SEGMENT} (device's client work per offload)", offload))
        else:
            timing = P.measure_request_overhead(service.url, manifest.teacher,
                                                compute_ms=P.load(bundle, manifest, "server").ms(P.TEACHER_SEGMENT))
            P.add_segment(bundle, role, P.REQUEST_SEGMENT, timing)
            rows.append((f"{P.REQUEST_SEGMENT} (server serving overhead per request)", timing))
    except (BundleError, ValueError, RuntimeError, TimeoutError) as err:
        print(f"edgecloud profile: request overhead: {err}", file=sys.stderr)
        return 2
    finally:
        for service in reversed(started):
            stop_service(service)
    for name, t in rows:
        print(f"| {name} | {t.median_ms:.3f} | {t.p90_ms:.3f} |")
    return 0


def _all_cores() -> None:
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
