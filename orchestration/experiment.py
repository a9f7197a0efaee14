"""One simulated comparison: every policy through the same scenario, seeds and traces; report.json.

    report = simulate(SimSpec(bundle=Path("artifacts/bundle"), users=8, traces=Path(".../cellular-up"),
                              accuracy_req=0.0, requirements=RequirementMix(levels=(0.80, 0.88, 0.92))),
                      out=Path("artifacts/orchestrate/sim8"))

The spec (orchestration/spec.py) is what `edgecloud orchestrate sim` reads from its layers.

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
from pathlib import Path
from typing import Any

import numpy as np

from orchestration.hardware import apply
from orchestration.learners import Action
from orchestration.policies import (
    HEDGE_SUFFIX,
    STATIC_MAP,
    StaticMapping,
    is_hedged,
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
from orchestration.scenario import SCENARIOS
from orchestration.simulator import RequestRecord, Simulator
from orchestration.spec import SimSpec
from shared.names import FallbackReason, Tier
from shared.traces import Trace, load_traces


def expand(names: Sequence[str], profiles: Profiles, levels: Sequence[float]) -> list[str]:
    """Policy names with `static` expanded; the static pairs run before `static-map`, which needs them."""
    pairs = static_names(profiles, tuple(levels))
    out: list[str] = []
    mappings = [name for name in names if _is_mapping(name)]
    for name in names:
        if name == "static":
            out.extend(pairs)
        elif not _is_mapping(name):
            out.append(name)
    if mappings:
        out.extend([*pairs, *mappings])
    return list(dict.fromkeys(out))


def _is_mapping(name: str) -> bool:
    """`static-map`, hedged or not: a policy that needs the best mapping found on the static pairs' runs."""
    return name.removesuffix(HEDGE_SUFFIX) == STATIC_MAP


def to_answered(records: Sequence[RequestRecord]) -> list[Answered]:
    return [Answered(arrival_s=r.arrival_s, response_ms=r.response_ms, tier=r.tier, variant=r.variant,
                     correct=r.correct, reward=r.reward, user=r.user,
                     fallback=bool(r.fallback) and r.fallback != FallbackReason.LOCAL_FIRST,
                     local_first=r.fallback == FallbackReason.LOCAL_FIRST,
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
            if not name.startswith("static:") or is_hedged(name):
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
    qlearning = spec.qlearning.model_dump()
    for name in names:
        if not _is_mapping(name):
            make_policy(name, profiles, qlearning=qlearning)  # an unknown name fails before any run
    policies: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[Answered]] = {}
    change_times = sims[0].scenario.change_times
    for name in names:
        if _is_mapping(name) and mapping is None:
            mapping = best_mapping(runs, profiles, levels)
        pooled: list[Answered] = []
        for seed, sim in enumerate(sims):
            records = sim.run(lambda user, n=name, s=seed, m=mapping: make_policy(
                n, profiles, seed=1000 * s + user, mapping=m, qlearning=qlearning))
            # Seeds run one after another on the time axis, so pooled convergence reads one long run.
            pooled.extend(to_answered(records))
            if progress is not None:
                progress(f"{name} seed {seed}: {len(records)} requests")
        policies[name] = summarize(pooled, change_times=change_times)
        # Convergence is judged within one run (seed 0): pooling seeds would splice several learners' starts.
        first = summarize(first_run(pooled), change_times=change_times)
        policies[name].update({k: first[k] for k in ("converged_after_requests", "reconverged")})
        if _is_mapping(name) and mapping is not None:
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
        "change_times_s": change_times, "network": spec.network.model_dump(), "hardware": hardware,
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
    keep = [k for k in (report["comparison"].get("best_static"), report["comparison"].get("best_static_pair"),
                        report["comparison"].get("best_static_hedged")) if k]
    (out / "report.md").write_text(markdown_table(report["policies"], keep=keep) + "\n")
    shown = {k: v for k, v in runs.items() if not k.startswith("static:") or k in keep}
    plot_cdf(shown, out / "response_cdf.png", title=f"{report['mode']}: response time, {report['users']} users")
    for name in ("qlearning", "linucb", "greedy", *(f"{n}{HEDGE_SUFFIX}" for n in ("qlearning", "linucb", "greedy"))):
        if name in runs:
            first = first_run(runs[name])
            plot_choices(first, out / f"choices_{name}.png", title=f"{name}: tier over time",
                         change_times=change_times)
