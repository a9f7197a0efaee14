"""One simulated comparison: every policy through the same scenario, seeds and traces; report.json.

    report = simulate(SimSpec(bundle=Path("artifacts/bundle"), users=8, traces=Path(".../cellular-up"),
                              accuracy_req=0.0, requirements=RequirementMix(levels=(0.80, 0.88, 0.92))),
                      out=Path("artifacts/orchestrate/sim8"))

The static reference (`static-map`) is found on the same runs: every static (tier, variant) pair is
run over the same requests (all levels), and per requirement level the pair with the lowest mean
response on that level's requests, among the pairs meeting it, is kept (`best_mapping`); the mapping
is then run as a policy of its own, and its own run is what is reported. Exhaustive per level, not
over every combination of levels (pairs ** levels runs): the per-level means come from runs in
which every level went to the same pair, so the mapping's own run can differ, which is why it is run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from orchestration.hardware import TierHardware, apply
from orchestration.learners import Action
from orchestration.policies import (
    BASELINES,
    LEARNERS,
    STATIC_MAP,
    StaticMapping,
    make_policy,
    static_action,
    static_names,
)
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
from orchestration.scenario import SCENARIOS, RequirementMix
from orchestration.simulator import NetworkConfig, RequestRecord, Simulator
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
    """folder of uplink traces, one per device in turn (tune on cellular-up/, report on cellular-up-test/)."""
    accuracy_req: float = 0.0
    """every request's accuracy requirement in [0, 1], when `requirements` is None."""
    requirements: RequirementMix | None = None
    """the requirement levels requests carry, switching per user (None: every request `accuracy_req`)."""
    deadline_ms: float | None = 1000.0
    """each request's deadline (orchestration.scenario.Scenario.deadline_ms: why 1000 ms)."""
    scenario: str = "change"
    """steady, change (users join at 1/3, bandwidth drops at 2/3) or churn (users join and leave)."""
    duration_s: float = 90.0
    """seconds of arrivals per run."""
    rate_per_user: float = 4.0
    """requests per second per active device."""
    arrivals: str = "poisson"
    """poisson or bursty."""
    seeds: int = 3
    """independent runs per policy (trace offsets, arrivals, noise); their requests are pooled."""
    policies: list[str] = field(default_factory=lambda: [*LEARNERS, *BASELINES, "static", STATIC_MAP])
    """policy names; `static` expands to every (tier, variant) pair meeting the lowest level, `static-map`
    to the best pair per level (found on the static pairs' runs)."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """the links between the tiers."""
    hardware: TierHardware = field(default_factory=TierHardware)
    """the tiers' machines: the emulated Pi 4, the edge server's cores, the cloud's cores and speed."""
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
        if not 0.0 <= self.accuracy_req <= 1.0:
            raise ValueError(f"accuracy_req must be in [0, 1], got {self.accuracy_req}")

    @property
    def mix(self) -> RequirementMix:
        return self.requirements if self.requirements is not None else RequirementMix(levels=(self.accuracy_req,))


def expand(names: Sequence[str], profiles: Profiles, levels: Sequence[float]) -> list[str]:
    """Policy names with `static` expanded; the static pairs run before `static-map`, which needs them."""
    pairs = static_names(profiles, tuple(levels))
    out: list[str] = []
    for name in names:
        if name == "static":
            out.extend(pairs)
        elif name == STATIC_MAP:
            continue
        else:
            out.append(name)
    if STATIC_MAP in names:
        out.extend([*pairs, STATIC_MAP])
    return list(dict.fromkeys(out))


def to_answered(records: Sequence[RequestRecord]) -> list[Answered]:
    return [Answered(arrival_s=r.arrival_s, response_ms=r.response_ms, tier=r.tier, variant=r.variant,
                     correct=r.correct, reward=r.reward, user=r.user, fallback=bool(r.fallback),
                     accuracy_req=r.accuracy_req, missed=r.missed) for r in records]


def prepare(spec: SimSpec, profiles: Profiles) -> tuple[Profiles, dict[str, Any]]:
    """The profile on the spec's machines (orchestration.hardware) with its request size; what was assumed."""
    profiles, record = apply(profiles, spec.hardware)
    if spec.request_bytes is not None:
        profiles = dataclasses.replace(profiles, request_bytes=spec.request_bytes)
    return profiles, record


