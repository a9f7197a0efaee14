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


CONFIG_HELP = ("JSON file of settings in the shape of the config.json a run writes, e.g. "
               '{"users": 8, "network": {"wan_rtt_ms": 80}}; variables EDGECLOUD_ORCHESTRATE__<FIELD>[__<SUBFIELD>] '
               "(e.g. EDGECLOUD_ORCHESTRATE__HARDWARE__EDGE_CORES=2) go over the file, flags over both")


def _common(parser: argparse.ArgumentParser, scenarios: list[str], defaults: Any) -> None:
    # Flags default to None (not given): the run's defaults are its spec's (orchestration/spec.py).
    parser.add_argument("--bundle", type=Path, default=None, help="bundle with variants (`edgecloud variants`)")
    parser.add_argument("--users", type=int, default=None, help="end devices, each with its own orchestrator")
    parser.add_argument("--traces", type=Path, default=None,
                        help="folder of uplink traces for the devices' access links, one per device; tune on "
                             "cellular-up/, report on cellular-up-test/")
    parser.add_argument("--accuracy-req", type=float, default=None,
                        help="accuracy every request requires, in [0, 1] (or a percentage > 1, e.g. 97.5)")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for report.json, report.md, plots and config.json (the settings used)")
    parser.add_argument("--scenario", choices=scenarios, default=None,
                        help="steady: all users, full bandwidth; change: half the users, all join at 1/3, "
                             "the bandwidth drops to 1/10 at 2/3; churn: users join and leave "
                             f"(default {defaults.scenario})")
    parser.add_argument("--duration", type=float, default=None,
                        help=f"seconds of arrivals per run (default {defaults.duration_s:g})")
    parser.add_argument("--rate", type=float, default=None,
                        help=f"requests per second per active user (default {defaults.rate_per_user:g})")
    parser.add_argument("--arrivals", choices=("poisson", "bursty"), default=None,
                        help=f"arrival process (default {defaults.arrivals})")
    parser.add_argument("--end-cpu-share", type=float, default=None, metavar="SHARE",
                        help="emulate end devices with this share of one host core (compute on the device "
                             "scales as 1/SHARE; in sim the same as --device-slowdown 1/SHARE)")
    parser.add_argument("--policies", default=None,
                        help="comma-separated: qlearning, linucb, greedy, all-end, all-edge, all-cloud, "
                             "myopic-oracle (old name: oracle), static (every pair meeting the lowest level), "
                             "static-map (the best pair per requirement level) or static:TIER:VARIANT; any "
                             "but the myopic oracle with +hedge (e.g. all-edge+hedge) races each offload "
                             f"against the device's own pass (default {','.join(defaults.policies)})")
    parser.add_argument("--config", type=Path, default=None, metavar="JSON", help=CONFIG_HELP)


def _rtt_flags(parser: argparse.ArgumentParser, network: Any) -> None:
    """The two round trips sim and live both take; their defaults are ``network``'s (a NetworkConfig)."""
    parser.add_argument("--access-rtt-ms", type=float, default=None,
                        help=f"device <-> edge server round trip (default {network.access_rtt_ms:g})")
    parser.add_argument("--wan-rtt-ms", type=float, default=None,
                        help=f"extra round trip to the cloud (default {network.wan_rtt_ms:g})")


