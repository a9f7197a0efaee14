"""The tables the paper prints (Tables I–IV), formatted from a bundle's reports as markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecloud.pipeline import read_metrics
from shared.bundle import REPORTS


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.2f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e3:.1f} KB"


def table_models(metrics: dict[str, Any]) -> str:
    """Table I: teacher against student: parameters, float32 size and test accuracy."""
    rows = ["| model | params | size (fp32) | test accuracy |", "|---|---:|---:|---:|"]
    for name in ("teacher", "student"):
        if f"{name}_bytes" not in metrics:
            continue
        rows.append(f"| {name} | {metrics[f'{name}_bytes'] // 4:,} | {_size(metrics[f'{name}_bytes'])} | "
                    f"{100 * metrics.get(f'{name}_accuracy', float('nan')):.2f}% |")
    if "teacher_bytes" in metrics and "student_bytes" in metrics:
        ratio = metrics["student_bytes"] / metrics["teacher_bytes"]
        rows.append(f"\nstudent / teacher size: {100 * ratio:.2f}% (C = {1 - ratio:.4f}, eq. 5)")
    return "\n".join(rows)


def table_architecture(metrics: dict[str, Any]) -> str:
    """Table II: the stage-by-stage architecture the RL search kept."""
    teacher, student = metrics.get("teacher_arch"), metrics.get("student_arch")
    if not teacher or not student:
        return ""
    rows = ["| stage | teacher blocks × width | student blocks × width | student mid widths (kernels) |",
            "|---|---|---|---|"]
    rows.append(f"| stem | {teacher['stem']['out']} | {student['stem']['out']} | k={student['stem']['kernel']} |")
    for i, (t, s) in enumerate(zip(teacher["stages"], student["stages"], strict=True), start=1):
        mids = ", ".join(f"{b['mid']}({b['kernel1']}/{b['kernel2']})" for b in s["blocks"])
        rows.append(f"| {i} | {len(t['blocks'])} × {t['width']} | {len(s['blocks'])} × {s['width']} | {mids} |")
    return "\n".join(rows)


def summary(out: Path) -> str:
    """Every table the build produced, in the paper's order."""
    metrics = read_metrics(out)
    parts = ["## Table I: teacher and student", table_models(metrics)]
    arch = table_architecture(metrics)
    if arch:
        parts += ["## Table II: student architecture", arch]
    # One file holds Tables III–IV, the Fig. 3 comparison and the filters (offloading.report).
    path = out / REPORTS / "offloader_candidates.md"
    if path.is_file():
        parts += ["## Tables III–IV and Fig. 3: offloader candidates, QBC against random", path.read_text().strip()]
    return "\n\n".join(parts) + "\n"