def simulators(spec: SimSpec, *, profiles: Profiles | None = None,
               traces: Sequence[Trace] | None = None) -> list[Simulator]:
    """One simulator per seed of `spec`: the bundle's profile (or `profiles`) on the spec's machines, the
    spec's scenario, requirements and network, the traces of `spec.traces` (or `traces`)."""
    base = profiles if profiles is not None else profiles_from_manifest(spec.bundle)
    profiles, _ = prepare(spec, base)
    traces = list(traces) if traces is not None else load_traces(spec.traces)
    return [Simulator(profiles, SCENARIOS[spec.scenario](spec.users, duration_s=spec.duration_s,
                                                         rate_per_user=spec.rate_per_user, arrivals=spec.arrivals,
                                                         accuracy_req=spec.accuracy_req,
                                                         requirements=spec.requirements,
                                                         deadline_ms=spec.deadline_ms, seed=seed),
                      traces, network=spec.network)
            for seed in range(spec.seeds)]


def best_mapping(runs: dict[str, Sequence[Answered]], profiles: Profiles, levels: Sequence[float]
                 ) -> dict[float, Action]:
    """Per requirement level, the static pair with the lowest mean response on that level's requests
    among the pairs meeting it (the most accurate variant's pairs when none does), from `runs` of the
    `static:TIER:VARIANT` policies over the same requests."""
    mapping: dict[float, Action] = {}
    for level in levels:
        meeting = set(profiles.meeting(level))
        best: tuple[float, Action] | None = None
        for name, answered in runs.items():
            if not name.startswith("static:"):
                continue
            action = static_action(name)
            ms = [a.response_ms for a in answered if a.accuracy_req == level]
            if action[1] not in meeting or not ms:
                continue
            mean = float(np.mean(ms))
            if best is None or mean < best[0]:
                best = (mean, action)
        if best is None:
            raise ValueError(f"no static pair meeting {level:g} was run; run `static` with `{STATIC_MAP}`")
        mapping[level] = best[1]
    return mapping


def simulate(spec: SimSpec, *, out: Path | None = None, profiles: Profiles | None = None,
             traces: Sequence[Trace] | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every policy over `spec.seeds` seeds; write report.json (+ table and plots) under `out`."""
    base = profiles if profiles is not None else profiles_from_manifest(spec.bundle)
    sims = simulators(spec, profiles=base, traces=traces)
    profiles, hardware = prepare(spec, base)
    levels = spec.mix.levels
    names = expand(spec.policies, profiles, levels)
    mapping: dict[float, Action] | None = None
    for name in names:
        if name != STATIC_MAP:
            make_policy(name, profiles)  # an unknown name fails before any run
    policies: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[Answered]] = {}
    change_times = sims[0].scenario.change_times
    for name in names:
        if name == STATIC_MAP:
            mapping = best_mapping(runs, profiles, levels)
        pooled: list[Answered] = []
        for seed, sim in enumerate(sims):
            records = sim.run(lambda user, n=name, s=seed, m=mapping: make_policy(n, profiles, seed=1000 * s + user,
                                                                                  mapping=m))
            # Seeds run one after another on the time axis, so pooled convergence reads one long run.
            pooled.extend(to_answered(records))
            if progress is not None:
                progress(f"{name} seed {seed}: {len(records)} requests")
        policies[name] = summarize(pooled, change_times=change_times)
        # Convergence is judged within one run (seed 0): pooling seeds would splice several learners' starts.
        first = summarize(first_run(pooled), change_times=change_times)
        policies[name].update({k: first[k] for k in ("converged_after_requests", "reconverged")})
        if name == STATIC_MAP and mapping is not None:
            policies[name]["mapping"] = StaticMapping(mapping).describe()
        runs[name] = pooled
    teacher = profiles.variants[profiles.teacher].accuracy
    mix = spec.mix
    report: dict[str, Any] = {
        "mode": "sim", "bundle": str(spec.bundle), "users": spec.users, "traces": str(spec.traces),
        "accuracy_req": spec.accuracy_req,
        "requirements": {"levels": list(mix.levels), "weights": [float(w) for w in mix.probabilities],
                         "switch_s": mix.switch_s},
        "deadline_ms": spec.deadline_ms, "scenario": spec.scenario, "duration_s": spec.duration_s,
        "rate_per_user": spec.rate_per_user, "arrivals": spec.arrivals, "seeds": spec.seeds,
        "change_times_s": change_times, "network": dataclasses.asdict(spec.network), "hardware": hardware,
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
    keep = [k for k in (report["comparison"].get("best_static"), report["comparison"].get("best_static_pair")) if k]
    (out / "report.md").write_text(markdown_table(report["policies"], keep=keep) + "\n")
    shown = {k: v for k, v in runs.items() if not k.startswith("static:") or k in keep}
    plot_cdf(shown, out / "response_cdf.png", title=f"{report['mode']}: response time, {report['users']} users")
    for name in ("qlearning", "linucb", "greedy"):
        if name in runs:
            first = first_run(runs[name])
            plot_choices(first, out / f"choices_{name}.png", title=f"{name}: tier over time",
                         change_times=change_times)
