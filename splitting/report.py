"""report.json and the two plots of `edgecloud split eval` (latency over time with SAC's actions on one
trace; latency CDF per strategy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shared.traces import Trace
from splitting.evaluate import Run, evaluate_strategies, summarise
from splitting.setup import SplitSetup


def write_report(setup: SplitSetup, traces: list[Trace], names: list[str], *, deadline_ms: float | None = None,
                 out: Path, duration_s: float | None, traces_dir: Path, downlink: list[Trace] | None = None,
                 downlink_dir: Path | None = None) -> dict[str, Any]:
    """Evaluate `names` (default deadline: the regime's) and write report.json and the plots to `out`."""
    deadline_ms = setup.regime.deadline_ms if deadline_ms is None else deadline_ms
    runs = evaluate_strategies(setup, traces, names, deadline_ms=deadline_ms, duration_s=duration_s,
                               downlink=downlink)
    labels = [a.label(setup.space.n_stages) for a in setup.space.actions]
    spec = setup.spec
    report = {
        "bundle": str(setup.bundle), "traces": str(traces_dir), "trace_files": [t.name for t in traces],
        "downlink_traces": str(downlink_dir) if downlink is not None else "the uplink trace files (a separate link)",
        "deadline_ms": deadline_ms, "period_s": spec.period_s, "duration_s": duration_s,
        "link": {"rtt_ms": spec.link.rtt_ms, "request_overhead_bytes": spec.link.request_overhead_bytes,
                 "response_bytes": spec.link.response_bytes},
        "regime": spec.regime.to_json(),
        "server_payload": spec.regime.server_payload.value,
        "input_bytes": {"mean": setup.input_bytes.mean, "source": setup.input_bytes.source},
        "server_decode_ms": setup.server.decode_ms,
        "device_profile": setup.device.where, "server_profile": setup.server.where,
        "bytes_per_request": "payload bytes (the feature, the raw input or the image file); wire_bytes_per_request "
                             "adds the modelled HTTP/OIP overhead of request and response",
        "strategies": summarise(runs, labels),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_timeline(runs, labels, out / "latency_over_time.png", deadline_ms=deadline_ms)
    plot_cdf(runs, out / "latency_cdf.png", deadline_ms=deadline_ms)
    return report


def plot_timeline(runs: list[Run], labels: list[str], path: Path, *, deadline_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trace = runs[0].trace
    on_trace = [r for r in runs if r.trace == trace]
    chosen = next((r for r in on_trace if r.strategy == "sac"), on_trace[0])
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 8), sharex=True,
                                        gridspec_kw={"height_ratios": [1, 2, 1.3]})
    ax1.plot(chosen.t_s, chosen.mbit_s, color="gray")
    ax1.set_ylabel("trace Mbit/s")
    ax1.set_yscale("log")
    for r in on_trace:
        ax2.plot(r.t_s, r.latency_ms, lw=0.8, label=r.strategy)
    ax2.axhline(deadline_ms, color="k", ls="--", lw=0.8, label="deadline")
    ax2.set_ylabel("latency (ms)")
    ax2.set_yscale("log")
    ax2.legend(fontsize=7, ncol=4)
    used = sorted(set(chosen.action))
    ax3.scatter(chosen.t_s, [used.index(a) for a in chosen.action], s=4)
    ax3.set_yticks(range(len(used)), [labels[a] for a in used], fontsize=7)
    ax3.set_ylabel(f"{chosen.strategy} action")
    ax3.set_xlabel(f"time in trace {trace} (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_cdf(runs: list[Run], path: Path, *, deadline_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r.strategy for r in runs):
        lat = np.sort(np.concatenate([np.asarray(r.latency_ms) for r in runs if r.strategy == name]))
        ax.plot(lat, np.arange(1, len(lat) + 1) / len(lat), label=name)
    ax.axvline(deadline_ms, color="k", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
