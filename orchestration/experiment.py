"""One simulated comparison: every policy through the same scenario, seeds and traces; report.json.

    report = simulate(SimSpec(bundle=Path("artifacts/bundle"), users=8, traces=Path(".../norway-hsdpa-test"),
                              accuracy_req=0.975), out=Path("artifacts/orchestrate/sim8"))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestration.policies import BASELINES, LEARNERS, make_policy, static_names
from orchestration.profiles import Profiles, profiles_from_manifest
from orchestration.report import (
    Answered,
    comparisons,
    markdown_table,
    plot_cdf,
    plot_choices,
    summarize,
    write_report,
)
from orchestration.simulator import SCENARIOS, NetworkConfig, RequestRecord, Simulator
from shared.names import Tier
from shared.traces import Trace, load_traces


@dataclass
class SimSpec:
    """What `edgecloud orchestrate sim` runs."""

    bundle: Path
    """bundle with a variant family (`edgecloud variants`)."""
    users: int
    """end devices."""
    traces: Path
    """folder of bandwidth traces, one per device in turn (report on norway-hsdpa-test/)."""
    accuracy_req: float
    """every request's accuracy requirement in [0, 1]."""
    scenario: str = "change"
    """steady (all users, full bandwidth) or change (users join at 1/3, bandwidth drops at 2/3)."""
    duration_s: float = 90.0
    """seconds of arrivals per run."""
    rate_per_user: float = 4.0
    """requests per second per active device."""
    arrivals: str = "poisson"
    """poisson or bursty."""
    seeds: int = 3
    """independent runs per policy (trace offsets, arrivals, noise); their requests are pooled."""
    policies: list[str] = field(default_factory=lambda: [*LEARNERS, *BASELINES, "static"])
    """policy names; `static` expands to every (tier, variant) pair meeting the requirement."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """the links between the tiers."""
    end_cpu_share: float | None = None
    """emulate end devices with this share of a host core instead of the profile's (a device-speed sweep)."""
    request_bytes: int | None = None
    """bytes of one request on the wire instead of the profile's (an input-size sweep: a larger image
    costs more to send, nothing else changes)."""

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {sorted(SCENARIOS)}, got {self.scenario!r}")
        if self.request_bytes is not None and self.request_bytes < 1:
            raise ValueError(f"request_bytes must be >= 1, got {self.request_bytes}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")


def expand(names: Sequence[str], profiles: Profiles, accuracy_req: float) -> list[str]:
    out: list[str] = []
    for name in names:
        out.extend(static_names(profiles, accuracy_req) if name == "static" else [name])
    return list(dict.fromkeys(out))


def to_answered(records: Sequence[RequestRecord]) -> list[Answered]:
    return [Answered(arrival_s=r.arrival_s, response_ms=r.response_ms, tier=r.tier, variant=r.variant,
                     correct=r.correct, reward=r.reward, user=r.user) for r in records]


def simulators(spec: SimSpec, *, profiles: Profiles | None = None,
               traces: Sequence[Trace] | None = None) -> list[Simulator]:
    """One simulator per seed of `spec`: the bundle's profile (or `profiles`) with the spec's device
    share and request size, the spec's scenario and network, the traces of `spec.traces` (or `traces`)."""
    profiles = profiles if profiles is not None else profiles_from_manifest(spec.bundle)
    if spec.end_cpu_share is not None:
        profiles = profiles.with_tier_share(Tier.END, spec.end_cpu_share)
    if spec.request_bytes is not None:
        profiles = dataclasses.replace(profiles, request_bytes=spec.request_bytes)
    traces = list(traces) if traces is not None else load_traces(spec.traces)
    return [Simulator(profiles, SCENARIOS[spec.scenario](spec.users, duration_s=spec.duration_s,
                                                         rate_per_user=spec.rate_per_user, arrivals=spec.arrivals,
                                                         accuracy_req=spec.accuracy_req, seed=seed),
                      traces, network=spec.network)
            for seed in range(spec.seeds)]


def simulate(spec: SimSpec, *, out: Path | None = None, profiles: Profiles | None = None,
             traces: Sequence[Trace] | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every policy over `spec.seeds` seeds; write report.json (+ table and plots) under `out`."""
    sims = simulators(spec, profiles=profiles, traces=traces)
    profiles = sims[0].profiles
    names = expand(spec.policies, profiles, spec.accuracy_req)
    policies: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[Answered]] = {}
    change_times: list[float] = []
    for name in names:
        make_policy(name, profiles)  # an unknown name fails before any run
    for name in names:
        pooled: list[Answered] = []
        for seed, sim in enumerate(sims):
            change_times = sim.scenario.change_times
            records = sim.run(lambda user, n=name, s=seed: make_policy(n, profiles, seed=1000 * s + user))
            # Seeds run one after another on the time axis, so pooled convergence reads one long run.
            pooled.extend(to_answered(records))
            if progress is not None:
                progress(f"{name} seed {seed}: {len(records)} requests")
        policies[name] = summarize(pooled, change_times=change_times)
        # Convergence is judged within one run (seed 0): pooling seeds would splice several learners' starts.
        first = summarize(first_run(pooled), change_times=change_times)
        policies[name].update({k: first[k] for k in ("converged_after_requests", "reconverged")})
        runs[name] = pooled
    teacher = profiles.variants[profiles.teacher].accuracy
    report: dict[str, Any] = {
        "mode": "sim", "bundle": str(spec.bundle), "users": spec.users, "traces": str(spec.traces),
        "accuracy_req": spec.accuracy_req, "scenario": spec.scenario, "duration_s": spec.duration_s,
        "rate_per_user": spec.rate_per_user, "arrivals": spec.arrivals, "seeds": spec.seeds,
        "change_times_s": change_times, "network": dataclasses.asdict(spec.network),
        "end_cpu_share": profiles.tiers[Tier.END].cpu_share, "request_bytes": profiles.request_bytes,
        "variants": {n: {"accuracy": v.accuracy, "latency_ms": {t.value: ms for t, ms in v.latency_ms.items()}}
                     for n, v in profiles.variants.items()},
        "policies": policies,
        "comparison": comparisons(policies, teacher_accuracy=teacher),
    }
    if out is not None:
        write_outputs(out, report, runs, change_times=change_times)
    return report


def first_run(pooled: list[Answered]) -> list[Answered]:
    """Seed 0's records: they come first in `pooled`, sorted by arrival, until the time axis restarts."""
    n0 = next((i for i in range(1, len(pooled)) if pooled[i].arrival_s < pooled[i - 1].arrival_s), len(pooled))
    return pooled[:n0]


def write_outputs(out: Path, report: dict[str, Any], runs: dict[str, list[Answered]], *,
                  change_times: Sequence[float]) -> None:
    out = Path(out)
    write_report(out, report)
    best = report["comparison"].get("best_static")
    keep = [best] if best else []
    (out / "report.md").write_text(markdown_table(report["policies"], keep=keep) + "\n")
    shown = {k: v for k, v in runs.items() if not k.startswith("static:") or k in keep}
    plot_cdf(shown, out / "response_cdf.png", title=f"{report['mode']}: response time, {report['users']} users")
    for name in ("qlearning", "linucb", "greedy"):
        if name in runs:
            first = first_run(runs[name])
            plot_choices(first, out / f"choices_{name}.png", title=f"{name}: tier over time",
                         change_times=change_times)
