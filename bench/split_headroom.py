"""How much faster than Neurosurgeon can any split planner be, at the accuracy the target demands?

Neurosurgeon fixes one (partition, bits) for the training traces' mean bandwidth. An adaptive planner
(SAC, Edgent, anything) gains only where the best action changes with the link of the moment. This
bench bounds that gain from above, in the cost model the environment and every strategy use
(`splitting.latency.CostModel`: the bundle's profiles, the uplink and downlink traces' real
throughput over each transfer, fallbacks at the deadline), over deadlines, link RTTs and model
sizes, and puts every strategy's own numbers beside it. Per row (one deadline, RTT and model scale):

- each strategy run through the environment (`splitting.evaluate`: serial links with the backlog a
  stall leaves, the regime's request period, request n carrying test sample n): Neurosurgeon,
  Edgent, server-only JPEG (the image file as the device holds it), server-only raw pixels,
  device-only, the hindsight oracle (best reward per request, knowing the link), and SAC/DQN when the
  bundle has them; each with its mean latency, accuracy (the expected, validation accuracy of the
  exit that answered, as the bound counts it; the test split's beside it) and deadline-miss rate;
- `bound`: a lower bound on the mean latency of *any* planner, clairvoyant and randomised included,
  whose mean accuracy is at least `floor` = the teacher's validation accuracy less `--accuracy-slack`
  (1 point). It is the Lagrangian dual of "minimise mean latency subject to mean accuracy >= floor"
  over the per-request choices: for every lambda >= 0,
      mean_r min_a (latency[r, a] - lambda * accuracy[r, a]) + lambda * floor  <=  any feasible mean,
  so its largest value (found by bisection on lambda) is still a bound (weak duality);
- `headroom` = 1 - bound / Neurosurgeon's mean latency; the issue's target needs >= 0.25.

Why that floor (headroom at equal accuracy). A latency ratio means little when the two sides answer
at different accuracies: where Neurosurgeon's static offload times out it is charged the deadline
and answers from exit 1 (26% on MNIST), and a bound free to answer as badly looks close to it. The
floor is the teacher's accuracy less one point, the accuracy the target asks of SAC, so the headroom
says how much faster than Neurosurgeon a planner that meets the target could possibly be. Not
Neurosurgeon's realised accuracy: each of its timeouts would lower the bar the bound must clear, so
the headroom would grow the worse Neurosurgeon did. Where Neurosurgeon is below the floor (its row
shows its accuracy and miss rate), the headroom is conservative: the bound pays for accuracy that
Neurosurgeon does not deliver.

The bound's grid holds every valid action's latency and accuracy for every request on idle links.
The environment's links keep a backlog, and relaxing it keeps the bound: a transfer that starts later
ends no earlier, so behind a backlog an action's latency can only grow, and when the wait makes it
fall back, its answer (device exit p, or exit 1, at the deadline) is dominated by device-only at that
exit (same accuracy, no more latency). Every outcome a planner can realise is dominated request by
request by a grid point. tests/splitting/test_headroom.py checks it by brute force over every action
sequence of short runs of the real environment, on a trace with zero-throughput stretches.

Every request is used on traces with stalls (the default `--stride` picks 1 there: a stall of a few
100 ms samples falls between every 8th request); `--stride N` samples every Nth request of long
stall-free traces (the strategies still run every request; only the sampled ones are counted).
The regime (period, deadline, RTT, overheads, prior, server-only payload) is the bundle's, flags
override it. The model scale multiplies every profiled segment time (heads, quantisation, tails and
the teacher), not the serving overheads or the JPEG decode: a network that many times heavier on the
same device and server, with the same bottleneck payloads.

    .venv/bin/python bench/split_headroom.py --bundle artifacts/cifar10-split
    .venv/bin/python bench/split_headroom.py --bundle artifacts/cifar10-split --deadlines-ms 100 200 400 \\
        --rtts-ms 20 60 --out headroom.json
    .venv/bin/python bench/split_headroom.py --bundle artifacts/mnist-split \\
        --traces ../shared/data/traces/norway-hsdpa-test --model-scales 1 8 64 \\
        --train-traces ../shared/data/traces/fcc ../shared/data/traces/norway-hsdpa
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from shared.traces import Trace, load_traces, pair_traces
from splitting.env import SplitEnv
from splitting.evaluate import Run, eval_env, evaluate_strategies
from splitting.profile import JPEG_DECODE_SEGMENT, REQUEST_SEGMENT, Profile, SegmentTiming
from splitting.regime import add_regime_arguments, regime_overrides
from splitting.setup import ARTIFACT_SPEC, SplitSetup, SplitStrategy
from splitting.train_planners import mean_mbit_s, training_traces

TRACE_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "traces"
TARGET = 0.25
STRIDE_WITHOUT_STALLS = 8
"""Default sampling of stall-free traces (one request every 2 s at 0.25 s)."""
SIDES: tuple[str, ...] = (SplitStrategy.NEUROSURGEON, SplitStrategy.EDGENT, SplitStrategy.SERVER_ONLY_JPEG,
                          SplitStrategy.SERVER_ONLY_RAW, SplitStrategy.DEVICE_ONLY, SplitStrategy.ORACLE)


@dataclass(frozen=True)
class Grid:
    latency_ms: np.ndarray  # (R, A): each request's latency under each valid action, on idle links
    accuracy: np.ndarray    # (R, A): validation accuracy of the exit that answers
    reward: np.ndarray      # (R, A): the environment's reward (SplitEnv.reward)


def scaled(profile: Profile, factor: float) -> Profile:
    """`profile` with every segment but the serving overhead and the JPEG decode `factor` times slower."""
    fixed = (REQUEST_SEGMENT, JPEG_DECODE_SEGMENT)
    segments = {name: t if name in fixed else
                SegmentTiming(t.median_ms * factor, t.p90_ms * factor, t.mean_ms * factor, t.runs)
                for name, t in profile.segments.items()}
    return Profile(role=profile.role, where=f"{profile.where}, segments x{factor:g}", segments=segments)


def request_steps(trace: Trace, period_s: float) -> int:
    """Requests `splitting.evaluate.run_trace` makes on one pass of `trace`."""
    return max(1, math.floor(trace.duration_s / period_s))


def cost_grid(env: SplitEnv, *, stride: int, valid: np.ndarray) -> Grid:
    """Every valid action's cost and reward for every `stride`-th request of every trace, each on idle
    links (no backlog: the relaxation the module docstring explains), at the environment's deadline,
    RTT and load 1, request k carrying test sample k as in `run_trace`."""
    lat, acc, rew = [], [], []
    for up, down in zip(env.traces, env.downlink, strict=True):
        for k in range(0, request_steps(up, env.cfg.period_s), stride):
            costs = [env.model.cost(int(i), load=1.0, start_s=k * env.cfg.period_s, trace=up, downlink=down,
                                    rtt_ms=env.rtt_ms, deadline_ms=env.deadline_ms, sample=k) for i in valid]
            pairs = list(zip(valid, costs, strict=True))
            lat.append([c.latency_ms for c in costs])
            acc.append([env.val_accuracy[int(i) if c.fallback is None else c.fallback] for i, c in pairs])
            rew.append([env.reward(int(i), c) for i, c in pairs])
    return Grid(np.asarray(lat), np.asarray(acc), np.asarray(rew))


def dual_bound(grid: Grid, floor: float) -> float:
    """The largest value of the Lagrangian dual (module docstring): a lower bound on the feasible mean latency.

    g(lambda) is concave and piecewise linear, with slope floor - (mean accuracy of the per-request
    minimisers), so its maximum is where that slope changes sign: found by bisection on lambda.
    """
    def minimisers_accuracy(lam: float) -> float:
        pick = np.argmin(grid.latency_ms - lam * grid.accuracy, axis=1)
        return float(grid.accuracy[np.arange(len(pick)), pick].mean())

    def g(lam: float) -> float:
        return float(np.mean(np.min(grid.latency_ms - lam * grid.accuracy, axis=1)) + lam * floor)

    if minimisers_accuracy(0.0) >= floor:
        return g(0.0)  # the fastest action of every request already meets the floor
    lo, hi = 0.0, 1e9  # ms per unit of accuracy: far beyond any latency difference
    if minimisers_accuracy(hi) < floor:
        return float("inf")  # no choice reaches the floor
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if minimisers_accuracy(mid) < floor:
            lo = mid
        else:
            hi = mid
    return max(g(lo), g(hi))


def side(runs: list[Run], val_accuracy: np.ndarray, *, stride: int) -> dict[str, float]:
    """One strategy's numbers over every `stride`-th request of its runs (the requests the bound counts)."""
    take = [(r, k) for r in runs for k in range(0, len(r.latency_ms), stride)]
    return {"mean_latency_ms": float(np.mean([r.latency_ms[k] for r, k in take])),
            "accuracy": float(np.mean([val_accuracy[r.answered[k]] for r, k in take])),
            "test_accuracy": float(np.mean([r.correct[k] for r, k in take])),
            "deadline_miss_rate": float(np.mean([r.miss[k] for r, k in take])),
            "fallback_rate": float(np.mean([r.fallback[k] for r, k in take])),
            "requests": len(take)}