def add_parser(sub: Any) -> None:
    # Light modules (numpy, pydantic): the flags' help shows the defaults of the settings they set.
    from orchestration.scenario import SCENARIOS, RequirementMix
    from orchestration.spec import LiveSpec, SimSpec

    parser = sub.add_parser("orchestrate", help="online (tier, variant) orchestration for many users: sim or live",
                            description="Multi-user end-edge-cloud orchestration (after Shahhosseini et al.).")
    osub = parser.add_subparsers(dest="orchestrate_command", metavar="ACTION", required=True)
    sim = osub.add_parser("sim", help="discrete-event simulation from the bundle's profiles and real traces",
                          description="Runs every policy through the same simulated users, traces and changes "
                                      f"and writes OUT/report.json. Example: {SIM_EXAMPLE}")
    spec = SimSpec.model_construct()  # the defaults, for the help texts
    hardware, network = spec.hardware, spec.network
    _common(sim, sorted(SCENARIOS), spec)
    sim.add_argument("--accuracy-levels", type=float, nargs="+", default=None, metavar="LEVEL",
                     help="requirement levels requests carry instead of one --accuracy-req: fractions, "
                          "percentages (> 1) or offsets from the teacher's accuracy (< 0, e.g. -0.009)")
    sim.add_argument("--level-weights", type=float, nargs="+", default=None, metavar="W",
                     help="how often each level is needed (default: equally)")
    sim.add_argument("--level-switch-s", type=float, default=None, metavar="SECONDS",
                     help="mean time a user keeps an application's level before drawing again "
                          f"(default {RequirementMix().switch_s:g}; inf: never)")
    sim.add_argument("--deadline-ms", type=float, default=None,
                     help="each request's deadline; an offload not answered when only the device's fallback "
                          f"is left is abandoned and the device answers (default {spec.deadline_ms:g}, the live "
                          "agent's budget; 0: no deadline)")
    sim.add_argument("--seeds", type=int, default=None, help=f"independent runs per policy, pooled ({spec.seeds})")
    _rtt_flags(sim, network)
    sim.add_argument("--downlink-mbit-s", type=float, default=None,
                     help="rate the answers come down at (default: the device's own trace)")
    sim.add_argument("--device-reference", default=None, metavar="VARIANT",
                     help="variant whose host time calibrates the emulated Raspberry Pi 4 (default: the "
                          "full-precision variant nearest the published 675 KB student)")
    sim.add_argument("--device-slowdown", type=float, default=None, metavar="K",
                     help="the device runs K times slower than a host core (default: calibrated)")
    sim.add_argument("--edge-cores", type=int, default=None,
                     help=f"cores of the shared edge server (default {hardware.edge_cores})")
    sim.add_argument("--cloud-cores", type=int, default=None,
                     help=f"passes the cloud runs at once (default {hardware.cloud_cores})")
    sim.add_argument("--cloud-speed", type=float, default=None,
                     help=f"a cloud pass is this many times faster than a host core (default {hardware.cloud_speed:g})")
    sim.add_argument("--request-bytes", type=int, default=None, metavar="BYTES",
                     help="bytes of one request on the wire instead of the profile's (e.g. 10x the profile's "
                          "to emulate a larger input: only the transfers change)")
    for tier in ("end", "edge", "cloud"):
        sim.add_argument(f"--{tier}-overhead-ms", type=float, default=None,
                         help=f"software time per request on the {tier} path beyond compute and links "
                              "(calibrate from a live run's static policies; default 0)")
    for tier in ("edge", "cloud"):
        sim.add_argument(f"--{tier}-connect-ms", type=float, default=None,
                         help=f"extra time of each device's first request to the {tier} (connection set-up; "
                              f"calibrate from a live run's all-{tier} first requests; default 0)")
    sim.set_defaults(handler=run_sim)

    live = osub.add_parser(
        "live", help="the same comparison with real processes: servers pinned, devices slowed to the profile's share",
        description="Starts the cloud and the edge server (each pinned to a core, each behind a delay proxy "
                    "with the network's RTT) and one edge agent per user hosting model `orchestrator` (computing "
                    "1/share times slower than the host, the profile's end-device share), drives every user's requests "
                    "and writes OUT/report.json like `sim`. Each device's links to the servers replay its trace from "
                    "--traces (its own delay proxies), at the trace and offset `sim`'s seed r gives that user in "
                    "round r, with the same arrival times. Example: "
                    "edgecloud orchestrate live --bundle artifacts/bundle --users 4 "
                    "--traces ../shared/data/traces/norway-hsdpa-test --accuracy-req 0.975 --out artifacts/orch/live4")
    defaults = LiveSpec.model_construct()
    _common(live, ["steady", "change"], defaults)
    live.add_argument("--rounds", type=int, default=None, help=f"rounds per policy, interleaved ({defaults.rounds})")
    live.add_argument("--data-dir", type=Path, default=None, help="dataset folder (not needed for digits)")
    live.add_argument("--kill-edge-at", type=float, default=None, metavar="SECONDS",
                      help="kill the edge server this many seconds into each round (no request may be lost)")
    live.add_argument("--no-trace-replay", dest="replay_traces", action="store_false", default=None,
                      help="links at the RTTs alone and the loopback's rate, one proxy per server (the traces "
                           "are then recorded only)")
    live.add_argument("--no-device-calibration", dest="calibrate_device", action="store_false", default=None,
                      help="without --end-cpu-share: emulate the device at the profile's own share instead of "
                           "calibrating k on this host at the start (the published Pi 4 time for the reference "
                           "variant, timed as the devices run it)")
    _rtt_flags(live, defaults.network)
    live.set_defaults(handler=run_live)


