"""Summaries, report.md / report.json and the two plots of an evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgecloud.evaluation.driver import StrategyRun
from shared.names import AnswerSource, Strategy

OFFLOADED_SOURCES = frozenset({AnswerSource.CLOUD, AnswerSource.FUSED, AnswerSource.FALLBACK})


def summarise(run: StrategyRun, y: np.ndarray, *, bytes_sent: float | None) -> dict[str, Any]:
    """One row of Table VII: accuracy counts every sample, so an unanswered one counts as wrong."""
    answered = np.array([s != "" for s in run.sources])
    latency_ms = run.latency_s[answered] * 1e3
    counts = {s.value: int(sum(1 for v in run.sources if v == s)) for s in AnswerSource}
    n = len(y)
    return {
        "accuracy": float(np.mean(run.labels == y)) if n else 0.0,
        "runtime_s": run.runtime_s,
        "offload_rate": float(sum(1 for s in run.sources if s in OFFLOADED_SOURCES) / n) if n else 0.0,
        "p50_ms": float(np.percentile(latency_ms, 50)) if latency_ms.size else None,
        "p99_ms": float(np.percentile(latency_ms, 99)) if latency_ms.size else None,
        "bytes_sent": bytes_sent,
        "samples": n,
        "answered": int(answered.sum()),
        "sources": counts,
        "errors": run.errors[:20],
    }


def table(report: dict[str, Any]) -> str:
    rows = ["| strategy | accuracy | runtime (s) | offload rate | p50 (ms) | p99 (ms) | bytes sent | answered |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in report["strategies"].items():
        sent = "n/a" if s["bytes_sent"] is None else f"{s['bytes_sent']:,.0f}"
        rows.append(f"| {name} | {100 * s['accuracy']:.2f}% | {s['runtime_s']:.2f} | {100 * s['offload_rate']:.1f}% "
                    f"| {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {sent} | {s['answered']}/{s['samples']} |")
    strategies = report["strategies"]
    repeat = int(report.get("repeat", 1))
    payload = report.get("payload")
    lines = ["\n".join(rows), *([f"runtimes: the median of {repeat} interleaved rounds per strategy "
                                 "(report.json has every round's)"] if repeat > 1 else []),
             *([f"requests carry {'image files' if payload == 'files' else 'raw pixels'}: "
                f"{report['payload_bytes_per_sample']:,.0f} B a sample on average"] if payload else []), "",
             f"teacher accuracy (bundle, test split): {100 * report['teacher_accuracy']:.2f}%  "
             f"student accuracy: {100 * report['student_accuracy']:.2f}%"]
    if set(Strategy) <= set(strategies):
        coop = strategies[Strategy.COOPERATION]["runtime_s"]
        edge, cloud = strategies[Strategy.EDGE_ONLY]["runtime_s"], strategies[Strategy.CLOUD_ONLY]["runtime_s"]
        lines.append(f"cooperation / edge-only runtime: {coop / edge:.3f}x  "
                     f"cloud-only / cooperation runtime: {cloud / coop:.3f}x  "
                     f"time saved against cloud-only: {100 * (1 - coop / cloud):.1f}%")
    return "\n".join(lines)


def cooperation_lines(report: dict[str, Any]) -> list[str]:
    """What cooperation bought on these samples: its share offloaded, and points and time against both sides.

    Plain about the case where it did not pay: a line says so rather than printing a bare ratio.
    """
    strategies = report["strategies"]
    if not set(Strategy) <= set(strategies):
        return []
    coop, edge, cloud = (strategies[s] for s in (Strategy.COOPERATION, Strategy.EDGE_ONLY, Strategy.CLOUD_ONLY))
    gain_edge = 100 * (coop["accuracy"] - edge["accuracy"])
    gain_cloud = 100 * (coop["accuracy"] - cloud["accuracy"])
    lines = [f"cooperation offloaded {100 * coop['offload_rate']:.1f}% of {coop['samples']:,} images: "
             f"{gain_edge:+.2f} points against edge-only, {gain_cloud:+.2f} against cloud-only, at "
             f"{coop['runtime_s'] / edge['runtime_s']:.2f}x edge-only's runtime and "
             f"{coop['runtime_s'] / cloud['runtime_s']:.2f}x cloud-only's"]
    if coop["offload_rate"] == 0:
        lines.append("it offloaded nothing: on these images the offloader's threshold found no image hard enough")
    elif gain_edge > 0 and gain_cloud > 0:
        lines.append("more accurate than either side alone: the student keeps what it gets right that the "
                     "teacher would not, and the images it would get wrong go to the teacher")
    elif gain_cloud <= 0:
        lines.append("not more accurate than cloud-only here: the offloader kept some images the student got "
                     "wrong and the teacher would have got right")
    return lines


def _plot_accuracy(report: dict[str, Any], curve: dict[str, Any] | None, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    if curve:
        for name, points in curve.items():
            ax.plot(np.array(points["offload_rate"]) * 100, np.array(points["accuracy"]) * 100,
                    lw=1, alpha=0.7, label=f"{name} (offline, test)")
    for name, s in report["strategies"].items():
        ax.scatter([100 * s["offload_rate"]], [100 * s["accuracy"]], s=60, zorder=3, label=f"{name} (live)")
    ax.set_xlabel("offload rate (%)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"accuracy against offload rate ({report['dataset']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _plot_latency_cdf(runs: dict[str, StrategyRun], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for name, run in runs.items():
        ms = np.sort(run.latency_s[~np.isnan(run.latency_s)] * 1e3)
        if ms.size:
            ax.plot(ms, np.arange(1, ms.size + 1) / ms.size, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("per-sample latency (ms, log)")
    ax.set_ylabel("fraction of samples")
    ax.set_title("latency CDF by strategy")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def link_line(link: dict[str, Any]) -> str:
    """One line on the link an evaluation ran across (`edgecloud eval --link`), measured where it was."""
    line = f"link: {link['profile']} ({link['rate_mbit']:g} Mbit/s, {link['rtt_ms']:g} ms RTT; {link['delay']})"
    measured = link.get("measured")
    if measured:
        line += (f"; measured RTT {measured['rtt_ms']:.1f} ms (fastest echo), goodput up {measured['up_mbit']:.2f} / "
                 f"down {measured['down_mbit']:.2f} Mbit/s")
    pinned = link.get("cpus") or {}
    if pinned:
        line += "; pinned " + ", ".join(f"{side} to cores {','.join(map(str, cores))}"
                                         for side, cores in sorted(pinned.items()))
    failed = [c["metric"] for c in link.get("checks", []) if not c["ok"]]
    if failed:
        line += f"; OUTSIDE the profile's tolerance: {', '.join(failed)}"
    return line


def write_markdown(report: dict[str, Any], out: Path) -> Path:
    """report.md: the table, the link it ran across (if any) and the two plots."""
    link = f"{link_line(report['link'])}\n\n" if report.get("link") else ""
    path = out / "report.md"
    path.write_text(f"# edgecloud evaluation: {report['dataset']}\n\n{link}{table(report)}\n\n"
                    "![accuracy against offload rate](accuracy_vs_offload.png)\n\n"
                    "![latency CDF](latency_cdf.png)\n")
    return path


def write_report(report: dict[str, Any], runs: dict[str, StrategyRun], out: Path,
                 *, curve: dict[str, Any] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md", out / "accuracy_vs_offload.png", out / "latency_cdf.png"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, out)
    _plot_accuracy(report, curve, paths[2])
    _plot_latency_cdf(runs, paths[3])
    return paths