def headroom_row(setup: SplitSetup, traces: list[Trace], downlink: list[Trace] | None, names: list[str], *,
                 stride: int, slack: float) -> dict[str, Any]:
    """Every side of one row (the setup's regime and profiles), the bound and the headroom."""
    runs = evaluate_strategies(setup, traces, names, downlink=downlink)
    sides = {name: side([r for r in runs if r.strategy == name], setup.val_accuracy, stride=stride)
             for name in names}
    grid = cost_grid(eval_env(setup, traces, downlink=downlink), stride=stride,
                     valid=np.flatnonzero(setup.space.valid))
    teacher = float(setup.val_accuracy[setup.space.device_only(setup.space.n_stages)])
    floor = teacher - slack
    bound = dual_bound(grid, floor)
    ns = sides[SplitStrategy.NEUROSURGEON]["mean_latency_ms"]
    ns_index = setup.planner(SplitStrategy.NEUROSURGEON).index  # type: ignore[attr-defined]
    return {"deadline_ms": setup.regime.deadline_ms, "rtt_ms": setup.regime.rtt_ms,
            "neurosurgeon_action": setup.space.actions[ns_index].label(setup.space.n_stages),
            "teacher_accuracy": teacher, "floor_accuracy": floor, "bound_ms": bound,
            "headroom": 1.0 - bound / ns, "reachable": bool(1.0 - bound / ns >= TARGET),
            # Below the floor, Neurosurgeon is faster than it could be at the target's accuracy: the
            # headroom against it is then conservative (it may even be negative).
            "neurosurgeon_below_floor": bool(sides[SplitStrategy.NEUROSURGEON]["accuracy"] < floor),
            "requests": len(grid.latency_ms), "strategies": sides}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="bundle with split segments and profiles")
    parser.add_argument("--traces", type=Path, default=TRACE_ROOT / "cellular-up-test",
                        help="uplink trace folder to report on (default: cellular-up-test)")
    parser.add_argument("--downlink-traces", type=Path, default=None,
                        help="downlink trace folder, paired by file name or else by order (default: each uplink "
                             "trace file carries the answers too, on a link of its own)")
    parser.add_argument("--train-traces", type=Path, nargs="+", default=[TRACE_ROOT / "cellular-up"],
                        help="where Neurosurgeon's mean bandwidth comes from when the bundle has no trained "
                             "planners (else the planners' own; default: cellular-up)")
    parser.add_argument("--deadlines-ms", "--deadline-ms", dest="deadlines_ms", type=float, nargs="+", default=None,
                        help="deadlines of the rows (default: the bundle's regime)")
    parser.add_argument("--rtts-ms", type=float, nargs="+", default=None,
                        help="link round trips of the rows (default: the bundle's regime)")
    parser.add_argument("--model-scales", type=float, nargs="+", default=[1.0],
                        help="factors on every profiled segment time, device and server (%(default)s)")
    parser.add_argument("--accuracy-slack", type=float, default=0.01,
                        help="accuracy below the teacher's a planner may lose: the bound's floor "
                             "(%(default)s = 1 point)")
    parser.add_argument("--stride", type=int, default=None,
                        help="count every Nth request (default: 1 on traces with stalls, else "
                             f"{STRIDE_WITHOUT_STALLS})")
    parser.add_argument("--max-traces", type=int, default=None, help="use only the first N traces (by name)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    add_regime_arguments(parser, exclude=("deadline_ms", "rtt_ms", "downlink_traces", "hedge"))  # hedge: the bundle's
    args = parser.parse_args(argv)

    setup = SplitSetup.load(args.bundle, need_spec=False)
    regime = setup.regime.override(**regime_overrides(args))
    traces = load_traces(args.traces, purpose="test")[: args.max_traces]
    downlink = None
    if args.downlink_traces is not None:
        downlink = pair_traces(traces, load_traces(args.downlink_traces, purpose="test"))
    stalls = any(t.stall_share() > 0 for t in traces + (downlink or []))
    stride = args.stride or (1 if stalls else STRIDE_WITHOUT_STALLS)
    if stalls and stride > 1:
        print(f"note: these traces stall; counting every {stride}th request misses short stalls", file=sys.stderr)
    # Neurosurgeon plans for the training traces' mean bandwidth, as `split eval` builds it.
    trained = ARTIFACT_SPEC in setup.manifest.artifacts
    plan_mbit_s = setup.spec.train_mean_mbit_s if trained else mean_mbit_s(training_traces(args.train_traces))
    names = [*SIDES, *(n for n in (SplitStrategy.SAC, SplitStrategy.DQN) if n in setup.policies),
             *([SplitStrategy.HEDGE] if setup.space.hedge else []), SplitStrategy.GREEDY]
    deadlines = args.deadlines_ms or [regime.deadline_ms]
    rtts = args.rtts_ms or [regime.rtt_ms]
    counted = "every request" if stride == 1 else f"every {stride}th request"
    down = "the same files" if downlink is None else args.downlink_traces.name
    print(f"{args.bundle}: {setup.space.n_valid} actions, {len(traces)} traces of {args.traces.name} (downlink: "
          f"{down}), {counted} at {regime.period_s} s; the planners' server-only uploads {regime.server_payload}; "
          f"JPEG files {setup.input_bytes.mean:.0f} B ({setup.input_bytes.source}); Neurosurgeon planned for "
          f"{plan_mbit_s:.3f} Mbit/s")
    print("| deadline ms | RTT ms | scale | strategy | mean ms | accuracy | test acc. | miss rate | fallbacks | "
          "vs Neurosurgeon |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---|")
    rows = []
    for scale in args.model_scales:
        for deadline in deadlines:
            for rtt in rtts:
                spec = setup.spec.with_regime(regime.override(deadline_ms=deadline, rtt_ms=rtt))
                spec.train_mean_mbit_s = plan_mbit_s
                row_setup = replace(setup, spec=spec, device=scaled(setup.device, scale),
                                    server=scaled(setup.server, scale))
                row = {"model_scale": scale, **headroom_row(row_setup, traces, downlink, names, stride=stride,
                                                            slack=args.accuracy_slack)}
                rows.append(row)
                _print_row(row)
    if args.out is not None:
        args.out.write_text(json.dumps({"bundle": str(args.bundle), "traces": str(args.traces), "stride": stride,
                                        "regime": regime.to_json(), "rows": rows}, indent=2) + "\n")
    return 0


def _print_row(row: dict[str, Any]) -> None:
    head = f"| {row['deadline_ms']:g} | {row['rtt_ms']:g} | {row['model_scale']:g}"
    ns = row["strategies"][SplitStrategy.NEUROSURGEON]["mean_latency_ms"]
    for name, s in row["strategies"].items():
        label = f"{name} ({row['neurosurgeon_action']})" if name == SplitStrategy.NEUROSURGEON else name
        print(f"{head} | {label} | {s['mean_latency_ms']:.1f} | {100 * s['accuracy']:.2f}% | "
              f"{100 * s['test_accuracy']:.2f}% | {100 * s['deadline_miss_rate']:.1f}% | "
              f"{100 * s['fallback_rate']:.1f}% | {100 * (1 - s['mean_latency_ms'] / ns):+.1f}% |")
    print(f"{head} | **bound** | {row['bound_ms']:.1f} | >= {100 * row['floor_accuracy']:.2f}% | | | | "
          f"**{100 * row['headroom']:.1f}%** (25% reachable: {'yes' if row['reachable'] else 'no'}"
          f"{'; Neurosurgeon below the floor' if row['neurosurgeon_below_floor'] else ''}) |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