def accuracy_fraction(value: float) -> float:
    """--accuracy-req as a fraction: 97.5 and 0.975 both mean 97.5%."""
    fraction = value / 100.0 if value > 1.0 else value
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"--accuracy-req must be in [0, 1] or a percentage in (1, 100], got {value}")
    return fraction


def _policies(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


RUN_FLAGS: dict[str, str] = {"bundle": "bundle", "users": "users", "traces": "traces", "accuracy_req": "accuracy_req",
                             "scenario": "scenario", "duration_s": "duration", "rate_per_user": "rate",
                             "arrivals": "arrivals", "policies": "policies", "network.access_rtt_ms": "access_rtt_ms",
                             "network.wan_rtt_ms": "wan_rtt_ms"}
"""The flags of both runs: the setting each sets (dotted path -> argparse dest)."""
SIM_FLAGS: dict[str, str] = {
    **RUN_FLAGS, "requirements.levels": "accuracy_levels", "requirements.weights": "level_weights",
    "requirements.switch_s": "level_switch_s", "deadline_ms": "deadline_ms", "seeds": "seeds",
    "network.downlink_mbit_s": "downlink_mbit_s", "hardware.device_reference": "device_reference",
    "hardware.device_slowdown": "device_slowdown", "hardware.edge_cores": "edge_cores",
    "hardware.cloud_cores": "cloud_cores", "hardware.cloud_speed": "cloud_speed", "request_bytes": "request_bytes",
    **{f"network.{tier}_overhead_ms": f"{tier}_overhead_ms" for tier in ("end", "edge", "cloud")},
    **{f"network.{tier}_connect_ms": f"{tier}_connect_ms" for tier in ("edge", "cloud")},
}
LIVE_FLAGS: dict[str, str] = {**RUN_FLAGS, "out": "out", "rounds": "rounds", "data_dir": "data_dir",
                              "kill_edge_at_s": "kill_edge_at", "end_cpu_share": "end_cpu_share",
                              "replay_traces": "replay_traces", "calibrate_device": "calibrate_device"}


def _layers(args: argparse.Namespace, flags: dict[str, str]) -> list[Any]:
    from shared.run_config import Scope, env_layer, file_layer, flag_layer

    convert: dict[str, Any] = {"policies": _policies, "accuracy_req": accuracy_fraction,
                               # 0 on the command line means no deadline
                               "deadline_ms": lambda ms: ms or None}
    return [file_layer(args.config), env_layer(Scope.ORCHESTRATE), flag_layer(args, flags, convert)]


def _sim_requirements(values: dict[str, Any]) -> dict[str, Any]:
    """One requirement or a mix, its levels as fractions of the bundle's teacher (the layers merged)."""
    from orchestration.profiles import profiles_from_manifest
    from orchestration.scenario import resolve_levels

    mix = values.get("requirements")
    levels = mix.get("levels") if isinstance(mix, dict) else None
    if ("accuracy_req" in values) == (levels is not None):
        raise ValueError("give one of --accuracy-req (every request; accuracy_req) or --accuracy-levels "
                         "(a mix; requirements.levels)")
    if isinstance(mix, dict) and levels is None:
        del values["requirements"]  # weights and a switch time shape a mix, and there is none
    elif levels is not None and "bundle" in values:
        teacher = profiles_from_manifest(Path(values["bundle"]))
        values["requirements"] = {**mix, "levels": resolve_levels(levels, teacher.variants[teacher.teacher].accuracy)}
    return values


def run_sim(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from orchestration.experiment import simulate
    from orchestration.policies import PolicyError
    from orchestration.profiles import ProfileError
    from orchestration.spec import SimSpec
    from shared.bundle import BundleError
    from shared.run_config import Scope, resolve, write_run_config
    from shared.traces import TraceError

    try:
        if args.end_cpu_share is not None:
            if args.device_slowdown is not None:
                raise ValueError("give --end-cpu-share or --device-slowdown, not both (one is 1 / the other)")
            args.device_slowdown = 1.0 / args.end_cpu_share
        spec = resolve(SimSpec, Scope.ORCHESTRATE, _layers(args, SIM_FLAGS), finish=_sim_requirements)
        # A mix replaces the one requirement: the file records one or the other, so it runs again as it is.
        write_run_config(spec, args.out, exclude={"accuracy_req"} if spec.requirements is not None else None)
        with tqdm(desc="policy runs", unit="run") as bar:
            report = simulate(spec, out=args.out, progress=lambda line: (bar.update(), bar.set_postfix_str(line)))
    except (BundleError, ProfileError, PolicyError, TraceError, ValueError) as err:
        print(f"edgecloud orchestrate sim: {err}", file=sys.stderr)
        return 2
    print((args.out / "report.md").read_text())
    comparison = report["comparison"]
    print(f"best static (pair or mapping, <= {comparison['missed_tolerance']:.0%} requirements missed): "
          f"{comparison['best_static']}")
    if comparison.get("best_static_hedged"):
        print(f"best hedged static (racing each offload against the device): {comparison['best_static_hedged']}")
    for name in ("qlearning", "linucb", "qlearning+hedge", "linucb+hedge"):
        if name in comparison:
            row = comparison[name]
            print(f"{name}: {row.get('below_best_static', float('nan')):+.1%} vs best static, "
                  f"{row.get('below_greedy', float('nan')):+.1%} vs greedy (positive = faster), "
                  f"{row['accuracy_points_below_teacher']:.2f} points below the teacher")
    print(f"report: {args.out / 'report.json'}")
    return 0


def run_live(args: argparse.Namespace) -> int:
    import logging

    from orchestration.live import LiveError
    from orchestration.live import run_live as live
    from orchestration.profiles import ProfileError
    from orchestration.report import markdown_table
    from orchestration.spec import LiveSpec
    from shared.bundle import BundleError
    from shared.datasets import DatasetError
    from shared.run_config import Scope, resolve, write_run_config

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        spec = resolve(LiveSpec, Scope.ORCHESTRATE, _layers(args, LIVE_FLAGS))
        write_run_config(spec, spec.out)
        report = live(spec, progress=lambda line: print(line, file=sys.stderr, flush=True))
    except (LiveError, BundleError, ProfileError, DatasetError, ValueError) as err:
        print(f"edgecloud orchestrate live: {err}", file=sys.stderr)
        return 2
    print(markdown_table(report["policies"]))
    print(f"report: {spec.out / 'report.json'}")
    lost = {k: v["requests"] - v["answered"] for k, v in report["policies"].items() if v["requests"] != v["answered"]}
    if lost:
        print(f"requests not answered: {lost}", file=sys.stderr)
        return 1
    return 0
