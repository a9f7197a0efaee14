"""Summaries of orchestrated runs: report.json (the issue's interface), convergence, a table and plots.

`report.json` holds, per policy: `mean_response_ms`, `p95_response_ms`, `accuracy`, `requests`,
`answered`, `tier_share` ({end, edge, cloud}: share of answered requests, by the tier each was sent
to), `requirement_missed` (share of answered requests whose answering variant was below the
request's own requirement; a fallback counts if its variant is), `fallback_share` (share the device
answered itself after an offload failed or ran out of time), plus what we add: `local_first_share`
(share of a hedged policy's offloads the device's own pass answered first), the variant share,
per requirement level its requests, mean and misses, the mean response time per scenario phase, and
for learners the convergence point.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchestration.policies import HEDGE_SUFFIX, LEARNERS, is_hedged
from shared.names import Tier

CONVERGENCE_WINDOW = 200
"""Requests in the moving average whose settling defines convergence."""
CONVERGENCE_TOLERANCE = 0.05
"""Converged: the moving-average reward stays within 5% of its final value (the issue's definition)."""
MISSED_TOLERANCE = 0.01
"""A static policy counts as the reference only if it misses at most this share of requirements (the
issue's bar for the learners): a pair below the top level misses every top-level request."""
STATIC_PREFIXES: tuple[str, ...] = ("static:", "static-map", "all-")
"""Policies that are a fixed (tier, variant) per requirement level: the static family."""


@dataclass(frozen=True)
class Outcome:
    """What every answered request records, in the simulator and in the live run alike."""

    arrival_s: float
    response_ms: float
    tier: Tier
    """the tier the request was sent to (a fallback was still sent there first)."""
    variant: str
    """the variant that answered (the fallback's, for a fallback)."""
    correct: bool
    reward: float


@dataclass(frozen=True)
class Answered(Outcome):
    """One answered request, as the report needs it (from the simulator or the live run)."""

    user: int = 0
    fallback: bool = False
    """answered by the device after the offload failed (or ran out of time)."""
    local_first: bool = False
    """a hedged offload the device's own pass answered first (not a failure: `fallback` is False)."""
    accuracy_req: float = 0.0
    """the request's own accuracy requirement."""
    missed: bool = False
    """answered by a variant below `accuracy_req`."""


def converged_after(rewards: Sequence[float], *, window: int = CONVERGENCE_WINDOW,
                    tolerance: float = CONVERGENCE_TOLERANCE) -> int | None:
    """Requests after which the moving-average reward stays within `tolerance` of its final value.

    None when the stream is shorter than two windows (nothing to judge).
    """
    r = np.asarray(rewards, dtype=float)
    if len(r) < 2 * window:
        return None
    avg = np.convolve(r, np.ones(window) / window, mode="valid")  # avg[i] = mean of r[i : i + window]
    final = avg[-1]
    outside = np.abs(avg - final) > tolerance * abs(final)
    if not outside.any():
        return window
    return int(np.nonzero(outside)[0][-1]) + 1 + window


def summarize(answered: Sequence[Answered], *, sent: int | None = None, change_times: Sequence[float] = ()
              ) -> dict[str, Any]:
    """One policy's line of report.json."""
    if not answered:
        return {"mean_response_ms": None, "p95_response_ms": None, "accuracy": None, "requests": sent or 0,
                "answered": 0, "tier_share": {t.value: 0.0 for t in Tier}, "requirement_missed": None,
                "fallback_share": None}
    ordered = sorted(answered, key=lambda a: a.arrival_s)
    ms = np.array([a.response_ms for a in ordered])
    tiers = [a.tier for a in ordered]
    variants: dict[str, int] = {}
    for a in ordered:
        variants[a.variant] = variants.get(a.variant, 0) + 1
    edges = [0.0, *change_times, float("inf")]
    phases = []
    phase_rewards = []
    for start, end in itertools.pairwise(edges):
        part = [a for a in ordered if start <= a.arrival_s < end]
        phases.append({"start_s": start, "requests": len(part),
                       "mean_response_ms": float(np.mean([a.response_ms for a in part])) if part else None})
        phase_rewards.append([a.reward for a in part])
    rewards = [a.reward for a in ordered]
    levels: dict[str, dict[str, Any]] = {}
    for level in sorted({a.accuracy_req for a in ordered}):
        part = [a for a in ordered if a.accuracy_req == level]
        levels[f"{level:g}"] = {"requests": len(part),
                                "mean_response_ms": float(np.mean([a.response_ms for a in part])),
                                "requirement_missed": float(np.mean([a.missed for a in part]))}
    # Convergence is judged within one phase (start to the first change, each change to the next):
    # across a change the "final value" is another system's, and every policy, learning or not,
    # would look unsettled until the last phase.
    reconverge = [{"change_s": change, "converged_after_requests": converged_after(after)}
                  for change, after in zip(change_times, phase_rewards[1:], strict=True)]
    return {
        "mean_response_ms": float(ms.mean()),
        "p95_response_ms": float(np.percentile(ms, 95)),
        "accuracy": float(np.mean([a.correct for a in ordered])),
        "requests": int(sent if sent is not None else len(ordered)),
        "answered": len(ordered),
        "tier_share": {t.value: tiers.count(t) / len(tiers) for t in Tier},
        "requirement_missed": float(np.mean([a.missed for a in ordered])),
        "fallback_share": float(np.mean([a.fallback for a in ordered])),
        "local_first_share": float(np.mean([a.local_first for a in ordered])),
        "variant_share": {k: v / len(ordered) for k, v in sorted(variants.items())},
        "fallbacks": int(sum(a.fallback for a in ordered)),
        "levels": levels,
        "phases": phases,
        "mean_reward": float(np.mean(rewards)),
        "converged_after_requests": converged_after(phase_rewards[0]),
        "reconverged": reconverge,
    }


def best_static(policies: dict[str, dict[str, Any]], *, prefixes: tuple[str, ...] = STATIC_PREFIXES,
                tolerance: float = MISSED_TOLERANCE, hedged: bool = False) -> str | None:
    """The static policy with the lowest mean response time among those missing at most `tolerance`
    of the requirements.

    The static family: every `static:TIER:VARIANT` pair, the `static-map` (a pair per requirement
    level) and `all-TIER` (per level that tier's fastest variant meeting it): each is a fixed
    (tier, variant) per level, what a static deployment could configure. With `hedged`, the same among
    the policies that race each offload against the device (`...+hedge`), which is a device capability
    a static deployment could use too, and so the strongest simple baseline once it is on.
    """
    static = {k: v for k, v in policies.items()
              if k.startswith(prefixes) and is_hedged(k) == hedged and v["mean_response_ms"] is not None
              and (v.get("requirement_missed") or 0.0) <= tolerance}
    return min(static, key=lambda k: static[k]["mean_response_ms"]) if static else None


def comparisons(policies: dict[str, dict[str, Any]], *, teacher_accuracy: float) -> dict[str, Any]:
    """The done-when ratios: each learner against the best static policy and the greedy rule."""
    out: dict[str, Any] = {"best_static": best_static(policies),
                           "best_static_pair": best_static(policies, prefixes=("static:",)),
                           "best_static_hedged": best_static(policies, hedged=True),
                           "teacher_accuracy": teacher_accuracy, "missed_tolerance": MISSED_TOLERANCE}
    ref = policies.get(out["best_static"]) if out["best_static"] else None
    greedy = policies.get("greedy")
    # The myopic oracle's row is the reference for "x% of the oracle's gain over greedy".
    for name in ("qlearning", "linucb", "myopic-oracle", "oracle", *(f"{n}{HEDGE_SUFFIX}" for n in LEARNERS)):
        mine = policies.get(name)
        if mine is None or mine["mean_response_ms"] is None:
            continue
        row: dict[str, Any] = {"accuracy_points_below_teacher": 100 * (teacher_accuracy - mine["accuracy"]),
                               "requirement_missed": mine.get("requirement_missed")}
        if ref is not None:
            row["below_best_static"] = 1 - mine["mean_response_ms"] / ref["mean_response_ms"]
        if greedy is not None and greedy["mean_response_ms"]:
            row["below_greedy"] = 1 - mine["mean_response_ms"] / greedy["mean_response_ms"]
        out[name] = row
    return out


def write_report(out: Path, report: dict[str, Any]) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    return path


def markdown_table(policies: dict[str, dict[str, Any]], *, keep: Sequence[str] | None = None) -> str:
    """One line per policy: mean, p95, accuracy, requirement missed, fallback, answered, tier shares.

    Static pairs only if in `keep`.
    """
    lines = ["| policy | mean (ms) | p95 (ms) | accuracy | req. missed | fallback | answered | end / edge / cloud |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, row in policies.items():
        if name.startswith("static:") and keep is not None and name not in keep:
            continue
        if row["mean_response_ms"] is None:
            continue
        share = row["tier_share"]
        lines.append(f"| {name} | {row['mean_response_ms']:.1f} | {row['p95_response_ms']:.1f} | "
                     f"{100 * row['accuracy']:.2f}% | {100 * (row.get('requirement_missed') or 0.0):.1f}% | "
                     f"{100 * (row.get('fallback_share') or 0.0):.1f}% | {row['answered']}/{row['requests']} | "
                     f"{share['end']:.0%} / {share['edge']:.0%} / {share['cloud']:.0%} |")
    return "\n".join(lines)


def plot_cdf(runs: dict[str, Sequence[Answered]], path: Path, *, title: str) -> None:
    """Response-time CDF per policy."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, answered in runs.items():
        ms = np.sort([a.response_ms for a in answered])
        if len(ms):
            ax.plot(ms, np.arange(1, len(ms) + 1) / len(ms), label=name)
    ax.set_xscale("log")
    ax.set_xlabel("response time (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def plot_choices(answered: Sequence[Answered], path: Path, *, title: str, change_times: Sequence[float] = (),
                 bin_s: float = 2.0) -> None:
    """Share of requests per tier over time (stacked), and the mean response time, for one policy."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=120)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    if answered:
        end = max(a.arrival_s for a in answered)
        bins = np.arange(0.0, end + bin_s, bin_s)
        t = np.array([a.arrival_s for a in answered])
        idx = np.digitize(t, bins) - 1
        shares = []
        for tier in Tier:
            mask = np.array([a.tier is tier for a in answered])
            shares.append([mask[idx == i].mean() if (idx == i).any() else 0.0 for i in range(len(bins))])
        top.stackplot(bins, shares, labels=[tier.value for tier in Tier], step="post")
        variants = sorted({a.variant for a in answered})
        v_index = np.array([variants.index(a.variant) for a in answered])
        ms = np.array([a.response_ms for a in answered])
        bottom.scatter(t, ms, c=v_index, s=3, cmap="viridis")
        bottom.set_yscale("log")
        for change in change_times:
            for ax in (top, bottom):
                ax.axvline(change, color="black", linestyle="--", linewidth=1)
    top.set_ylabel("share by tier")
    top.legend(loc="upper right", fontsize=7)
    bottom.set_ylabel("response (ms; colour = variant)")
    bottom.set_xlabel("time (s)")
    top.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
