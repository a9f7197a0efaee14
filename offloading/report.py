"""Write the offloader's reports: Tables III-IV, Fig. 3 (QBC vs random) and Fig. 5 (accuracy vs offload).

Files (in reports_dir): offloader_candidates.csv / .md, qbc_vs_random.csv,
filters_at_operating_point.csv, accuracy_vs_offload.png, candidates_vs_filters.png and
offloading_summary.json.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from offloading.comparison import Curve
from offloading.filters import CONFIDENCE_FILTERS
from offloading.resampling import ReachBootstrap
from offloading.train import OffloaderConfig, OffloaderResult

CANDIDATES_CSV = "offloader_candidates.csv"
CANDIDATES_MD = "offloader_candidates.md"
QBC_CSV = "qbc_vs_random.csv"
FILTERS_CSV = "filters_at_operating_point.csv"
CURVE_PNG = "accuracy_vs_offload.png"
CANDIDATES_PNG = "candidates_vs_filters.png"
SUMMARY_JSON = "offloading_summary.json"
# A 10k-sample test split gives ~10k points per filter; 500 draw the same line in a fraction of the bytes.
MAX_CURVE_POINTS = 500


def _write_csv(path: Path, rows: list[Any]) -> Path:
    if not rows:
        path.write_text("")
        return path
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f.name for f in fields(rows[0])])
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    return path


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _markdown(rows: list[Any], headers: dict[str, str]) -> str:
    lines = ["| " + " | ".join(headers.values()) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(getattr(row, key)) for key in headers) + " |")
    return "\n".join(lines)


def _rate(value: float | None) -> str:
    return "not reached" if value is None else f"{100 * value:.2f}%"


def format_tables(result: OffloaderResult) -> str:
    """Markdown: candidate models (Tables III-IV), QBC vs random (Fig. 3), filters at the operating point."""
    op = result.operating_point
    cap = "no budget" if op["budget"] is None else f"budget {op['budget']:.2f}"
    if op["rule"] == "target":  # only this rule has a target accuracy; the others store None
        sure = f", confidence z = {op['confidence_z']:g}" if op.get("confidence_z") else ""
        how = f"rule target: accuracy {op['target_accuracy']:.4f} ({op.get('target_source', 'user')}){sure}, {cap}"
    else:
        how = f"rule {op['rule']}, {cap}"
    teacher = f"{100 * result.teacher_test_accuracy:.2f}%"
    candidates = [
        {"name": f"**{row.name}** (shipped)" if row.name == result.model_name else row.name,
         "vop": f"{100 * row.val_offload_rate:.2f}% / {100 * row.val_accuracy:.2f}%"
                + ("" if row.val_target_reached else " (target not reached)"),
         "cv": f"{row.cv_auc:.4f}", "vauc": f"{row.val_auc:.4f}", "auc": f"{row.test_auc:.4f}",
         "acc": f"{row.test_accuracy:.4f}",
         "bacc": f"{row.test_balanced_accuracy:.4f}", "kb": f"{row.size_kb:.1f}",
         "us": f"{row.decision_us:.1f}", "rate": _rate(row.test_rate_to_teacher)}
        for row in result.candidates
    ]
    cand_headers = {"name": "model", "vop": "val operating point (offload / acc.)",
                    "cv": "fit-set CV AUC (chooses auto)", "vauc": "val AUC",
                    "auc": "test AUC", "acc": "test accuracy", "bacc": "balanced acc.", "kb": "size (KB)",
                    "us": "decision (µs/sample)", "rate": f"test offload to reach the teacher ({teacher})"}
    filters = [
        {"name": row.name, "thr": _fmt(row.threshold), "vr": f"{100 * row.val_offload_rate:.2f}%",
         "va": f"{100 * row.val_accuracy:.2f}%", "tr": f"{100 * row.test_offload_rate:.2f}%",
         "ta": f"{100 * row.test_accuracy:.2f}%", "reach": _rate(row.test_rate_to_teacher)}
        for row in result.filters
    ]
    filter_headers = {"name": "filter", "thr": "threshold", "vr": "val offload", "va": "val acc.",
                      "tr": "test offload", "ta": "test acc.", "reach": f"offload to reach {teacher} (test)"}
    parts = [
        f"### Offloader candidates (test: predicting \"student wrong\"; trained on {result.fit_source} "
        f"logits of {result.n_fit} samples)",
        _dict_markdown(candidates, cand_headers),
        "",
        f"### QBC vs random normal samples ({result.n_complex} complex + {result.n_random} random + "
        f"{result.n_qbc} QBC)",
        _markdown(result.qbc_vs_random, {"name": "model", "qbc_accuracy": "QBC acc.",
                                         "random_accuracy": "random acc.", "qbc_auc": "QBC AUC",
                                         "random_auc": "random AUC",
                                         "qbc_balanced_accuracy": "QBC bal. acc.",
                                         "random_balanced_accuracy": "random bal. acc."}),
        "",
        f"### Filters at the operating point ({how}; chosen on val, measured on test)",
        _dict_markdown(filters, filter_headers),
        "",
        f"shipped offloader: {result.model_name} ({op.get('offloader_choice', 'configured')}); "
        f"its threshold: {op.get('reason', op['rule'])}.",
        "",
        f"student {result.student_test_accuracy:.4f}, teacher {result.teacher_test_accuracy:.4f}, "
        f"edge-cloud ({result.model_name}) {result.test_accuracy:.4f} at offload rate "
        f"{result.test_offload_rate:.4f}",
    ]
    if result.reach_bootstrap is not None:
        parts += ["", *_bootstrap_lines(result.reach_bootstrap, result.model_name)]
    if result.fusion is not None:
        f, p = result.fusion, result.fusion.tuning.params
        on_offloaded = ("no test sample is offloaded" if np.isnan(f.test_offloaded_teacher_accuracy) else
                        "on the offloaded test samples the teacher is right on "
                        f"{f.test_offloaded_teacher_accuracy:.4f}, the fused answer on "
                        f"{f.test_offloaded_fused_accuracy:.4f}")
        parts.append(
            f"with fusion (w = {p.student_weight:.2f}, T_s = {p.student_temperature:.3f}, "
            f"T_t = {p.teacher_temperature:.3f}): {f.test_accuracy:.4f}; {on_offloaded}")
    return "\n".join(parts) + "\n"


def _bootstrap_lines(boot: ReachBootstrap, model_name: str) -> list[str]:
    """The paired bootstrap of the offload-to-reach-the-teacher rates (resampling.py) as markdown."""
    pct = round(100 * boot.level)
    at = boot.accuracy_at_rate or (float("nan"),) * len(boot.spreads)
    rows = [{"name": f"sl ({model_name}, shipped)" if s.name == boot.shipped else s.name,
             "median": f"{100 * s.median:.2f}%", "interval": f"{100 * s.low:.2f}% to {100 * s.high:.2f}%",
             "at": "-" if np.isnan(acc) else f"{100 * acc:.2f}%"}
            for s, acc in zip(boot.spreads, at, strict=True)]
    at_header = "-" if boot.at_rate is None else f"{100 * boot.at_rate:.2f}%"
    each = ", ".join(f"{name} {100 * share:.0f}%" for name, share in zip(boot.rivals, boot.share_no_more_each,
                                                                         strict=True))
    return [
        f"### How sure: test offload to reach the teacher over {boot.draws} paired bootstrap draws of the test split",
        _dict_markdown(rows, {"name": "score", "median": "median", "interval": f"central {pct}%",
                              "at": f"test accuracy at the operating point's offload rate ({at_header})"}),
        "",
        f"the shipped offloader needs no more offload than the best filter of the same draw in "
        f"{100 * boot.share_no_more:.0f}% of draws (against each alone: {each}); shipped minus best: median "
        f"{100 * boot.diff_median:+.2f} points, central {pct}% {100 * boot.diff_low:+.2f} to "
        f"{100 * boot.diff_high:+.2f}",
    ] + ([] if boot.at_rate is None or boot.share_on_or_above is None else [
        "",
        f"at the operating point's test offload rate {100 * boot.at_rate:.2f}%, the shipped curve is on or above "
        f"every filter's in {100 * boot.share_on_or_above:.0f}% of draws",
    ])


def _dict_markdown(rows: list[dict[str, str]], headers: dict[str, str]) -> str:
    lines = ["| " + " | ".join(headers.values()) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row[key] for key in headers) + " |" for row in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def _accuracy_plot(path: Path, *, title: str, legend_fontsize: int) -> Iterator[Any]:
    """Axes of cooperative accuracy against offload rate to draw on; labelled and saved to ``path`` after."""
    # Figure + the Agg canvas directly: no pyplot, so no global backend state and no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    yield ax
    ax.set_xlabel("offload rate (fraction sent to the cloud)")
    ax.set_ylabel("cooperative accuracy (test)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_fontsize, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _plot(result: OffloaderResult, path: Path) -> Path:
    with _accuracy_plot(path, title="Accuracy against offload rate", legend_fontsize=8) as ax:
        for name, curve in result.curves.items():
            if len(curve.rates) == 1:
                ax.scatter(curve.rates, curve.accs, marker="s", zorder=3, label=name)
            else:
                label = {"sl": f"sl ({result.model_name})", "sl_fusion": f"sl ({result.model_name}) + fusion"}
                ax.plot(curve.rates, curve.accs, linewidth=2.0 if name.startswith("sl") else 1.2,
                        linestyle="--" if name == "sl_fusion" else "-", label=label.get(name, name))
        ax.scatter([result.test_offload_rate], [result.test_accuracy], marker="*", s=200, color="black",
                   zorder=4, label="operating point")
        if result.operating_point["budget"] is not None:
            ax.axvline(result.operating_point["budget"], color="grey", linestyle=":", label="budget")
        ax.axhline(result.teacher_test_accuracy, color="black", linewidth=0.8, linestyle=":", label="teacher")
        # Zoom on where the filters differ: from the student's accuracy up, and offload rates up to
        # twice the operating point's or 20%, whichever is more.
        top = max(result.curves[n].accs.max() for n in result.curves)
        ax.set_ylim(result.student_test_accuracy - 0.1 * (top - result.student_test_accuracy + 1e-3), top + 0.002)
        ax.set_xlim(-0.005, min(1.0, max(0.2, 2 * result.test_offload_rate)))
    return path


def _plot_candidates(result: OffloaderResult, path: Path) -> Path:
    """Every candidate's test curve against the three confidence filters', zoomed on low offload rates."""
    title = "Offloader candidates against the confidence filters"
    with _accuracy_plot(path, title=title, legend_fontsize=7) as ax:
        for name in CONFIDENCE_FILTERS:
            curve = result.curves[name]
            ax.plot(curve.rates, curve.accs, color="black", linewidth=1.0,
                    linestyle={"max_softmax": "-", "entropy": "--", "margin": ":"}[name], label=f"{name} (filter)")
        for name, curve in result.candidate_curves.items():
            ax.plot(curve.rates, curve.accs, linewidth=2.0 if name == result.model_name else 1.0,
                    label=f"{name} (shipped)" if name == result.model_name else name)
        ax.axhline(result.teacher_test_accuracy, color="grey", linewidth=0.8, linestyle=":", label="teacher")
        rates = [r.test_rate_to_teacher for r in result.candidates if r.test_rate_to_teacher is not None]
        ax.set_xlim(-0.002, min(1.0, max([0.05, 1.5 * max(rates, default=0.0)])))
        low = result.student_test_accuracy
        ax.set_ylim(low - 0.1 * (result.teacher_test_accuracy - low + 1e-3), result.teacher_test_accuracy + 0.004)
    return path


def _thin(curve: Curve, max_points: int = MAX_CURVE_POINTS) -> dict[str, list[float]]:
    """A curve as JSON lists, thinned to at most max_points evenly spaced points (ends kept)."""
    keep = np.unique(np.linspace(0, len(curve.rates) - 1, min(len(curve.rates), max_points)).round().astype(int))
    return {"offload_rate": curve.rates[keep].tolist(), "accuracy": curve.accs[keep].tolist()}


def _summary(result: OffloaderResult) -> dict[str, Any]:
    fusion = None
    if result.fusion is not None:
        fusion = {**asdict(result.fusion), "params": asdict(result.fusion.tuning.params)}
        fusion["tuning"] = {k: v for k, v in fusion["tuning"].items() if k != "params"}
    return {
        "fit_source": result.fit_source,
        "fit_samples": result.n_fit,
        "temperature": result.temperature,
        "fusion": fusion,
        "reach_bootstrap": None if result.reach_bootstrap is None else asdict(result.reach_bootstrap),
        "model": result.model_name,
        "operating_point": result.operating_point,
        "test_offload_rate": result.test_offload_rate,
        "test_accuracy": result.test_accuracy,
        "student_test_accuracy": result.student_test_accuracy,
        "teacher_test_accuracy": result.teacher_test_accuracy,
        "selection": {"complex": result.n_complex, "random": result.n_random, "qbc": result.n_qbc},
        # OffloaderConfig's own settings (a build's offload section adds how the fit set was made).
        "config": result.config.model_dump(include=set(OffloaderConfig.model_fields)),
        "candidates": [asdict(row) for row in result.candidates],
        "qbc_vs_random": [asdict(row) for row in result.qbc_vs_random],
        "filters": [asdict(row) for row in result.filters],
        "curves": {name: _thin(curve) for name, curve in result.curves.items()},
        "candidate_curves": {name: _thin(curve) for name, curve in result.candidate_curves.items()},
    }


def write_offloading_report(result: OffloaderResult, reports_dir: Path) -> list[Path]:
    """Write every offloading report into reports_dir (created if missing); returns the paths."""
    out = Path(reports_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / CANDIDATES_MD
    md.write_text(format_tables(result))
    summary = out / SUMMARY_JSON
    summary.write_text(json.dumps(_summary(result), indent=2) + "\n")
    return [
        _write_csv(out / CANDIDATES_CSV, result.candidates),
        md,
        _write_csv(out / QBC_CSV, result.qbc_vs_random),
        _write_csv(out / FILTERS_CSV, result.filters),
        _plot(result, out / CURVE_PNG),
        _plot_candidates(result, out / CANDIDATES_PNG),
        summary,
    ]
