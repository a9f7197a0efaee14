"""Parts 2 and 3 of `edgecloud demo`: split inference and orchestration, simulated over real cellular uplinks.

Both run from pretrained bundles in the repository over the two embedded test traces
(`data/traces/cellular-up-test`), in seconds, with the same code as `edgecloud split eval` and
`edgecloud orchestrate sim` (whose reports and plots they write):

- split inference (Niu et al.): every strategy the split bundle has, SAC against device-only, the
  server-only JPEG and raw uploads, Neurosurgeon, Edgent and the hindsight oracle, at the deadline the
  planner was trained for, on an emulated Raspberry Pi 4;
- orchestration (Shahhosseini et al.): 8 users, each request with its own accuracy requirement
  (three levels that switch per user), the online learners against the best static mapping, greedy
  and the myopic oracle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecloud.demo import REPO, DemoError, verified_bundle

TRACES = REPO / "data" / "traces" / "cellular-up-test"
ORCHESTRATION_USERS = 8
REQUIREMENT_OFFSETS: tuple[float, ...] = (-0.10, -0.03, -0.009)
"""Requirement levels as offsets from the teacher's accuracy: a low one, a middle one, and the paper's
"< 0.9 points of accuracy loss" (Shahhosseini et al.)."""


@dataclass(frozen=True)
class SimResult:
    """A part's report (as written to report.json), its table for the terminal and where its plots are."""

    report: dict[str, Any]
    table: str
    plots: list[Path]


def run_split(bundle: Path, out: Path, *, traces: Path = TRACES) -> SimResult:
    """Part 2: `split eval` of every strategy of the split bundle over the embedded traces."""
    from shared.traces import load_traces
    from splitting.report import write_report
    from splitting.setup import SplitSetup

    verified_bundle(bundle)
    setup = SplitSetup.load(bundle)
    if not setup.policies:
        raise DemoError(f"{bundle}: no trained planner; it is part of the repository (models/), see its README")
    names = setup.resolve_strategies(None)
    report = write_report(setup, load_traces(traces), names, out=out, duration_s=None, traces_dir=traces)
    rows = ["| strategy | mean (ms) | p95 (ms) | deadline missed | accuracy | bytes / request |",
            "|---|---:|---:|---:|---:|---:|"]
    for name, s in report["strategies"].items():
        rows.append(f"| {name} | {s['mean_latency_ms']:.1f} | {s['p95_latency_ms']:.1f} | "
                    f"{100 * s['deadline_miss_rate']:.1f}% | {100 * s['accuracy']:.2f}% | "
                    f"{s['bytes_per_request']:.0f} |")
    rows.append(f"\ndeadline {report['deadline_ms']:.0f} ms; device: {report['device_profile']}")
    return SimResult(report, "\n".join(rows), [out / "latency_over_time.png", out / "latency_cdf.png"])


def run_orchestration(bundle: Path, out: Path, *, traces: Path = TRACES, users: int = ORCHESTRATION_USERS,
                      seeds: int = 2) -> SimResult:
    """Part 3: `orchestrate sim` with `users` devices, mixed and switching requirements, over the traces."""
    from orchestration.experiment import SimSpec, simulate
    from orchestration.profiles import profiles_from_manifest
    from orchestration.report import markdown_table
    from orchestration.scenario import RequirementMix, resolve_levels

    verified_bundle(bundle)
    profiles = profiles_from_manifest(bundle)
    levels = resolve_levels(REQUIREMENT_OFFSETS, profiles.variants[profiles.teacher].accuracy)
    spec = SimSpec(bundle=bundle, users=users, traces=traces, requirements=RequirementMix(levels=levels),
                   seeds=seeds, policies=["qlearning", "linucb", "greedy", "myopic-oracle", "all-end", "all-edge",
                                          "all-cloud", "static", "static-map"])
    report = simulate(spec, out=out)
    keep = [report["comparison"]["best_static"]] if report["comparison"].get("best_static") else []
    plots = sorted(out.glob("*.png"))
    return SimResult(report, markdown_table(report["policies"], keep=keep), plots)
