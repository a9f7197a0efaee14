"""The tables the paper prints (Tables I–IV), formatted from a bundle's reports as markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecloud.pipeline import BUILD_JSON, read_metrics
from shared.bundle import REPORTS, Manifest


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
        rows.append(size_line(metrics["student_bytes"], metrics["teacher_bytes"], metrics.get("size_budget")))
    return "\n".join(rows)


def size_line(student_bytes: int, teacher_bytes: int, size_budget: float | None) -> str:
    """The student's size against the teacher's and against the size target (the build's size budget)."""
    ratio = student_bytes / teacher_bytes
    if size_budget is None:
        target = "no size target (the build set no size budget)"
    else:
        met = "met" if ratio <= size_budget else "NOT met"
        target = f"target ≤ {100 * size_budget:g}% (the build's size budget): {met}"
    return (f"student size: {100 * ratio:.2f}% of the teacher's parameter bytes ({student_bytes:,} of "
            f"{teacher_bytes:,} B); {target}")


def bundle_lines(bundle: Path, manifest: Manifest) -> list[str]:
    """What the bundle's build measured offline: student size against its target, the operating point's
    rule, and cooperation on test with the teacher's answers and with fusion."""
    import json

    build = bundle / REPORTS / BUILD_JSON
    budget = json.loads(build.read_text())["search"].get("size_budget") if build.is_file() else None
    m, op = manifest.metrics, manifest.operating_point
    lines = [size_line(m.student_bytes, m.teacher_bytes, budget)]
    extra = m.model_dump()
    if "cooperative_accuracy" in extra and "offload_rate" in extra:
        line = (f"offline, test split: cooperation {100 * extra['cooperative_accuracy']:.2f}% at "
                f"{100 * extra['offload_rate']:.1f}% offloaded (rule {op.rule}")
        line += f", target {100 * op.target_accuracy:.2f}%)" if op.target_accuracy is not None else ")"
        if "cooperative_accuracy_fused" in extra:
            fused = extra["cooperative_accuracy_fused"]
            line += f"; with fusion of student and teacher probabilities {100 * fused:.2f}%"
        lines.append(line)
    return lines


def table_architecture(metrics: dict[str, Any]) -> str:
    """Table II: the stage-by-stage architecture the RL search kept."""
    teacher, student = metrics.get("teacher_arch"), metrics.get("student_arch")
    if not teacher or not student:
        return ""
    from networks.family import describe

    rows = ["| stage | teacher layers × width | student layers × width | student detail |", "|---|---|---|---|"]
    # A student keeps its teacher's stages (compression removes and shrinks layers inside them).
    for t, s in zip(describe(teacher), describe(student), strict=True):
        rows.append(f"| {s['stage']} | {t['layers']} × {t['width']} | {s['layers']} × {s['width']} | {s['detail']} |")
    return "\n".join(rows)


# What each stage of the build spent, in the order the build runs them (metrics.json keys).
_STAGE_TIMES: tuple[tuple[str, str], ...] = (
    ("teacher training", "teacher_train_seconds"),
    ("RL compression search (Algorithm 1)", "search_seconds"),
    ("final distillation of the student", "distill_seconds"),
    ("cross-fitted fold students", "crossfit_seconds"),
    ("student and teacher logits (onnxruntime)", "logits_seconds"),
    ("offloader: candidates, QBC, operating point, fusion, bootstrap", "offloader_seconds"),
)


def table_stage_times(metrics: dict[str, Any]) -> str:
    """Wall-clock seconds of every stage this bundle's build ran (a stage reused from cache is absent)."""
    rows = [(label, metrics[key]) for label, key in _STAGE_TIMES if key in metrics]
    if not rows:
        return ""
    lines = ["| stage | time |", "|---|---:|"]
    lines += [f"| {label} | {seconds / 60:.1f} min |" for label, seconds in rows]
    lines.append(f"| **total** | **{sum(s for _, s in rows) / 60:.1f} min** |")
    return "\n".join(lines)


def summary(out: Path) -> str:
    """Every table the build produced, in the paper's order, then what each stage took."""
    metrics = read_metrics(out)
    parts = ["## Table I: teacher and student", table_models(metrics)]
    arch = table_architecture(metrics)
    if arch:
        parts += ["## Table II: student architecture", arch]
    # One file holds Tables III–IV, the Fig. 3 comparison and the filters (offloading.report).
    path = out / REPORTS / "offloader_candidates.md"
    if path.is_file():
        parts += ["## Tables III–IV and Fig. 3: offloader candidates, QBC against random", path.read_text().strip()]
    times = table_stage_times(metrics)
    if times:
        parts += ["## Stage times (wall clock)", times]
    return "\n\n".join(parts) + "\n"
