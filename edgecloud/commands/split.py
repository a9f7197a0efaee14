"""`edgecloud split build | train | eval`: adaptive split inference (after Niu et al.)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from splitting.config import TRACES, PlannerTraining, SplitEval
from splitting.regime import add_regime_arguments

CONFIG_HELP = ("JSON file of settings in the shape of the config.json a run writes, e.g. "
               '{"regime": {"deadline_ms": 300}, "train": {"steps": 20000}}; variables EDGECLOUD_SPLIT__<SECTION>__'
               "<FIELD> (e.g. EDGECLOUD_SPLIT__REGIME__RTT_MS=60) go over the file, flags over both")


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "split", help="early exits + partition + feature bits per request: build segments, train planners, evaluate",
        description="Adaptive split inference. `build` adds a multi-branch net's head_p/tail_p segments to a bundle; "
                    "`edgecloud profile` times them; `train` fits the SAC and DQN planners on training traces; "
                    "`eval` runs every strategy over a folder of traces and writes report.json and plots.")
    commands = parser.add_subparsers(dest="split_command", metavar="SUBCOMMAND", required=True)

    build = commands.add_parser(
        "build", help="train exit heads and bottlenecks on a bundle's teacher, export segments into a bundle",
        description="Example: edgecloud split build --bundle artifacts/mnist --out artifacts/mnist-split "
                    "--data-dir ../shared/data/mnist")
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", type=Path, help="source bundle (its teacher.pt is the backbone)")
    source.add_argument("--teacher", type=Path,
                        help="a teacher checkpoint alone (e.g. train-teacher's teacher.pt): the output bundle holds "
                             "it and its split; needs --dataset")
    build.add_argument("--dataset", default=None, help="with --teacher: the dataset it was trained on")
    build.add_argument("--image-size", type=int, default=None, metavar="PIXELS",
                       help="with --teacher and an imagefolder dataset: the side its images were resized to")
    build.add_argument("--out", type=Path, required=True, help="output bundle (a copy of --bundle plus the split)")
    build.add_argument("--data-dir", type=Path, default=None, help="dataset folder (not needed for digits)")
    build.add_argument("--epochs", type=int, default=3,
                       help="training epochs of heads and bottlenecks (each epoch's validation accuracy per exit and "
                            "bottleneck is recorded, so convergence can be checked)")
    build.add_argument("--max-train-samples", type=int, default=20000,
                       help="subsample the training split (0: all of it)")
    build.add_argument("--augment", default="none", choices=("none", "shift", "crop-flip"),
                       help="training-time augmentation (crop-flip for natural images)")
    build.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                       help="training arithmetic: bf16 autocast where the CPU runs it natively (auto)")
    build.add_argument("--bottleneck-channels", type=int, default=4,
                       help="channels of each learned bottleneck (0: split without bottlenecks)")
    build.add_argument("--seed", type=int, default=0, help="the bundle's dataset seed (splits) and training seed")
    build.add_argument("--no-progress", action="store_true", help="hide progress bars")
    build.set_defaults(handler=run_build)

    train = commands.add_parser(
        "train", help="train the SAC and DQN planners on training traces and store them in the bundle",
        description="Example: edgecloud split train --bundle B --deadline-ms 100 --traces "
                    "../shared/data/traces/fcc ../shared/data/traces/norway-hsdpa")
    # Flags default to None (not given): the settings' defaults are PlannerTraining's and the bundle's regime.
    t = PlannerTraining()
    train.add_argument("--bundle", type=Path, default=None, help="bundle with split segments and both profiles")
    train.add_argument("--traces", type=Path, nargs="+", default=None,
                       help="training trace folders (a test folder is refused; default: "
                            f"{' '.join(map(str, t.traces))})")
    add_regime_arguments(train)
    train.add_argument("--acc-weight", type=float, default=None, help=f"reward per unit of accuracy ({t.acc_weight:g})")
    train.add_argument("--miss-penalty", type=float, default=None,
                       help=f"reward penalty of a missed deadline ({t.miss_penalty:g})")
    train.add_argument("--steps", type=int, default=None, help=f"environment steps per planner ({t.steps})")
    train.add_argument("--target-entropy-ratio", type=float, default=None,
                       help=f"SAC target entropy as a fraction of log(#valid actions) ({t.target_entropy_ratio:g})")
    train.add_argument("--gamma", type=float, default=None, help=f"discount of both planners ({t.gamma:g})")
    train.add_argument("--no-dqn", action="store_true", default=None,
                       help="train SAC only (an earlier training's DQN policy is removed)")
    train.add_argument("--seed", type=int, default=None, help=f"seed ({t.seed})")
    train.add_argument("--greedy-hint", action="store_true", default=None,
                       help="give the planners greedy's choice as part of their state (docs/split_inference.md)")
    train.add_argument("--hint-acc-weight", type=float, default=None, metavar="W",
                       help="with --greedy-hint: greedy's accuracy weight in the hint (default: --acc-weight)")
    train.add_argument("--select-floor-points", type=float, default=None, metavar="P",
                       help="keep the SAC checkpoint fastest on the training traces at expected accuracy >= the "
                            "teacher's less P points (default: the last one)")
    train.add_argument("--select-every", type=int, default=None, metavar="N",
                       help=f"with --select-floor-points: steps between scored checkpoints ({t.select_every})")
    train.add_argument("--config", type=Path, default=None, metavar="JSON", help=CONFIG_HELP)
    train.add_argument("--no-progress", action="store_true", help="hide progress bars")
    train.set_defaults(handler=run_train)

    tune = commands.add_parser(
        "tune", help="SAC's target entropy: train once per ratio, score each on training traces (nothing stored)",
        description="Example: edgecloud split tune --bundle B --ratios 0.98 0.5 0.3 0.1 --out tune.json")
    tune.add_argument("--bundle", type=Path, required=True, help="bundle with split segments and both profiles")
    tune.add_argument("--traces", type=Path, nargs="+", default=[TRACES / "fcc", TRACES / "norway-hsdpa"],
                      help="training trace folders")
    tune.add_argument("--tune-traces", type=Path, default=TRACES / "norway-hsdpa",
                      help="training folder whose every 4th trace scores the ratios (never a test folder)")
    tune.add_argument("--ratios", type=float, nargs="+", default=[0.98, 0.5, 0.3, 0.1], help="ratios to try")
    tune.add_argument("--deadline-ms", type=float, default=100.0, help="evaluation deadline")
    tune.add_argument("--rtt-ms", type=float, default=40.0, help="base RTT of the modelled link")
    tune.add_argument("--steps", type=int, default=20000, help="environment steps per ratio")
    tune.add_argument("--duration-s", type=float, default=120.0, help="seconds of each scoring trace")
    tune.add_argument("--out", type=Path, required=True, help="JSON file of the results")
    tune.add_argument("--no-progress", action="store_true", help="hide progress bars")
    tune.set_defaults(handler=run_tune)

    ev = commands.add_parser(
        "eval", help="every strategy over every trace of a folder -> report.json + plots",
        description="Example: edgecloud split eval --bundle B --traces ../shared/data/traces/norway-hsdpa-test "
                    "--deadline-ms 100 --out artifacts/split-eval")
    e = SplitEval()
    ev.add_argument("--bundle", type=Path, default=None, help="bundle with segments, profiles and planners")
    ev.add_argument("--traces", type=Path, default=None, help="folder of trace files (required)")
    ev.add_argument("--deadline-ms", type=float, default=None,
                    help="latency deadline of every request (default: the one the bundle was trained for)")
    ev.add_argument("--downlink-traces", type=Path, default=None,
                    help="downlink trace folder, paired by file name (default: each uplink file carries both "
                         "directions)")
    ev.add_argument("--out", type=Path, required=True, help="report directory")
    ev.add_argument("--strategies", nargs="+", default=None, help="subset of strategies (default: all)")
    ev.add_argument("--duration-s", type=float, default=None, help="replay only the first seconds of each trace")
    ev.add_argument("--max-traces", type=int, default=None, help="use only the first N traces (by name)")
    ev.add_argument("--live", action="store_true", default=None,
                    help="run through the real services over the link testbed (root; see deploy/testbed/README.md): "
                         "the trace replayed by the delay emulation, the edge as an emulated device")
    ev.add_argument("--device-cpus", default=None,
                    help=f"with --live: cores of the emulated device (the edge; default {e.device_cpus})")
    ev.add_argument("--cpu-fraction", type=float, default=None,
                    help="with --live: cap the device with a CFS quota instead (needs root; a quota does not slow "
                         "work shorter than its slice, so the default is the profile's compute-then-hold emulation)")
    ev.add_argument("--device-slowdown", type=float, default=None, metavar="K",
                    help="with --live: hold every device segment K times its CPU time (default: the k the bundle's "
                         "device profile was measured with, `edgecloud profile --pi4`, rescaled to this host's "
                         "speed now by timing the calibration's student again; 1 for a real device's profile)")
    ev.add_argument("--cloud-cpus", default=None, help=f"with --live: cores of the server (default {e.cloud_cpus})")
    ev.add_argument("--data-dir", type=Path, default=None, help="with --live: dataset folder (not for digits)")
    ev.add_argument("--kill-at-s", type=float, default=None,
                    help="with --live: SIGKILL the server this far into every run (no request may be lost)")
    ev.add_argument("--config", type=Path, default=None, metavar="JSON", help=CONFIG_HELP)
    ev.set_defaults(handler=run_eval)


def run_build(args: argparse.Namespace) -> int:
    from edgecloud.commands._offline import setup_logging

    setup_logging()
    from shared.bundle import BundleError, load_manifest
    from shared.datasets import DatasetError, load_dataset, load_for_bundle
    from splitting.build import build_split, teacher_bundle
    from splitting.train import SplitTrainConfig

    try:
        if args.teacher is not None:
            if args.dataset is None:
                raise ValueError("--teacher needs --dataset (the dataset the teacher was trained on)")
            dataset = load_dataset(args.dataset, data_dir=args.data_dir, seed=args.seed, image_size=args.image_size)
            args.bundle = teacher_bundle(args.teacher, args.out, dataset)
        else:
            dataset = load_for_bundle(load_manifest(args.bundle), data_dir=args.data_dir, seed=args.seed)
        cfg = SplitTrainConfig(epochs=args.epochs, max_train_samples=args.max_train_samples or None,
                               augment=args.augment, precision=args.precision, seed=args.seed)
        manifest = build_split(args.bundle, args.out, dataset, cfg=cfg,
                               bottleneck_channels=args.bottleneck_channels or None, progress=not args.no_progress)
    except (DatasetError, BundleError, ValueError) as err:
        print(f"edgecloud split build: {err}", file=sys.stderr)
        return 2
    from splitting.setup import read_accuracy

    report = read_accuracy(args.out, manifest)
    print(f"split segments -> {args.out}; composition max |d logit| "
          f"{max(report['composition_max_abs_diff'].values()):.2e}")
    print("| action | payload bytes | val acc | test acc |\n|---|---:|---:|---:|")
    for row in report["actions"]:
        print(f"| {row['action']} | {row['payload_bytes']} | {100 * row['val_accuracy']:.2f}% | "
              f"{100 * row['test_accuracy']:.2f}% |")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from edgecloud.commands._offline import setup_logging

    setup_logging()
    from shared.bundle import BundleError
    from shared.run_config import run_config_json
    from shared.traces import TraceError
    from splitting.config import TRAIN_FLAGS, resolve_split, split_layers
    from splitting.setup import ARTIFACT_CONFIG, CONFIG_JSON, PlannerSpec, SplitSetup, store_artifact
    from splitting.train_planners import train_planners

    def regime_to_retrain(bundle: Path) -> Any:
        # The bundle's regime, without the folders an earlier training recorded: training records its own.
        return SplitSetup.load(bundle, need_spec=False).regime.override(uplink_traces=(), downlink_traces=())

    try:  # the bundle's regime (its own, or the default for its data), the file, variables and flags over it
        cfg = resolve_split(split_layers(args, TRAIN_FLAGS), bundle_regime=regime_to_retrain)
    except (BundleError, ValueError) as err:
        print(f"edgecloud split train: {err}", file=sys.stderr)
        return 2
    t = cfg.train
    spec = PlannerSpec(cfg.regime, acc_weight=t.acc_weight, miss_penalty=t.miss_penalty)
    downlink = [Path(f) for f in cfg.regime.downlink_traces]
    try:
        spec = train_planners(cfg.bundle, list(t.traces), spec, sac=t.sac(), dqn=t.dqn_config(),
                              progress=not args.no_progress, downlink_folders=downlink or None,
                              greedy_hint=t.greedy_hint, hint_acc_weight=t.hint_acc_weight,
                              select_floor_points=t.select_floor_points, select_every=t.select_every)
    except (BundleError, TraceError, ValueError) as err:
        print(f"edgecloud split train: {err}", file=sys.stderr)
        return 2
    store_artifact(cfg.bundle, ARTIFACT_CONFIG, CONFIG_JSON, run_config_json(cfg, exclude={"eval"}).encode())
    last = spec.training["sac"]["history"][-1] if spec.training["sac"]["history"] else {}
    print(f"planners -> {cfg.bundle}; SAC final alpha {last.get('alpha', float('nan')):.4f}, "
          f"entropy {last.get('entropy', float('nan')):.3f} (target {spec.training['sac']['target_entropy']:.3f}); "
          f"training traces' mean {spec.train_mean_mbit_s:.3f} Mbit/s")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from functools import cache

    from shared.bundle import BundleError
    from shared.run_config import write_run_config
    from shared.traces import TraceError, load_traces, pair_traces
    from splitting.config import EVAL_FLAGS, resolve_split, split_layers
    from splitting.report import write_report
    from splitting.setup import SplitSetup

    load = cache(lambda bundle: SplitSetup.load(bundle, need_spec=False))
    try:
        cfg = resolve_split(split_layers(args, EVAL_FLAGS), bundle_regime=lambda bundle: load(bundle).regime)
        e = cfg.eval
        if e.traces is None:
            raise ValueError("split eval needs the traces to replay: --traces, eval.traces in --config or "
                             "EDGECLOUD_SPLIT__EVAL__TRACES")
        setup = load(cfg.bundle)
        # The deadline is the evaluation's own (report.json's deadline_ms); the rest of the regime is the
        # conditions evaluated under, the bundle's unless a layer changed them.
        regime = cfg.regime.override(deadline_ms=setup.regime.deadline_ms)
        if regime != setup.regime:
            setup = setup.with_regime(regime)
        traces = load_traces(e.traces)[: e.max_traces]
        downlink = (pair_traces(traces, load_traces(e.downlink_traces)) if e.downlink_traces is not None
                    else None)
        names = setup.resolve_strategies(e.strategies)  # default: every strategy the bundle has
        write_run_config(cfg, args.out, exclude={"train"})
        if e.live:
            return _run_live(cfg, args.out, setup, traces, names)
        report = write_report(setup, traces, names, deadline_ms=cfg.regime.deadline_ms, out=args.out,
                              duration_s=e.duration_s, traces_dir=e.traces, downlink=downlink,
                              downlink_dir=e.downlink_traces)
    except (BundleError, TraceError, ValueError) as err:
        print(f"edgecloud split eval: {err}", file=sys.stderr)
        return 2
    rows = ["| strategy | mean ms | p95 ms | miss rate | accuracy | bytes/request |", "|---|---:|---:|---:|---:|---:|"]
    for name, s in report["strategies"].items():
        rows.append(f"| {name} | {s['mean_latency_ms']:.1f} | {s['p95_latency_ms']:.1f} | "
                    f"{100 * s['deadline_miss_rate']:.1f}% | {100 * s['accuracy']:.2f}% | "
                    f"{s['bytes_per_request']:.0f} |")
    print("\n".join(rows))
    print(f"report: {args.out / 'report.json'}  plots: latency_over_time.png, latency_cdf.png")
    print(json.dumps({"traces": len(traces), "deadline_ms": cfg.regime.deadline_ms}))
    return 0


def _run_live(cfg: Any, out: Path, setup: Any, traces: list[Any], names: list[str]) -> int:
    from splitting.live import live_eval
    from testbed.device import DeviceEmulation, EmulationError
    from testbed.netns import TestbedError, parse_cpus

    e = cfg.eval
    device = DeviceEmulation(cpus=tuple(sorted(parse_cpus(e.device_cpus))), cpu_fraction=e.cpu_fraction)
    if e.device_slowdown is not None:
        slowdown, calibration = e.device_slowdown, {"recalibrated": False, "k": e.device_slowdown}
    else:
        from splitting.profile import live_slowdown

        slowdown, calibration = live_slowdown(setup.bundle, setup.device.emulation)
        if calibration["recalibrated"]:
            print(f"device: k = {slowdown:.2f} on this host now (the profile's {calibration['profile_k']:.2f} x its "
                  f"student's {calibration['profile_student_host_ms']:.3f} ms / {calibration['student_host_ms']:.3f} "
                  "ms here now)")
    try:
        report = live_eval(setup, traces, names, trace_dir=e.traces, deadline_ms=cfg.regime.deadline_ms,
                           duration_s=e.duration_s or 60.0, out=out, device=device, slowdown=slowdown,
                           cloud_cpus=parse_cpus(e.cloud_cpus) if e.cloud_cpus else None,
                           data_dir=e.data_dir, kill_at_s=e.kill_at_s, calibration=calibration)
    except (TestbedError, EmulationError) as err:
        print(f"edgecloud split eval --live: {err}", file=sys.stderr)
        return 2
    print(f"device: {report['device']}; link: {report['link']['delay']}")
    print("| strategy | trace | live mean ms | env mean ms | live/env | live acc | lost | fallbacks |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, per_trace in report["strategies"].items():
        for trace, r in per_trace.items():
            live, env = r["live"], r["environment"]
            print(f"| {name} | {trace} | {live['mean_latency_ms']:.1f} | {env['mean_latency_ms']:.1f} | "
                  f"{r['live_over_environment_mean_latency']:.3f} | {100 * live['accuracy']:.2f}% | {live['lost']} | "
                  f"{100 * live['fallback_rate']:.0f}% |")
    print(f"report: {out / 'report_live.json'}")
    return 0


def run_tune(args: argparse.Namespace) -> int:
    from edgecloud.commands._offline import setup_logging

    setup_logging()
    from shared.bundle import BundleError
    from shared.traces import TraceError, load_traces
    from splitting.latency import LinkModel
    from splitting.sac import SacConfig
    from splitting.setup import PlannerSpec
    from splitting.train_planners import tune_target_entropy

    spec = PlannerSpec(link=LinkModel(rtt_ms=args.rtt_ms), deadline_ms=args.deadline_ms)
    try:
        scoring = load_traces(args.tune_traces, purpose="train")[::4]
        records = tune_target_entropy(args.bundle, args.traces, spec, args.ratios,
                                      sac=SacConfig(total_steps=args.steps), tune_traces=scoring,
                                      duration_s=args.duration_s, progress=not args.no_progress)
    except (BundleError, TraceError, ValueError) as err:
        print(f"edgecloud split tune: {err}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(records, indent=2) + "\n")
    print("| ratio | target H | final alpha | final H | mean reward | mean ms | miss | accuracy |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in records:
        print(f"| {r['target_entropy_ratio']} | {r['target_entropy']:.2f} | {r['final_alpha']:.3g} | "
              f"{r['final_entropy']:.2f} | {r['mean_reward']:.3f} | {r['mean_latency_ms']:.1f} | "
              f"{100 * r['deadline_miss_rate']:.1f}% | {100 * r['accuracy']:.2f}% |")
    return 0
