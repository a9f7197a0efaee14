"""`edgecloud orchestrate sim|live`: per-request (tier, variant) orchestration, simulated or with real processes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

SIM_EXAMPLE = ("edgecloud orchestrate sim --bundle artifacts/bundle --users 8 "
               "--traces ../shared/data/traces/cellular-up-test --accuracy-levels -0.10 -0.03 -0.009 "
               "--out artifacts/orch/sim8")
DEFAULT_POLICIES = "qlearning,linucb,greedy,all-end,all-edge,all-cloud,myopic-oracle,static,static-map"


def _common(parser: argparse.ArgumentParser, scenarios: list[str]) -> None:
    parser.add_argument("--bundle", type=Path, required=True, help="bundle with variants (`edgecloud variants`)")
    parser.add_argument("--users", type=int, required=True, help="end devices, each with its own orchestrator")
    parser.add_argument("--traces", type=Path, required=True,
                        help="folder of uplink traces for the devices' access links, one per device; tune on "
                             "cellular-up/, report on cellular-up-test/")
    parser.add_argument("--accuracy-req", type=float, default=None,
                        help="accuracy every request requires, in [0, 1] (or a percentage > 1, e.g. 97.5)")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.json, report.md and plots")
    parser.add_argument("--scenario", choices=scenarios, default="change",
                        help="steady: all users, full bandwidth; change: half the users, all join at 1/3, "
                             "the bandwidth drops to 1/10 at 2/3 (default); churn: users join and leave")
    parser.add_argument("--duration", type=float, default=90.0, help="seconds of arrivals per run")
    parser.add_argument("--rate", type=float, default=4.0, help="requests per second per active user")
    parser.add_argument("--arrivals", choices=("poisson", "bursty"), default="poisson", help="arrival process")
    parser.add_argument("--end-cpu-share", type=float, default=None, metavar="SHARE",
                        help="emulate end devices with this share of one host core (compute on the device "
                             "scales as 1/SHARE; in sim the same as --device-slowdown 1/SHARE)")
    parser.add_argument("--policies", default=DEFAULT_POLICIES,
                        help="comma-separated: qlearning, linucb, greedy, all-end, all-edge, all-cloud, "
                             "myopic-oracle (old name: oracle), static (every pair meeting the lowest level), "
                             "static-map (the best pair per requirement level) or static:TIER:VARIANT")


def add_parser(sub: Any) -> None:
    # Light modules (numpy, pydantic): the flags' defaults come from the settings they set.
    from orchestration.hardware import TierHardware
    from orchestration.links import NetworkConfig
    from orchestration.scenario import SCENARIOS, RequirementMix, Scenario

    parser = sub.add_parser("orchestrate", help="online (tier, variant) orchestration for many users: sim or live",
                            description="Multi-user end-edge-cloud orchestration (after Shahhosseini et al.).")
    osub = parser.add_subparsers(dest="orchestrate_command", metavar="ACTION", required=True)
    sim = osub.add_parser("sim", help="discrete-event simulation from the bundle's profiles and real traces",
                          description="Runs every policy through the same simulated users, traces and changes "
                                      f"and writes OUT/report.json. Example: {SIM_EXAMPLE}")
    _common(sim, sorted(SCENARIOS))
    scenario, hardware, network = Scenario(), TierHardware(), NetworkConfig()
    sim.add_argument("--accuracy-levels", type=float, nargs="+", default=None, metavar="LEVEL",
                     help="requirement levels requests carry instead of one --accuracy-req: fractions, "
                          "percentages (> 1) or offsets from the teacher's accuracy (< 0, e.g. -0.009)")
    sim.add_argument("--level-weights", type=float, nargs="+", default=None, metavar="W",
                     help="how often each level is needed (default: equally)")
    sim.add_argument("--level-switch-s", type=float, default=RequirementMix().switch_s, metavar="SECONDS",
                     help="mean time a user keeps an application's level before drawing again "
                          "(default %(default)s; inf: never)")
    sim.add_argument("--deadline-ms", type=float, default=scenario.deadline_ms,
                     help="each request's deadline; an offload not answered when only the device's fallback "
                          "is left is abandoned and the device answers (default %(default)s, the live agent's "
                          "budget; 0: no deadline)")
    sim.add_argument("--seeds", type=int, default=3, help="independent runs per policy, pooled")
    sim.add_argument("--access-rtt-ms", type=float, default=network.access_rtt_ms,
                     help="device <-> edge server round trip (default %(default)s)")
    sim.add_argument("--wan-rtt-ms", type=float, default=network.wan_rtt_ms,
                     help="extra round trip to the cloud (default %(default)s)")
    sim.add_argument("--downlink-mbit-s", type=float, default=network.downlink_mbit_s,
                     help="rate the answers come down at (default: the device's own trace)")
    sim.add_argument("--device-reference", default=hardware.device_reference, metavar="VARIANT",
                     help="variant whose host time calibrates the emulated Raspberry Pi 4 (default: the "
                          "full-precision variant nearest the published 675 KB student)")
    sim.add_argument("--device-slowdown", type=float, default=hardware.device_slowdown, metavar="K",
                     help="the device runs K times slower than a host core (default: calibrated)")
    sim.add_argument("--edge-cores", type=int, default=hardware.edge_cores,
                     help="cores of the shared edge server (default %(default)s)")
    sim.add_argument("--cloud-cores", type=int, default=hardware.cloud_cores,
                     help="passes the cloud runs at once (default %(default)s)")
    sim.add_argument("--cloud-speed", type=float, default=hardware.cloud_speed,
                     help="a cloud pass is this many times faster than a host core (default %(default)s)")
    sim.add_argument("--request-bytes", type=int, default=None, metavar="BYTES",
                     help="bytes of one request on the wire instead of the profile's (e.g. 10x the profile's "
                          "to emulate a larger input: only the transfers change)")
    for tier in ("end", "edge", "cloud"):
        sim.add_argument(f"--{tier}-overhead-ms", type=float, default=0.0,
                         help=f"software time per request on the {tier} path beyond compute and links "
                              "(calibrate from a live run's static policies)")
    for tier in ("edge", "cloud"):
        sim.add_argument(f"--{tier}-connect-ms", type=float, default=0.0,
                         help=f"extra time of each device's first request to the {tier} (connection set-up; "
                              f"calibrate from a live run's all-{tier} first requests)")
    sim.set_defaults(handler=run_sim)

    live = osub.add_parser(
        "live", help="the same comparison with real processes: servers pinned, devices slowed to the profile's share",
        description="Starts the cloud and the edge server (each pinned to a core, each behind a delay proxy "
                    "with the network's RTT) and one edge agent per user hosting model `orchestrator` (computing "
                    "1/share times slower than the host, the profile's end-device share), drives every user's requests "
                    "and writes OUT/report.json like `sim`. Bandwidth traces are not replayed live yet (the "
                    "testbed's trace replay has not landed): --traces is recorded only. Example: "
                    "edgecloud orchestrate live --bundle artifacts/bundle --users 4 "
                    "--traces ../shared/data/traces/norway-hsdpa-test --accuracy-req 0.975 --out artifacts/orch/live4")
    _common(live, ["steady", "change"])
    live.set_defaults(scenario="steady", duration=60.0, policies="qlearning,linucb,greedy,all-edge")
    live.add_argument("--rounds", type=int, default=1, help="rounds per policy, interleaved")
    live.add_argument("--data-dir", type=Path, default=None, help="dataset folder (not needed for digits)")
    live.add_argument("--kill-edge-at", type=float, default=None, metavar="SECONDS",
                      help="kill the edge server this many seconds into each round (no request may be lost)")
    live.add_argument("--access-rtt-ms", type=float, default=20.0, help="device <-> edge server round trip")
    live.add_argument("--wan-rtt-ms", type=float, default=60.0, help="extra round trip to the cloud")
    live.set_defaults(handler=run_live)


def accuracy_fraction(value: float) -> float:
    """--accuracy-req as a fraction: 97.5 and 0.975 both mean 97.5%."""
    fraction = value / 100.0 if value > 1.0 else value
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"--accuracy-req must be in [0, 1] or a percentage in (1, 100], got {value}")
    return fraction


def run_sim(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from orchestration.experiment import SimSpec, simulate
    from orchestration.hardware import TierHardware
    from orchestration.links import NetworkConfig
    from orchestration.policies import PolicyError
    from orchestration.profiles import ProfileError, profiles_from_manifest
    from orchestration.scenario import RequirementMix, resolve_levels
    from shared.bundle import BundleError
    from shared.traces import TraceError

    try:
        if (args.accuracy_req is None) == (args.accuracy_levels is None):
            raise ValueError("give one of --accuracy-req (every request) or --accuracy-levels (a mix)")
        if args.end_cpu_share is not None and args.device_slowdown is not None:
            raise ValueError("give --end-cpu-share or --device-slowdown, not both (one is 1 / the other)")
        requirements = None
        if args.accuracy_levels is not None:
            teacher = profiles_from_manifest(args.bundle)
            levels = resolve_levels(args.accuracy_levels, teacher.variants[teacher.teacher].accuracy)
            requirements = RequirementMix(levels=levels, switch_s=args.level_switch_s,
                                          weights=None if args.level_weights is None else tuple(args.level_weights))
        slowdown = 1.0 / args.end_cpu_share if args.end_cpu_share is not None else args.device_slowdown
        spec = SimSpec(bundle=args.bundle, users=args.users, traces=args.traces,
                       accuracy_req=accuracy_fraction(args.accuracy_req or 0.0), requirements=requirements,
                       deadline_ms=args.deadline_ms or None, scenario=args.scenario,
                       duration_s=args.duration, rate_per_user=args.rate, arrivals=args.arrivals, seeds=args.seeds,
                       policies=[p.strip() for p in args.policies.split(",") if p.strip()],
                       network=NetworkConfig(access_rtt_ms=args.access_rtt_ms, wan_rtt_ms=args.wan_rtt_ms,
                                             downlink_mbit_s=args.downlink_mbit_s,
                                             end_overhead_ms=args.end_overhead_ms,
                                             edge_overhead_ms=args.edge_overhead_ms,
                                             cloud_overhead_ms=args.cloud_overhead_ms,
                                             edge_connect_ms=args.edge_connect_ms,
                                             cloud_connect_ms=args.cloud_connect_ms),
                       hardware=TierHardware(device_reference=args.device_reference, device_slowdown=slowdown,
                                             edge_cores=args.edge_cores, cloud_cores=args.cloud_cores,
                                             cloud_speed=args.cloud_speed),
                       request_bytes=args.request_bytes)
        with tqdm(desc="policy runs", unit="run") as bar:
            report = simulate(spec, out=args.out, progress=lambda line: (bar.update(), bar.set_postfix_str(line)))
    except (BundleError, ProfileError, PolicyError, TraceError, ValueError) as err:
        print(f"edgecloud orchestrate sim: {err}", file=sys.stderr)
        return 2
    print((args.out / "report.md").read_text())
    comparison = report["comparison"]
    print(f"best static (pair or mapping, <= {comparison['missed_tolerance']:.0%} requirements missed): "
          f"{comparison['best_static']}")
    for name in ("qlearning", "linucb"):
        if name in comparison:
            row = comparison[name]
            print(f"{name}: {row.get('below_best_static', float('nan')):+.1%} vs best static, "
                  f"{row.get('below_greedy', float('nan')):+.1%} vs greedy (positive = faster), "
                  f"{row['accuracy_points_below_teacher']:.2f} points below the teacher")
    print(f"report: {args.out / 'report.json'}")
    return 0


def run_live(args: argparse.Namespace) -> int:
    import logging

    from orchestration.links import NetworkConfig
    from orchestration.live import LiveError, LiveSpec
    from orchestration.live import run_live as live
    from orchestration.profiles import ProfileError
    from orchestration.report import markdown_table
    from shared.bundle import BundleError
    from shared.datasets import DatasetError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.accuracy_req is None:
            raise ValueError("live needs --accuracy-req (every device's requirement)")
        spec = LiveSpec(bundle=args.bundle, users=args.users, traces=args.traces,
                        accuracy_req=accuracy_fraction(args.accuracy_req), out=args.out, scenario=args.scenario,
                        duration_s=args.duration, rate_per_user=args.rate, arrivals=args.arrivals,
                        rounds=args.rounds, policies=[p.strip() for p in args.policies.split(",") if p.strip()],
                        network=NetworkConfig(access_rtt_ms=args.access_rtt_ms, wan_rtt_ms=args.wan_rtt_ms),
                        data_dir=args.data_dir, kill_edge_at_s=args.kill_edge_at, end_cpu_share=args.end_cpu_share)
        report = live(spec, progress=lambda line: print(line, file=sys.stderr, flush=True))
    except (LiveError, BundleError, ProfileError, DatasetError, ValueError) as err:
        print(f"edgecloud orchestrate live: {err}", file=sys.stderr)
        return 2
    print(markdown_table(report["policies"]))
    print(f"report: {args.out / 'report.json'}")
    lost = {k: v["requests"] - v["answered"] for k, v in report["policies"].items() if v["requests"] != v["answered"]}
    if lost:
        print(f"requests not answered: {lost}", file=sys.stderr)
        return 1
    return 0
