"""Accuracy against latency of split planners over one trace folder: where each lands, and which one a
rule that never reads the test traces would pick.

Rows: the `greedy` baseline at every `--weights` value (it needs no training: the weight is its only
setting), and the SAC planner (or `--strategy`) of every bundle in `--planners` (for example copies
trained with other seeds or accuracy weights). Each row reports the mean latency, the expected
accuracy (the validation accuracy of whatever answered, which the reward sees) and the accuracy on
the stream's test images. The pick is the lowest mean latency whose expected accuracy stays at or
above the floor (the teacher's validation accuracy less `--floor-points`), the rule docs/results.md
uses to choose weights on the training traces, never on a test folder.

    .venv/bin/python bench/split_frontier.py --bundle models/cifar10-split \
        --traces ../shared/data/traces/cellular-up --weights 2.5 3 3.25 3.5 20
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from split_headroom import side  # bench/ holds scripts, not a package

from shared.traces import Trace, load_traces
from splitting.baselines import Greedy, Planner
from splitting.evaluate import eval_env, run_trace
from splitting.select import accuracy_floor, meets_floor
from splitting.setup import SplitSetup


@dataclass
class Point:
    """One planner over every trace of the folder."""

    label: str
    mean_latency_ms: float
    expected_accuracy: float
    test_accuracy: float
    miss_rate: float
    requests: int


def measure(setup: SplitSetup, traces: list[Trace], planner: Planner, label: str) -> Point:
    env = eval_env(setup, traces)
    runs = []
    for i in range(len(traces)):
        env.reset(seed=i)  # the estimator noise `split eval` gives trace i
        runs.append(run_trace(env, planner, i))
    s = side(runs, setup.val_accuracy, stride=1)  # the headroom bench's numbers, every request
    return Point(label, s["mean_latency_ms"], s["accuracy"], s["test_accuracy"], s["deadline_miss_rate"],
                 int(s["requests"]))


def greedy_points(setup: SplitSetup, traces: list[Trace], weights: list[float]) -> list[Point]:
    model = eval_env(setup, traces).model
    return [measure(setup, traces, Greedy(model, setup.val_accuracy, prior_mbit_s=setup.spec.state.prior_mbit_s,
                                          acc_weight=w, miss_penalty=setup.spec.miss_penalty), f"greedy w={w:g}")
            for w in weights]


def planner_points(bundles: list[Path], traces: list[Trace], strategy: str) -> list[Point]:
    points = []
    for bundle in bundles:
        setup = SplitSetup.load(bundle, need_spec=False)
        env = eval_env(setup, traces)
        points.append(measure(setup, traces, setup.planner(strategy, env.model), f"{strategy} {bundle}"))
    return points


def pick(points: list[Point], floor: float) -> Point | None:
    """The lowest mean latency at or above the expected-accuracy floor."""
    above = [p for p in points if meets_floor(p.expected_accuracy, floor)]
    return min(above, key=lambda p: p.mean_latency_ms) if above else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True, help="split bundle (profiles, accuracy, planner spec)")
    ap.add_argument("--traces", type=Path, required=True, help="trace folder (choose on a training one)")
    ap.add_argument("--weights", type=float, nargs="*", default=[], help="greedy's accuracy weights to try")
    ap.add_argument("--planners", type=Path, nargs="*", default=[], help="bundles whose learned planner to add")
    ap.add_argument("--strategy", default="sac", help="the learned planner of --planners (sac)")
    ap.add_argument("--floor-points", type=float, default=1.0, help="floor: teacher's validation accuracy less this")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    if not args.weights and not args.planners:
        ap.error("nothing to measure: give --weights and/or --planners")
    setup = SplitSetup.load(args.bundle, need_spec=False)
    traces = load_traces(args.traces)
    floor = accuracy_floor(setup, args.floor_points)
    teacher = floor + args.floor_points / 100.0
    points = greedy_points(setup, traces, args.weights) + planner_points(args.planners, traces, args.strategy)
    chosen = pick(points, floor)
    print(f"{args.traces.name}: {len(traces)} traces, deadline {setup.regime.deadline_ms:g} ms; floor "
          f"{100 * floor:.2f}% expected (teacher {100 * teacher:.2f}% validation)")
    print("| planner | mean ms | expected acc. | test acc. | miss rate | |")
    print("|---|---:|---:|---:|---:|---|")
    for p in points:
        mark = "picked" if p is chosen else ("" if meets_floor(p.expected_accuracy, floor) else "below floor")
        print(f"| {p.label} | {p.mean_latency_ms:.1f} | {100 * p.expected_accuracy:.2f}% | "
              f"{100 * p.test_accuracy:.2f}% | {100 * p.miss_rate:.1f}% | {mark} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"floor": floor, "points": [asdict(p) for p in points],
                                         "picked": chosen.label if chosen else None}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
