"""Pack a built bundle for the repository: what the online half loads, small, with re-measured figures.

A bundle as `edgecloud build` leaves it holds caches and torch checkpoints (the teacher's and the
search's students, cross-fitted logits: tens of MB). A packed bundle keeps every file the manifest
references except torch checkpoints (unless asked), the reports people read (tables, plots; not
caches), and stores chosen ONNX models' weights in float16 (compression/onnx_fp16.py). The figures
its manifest states are then measured again on the test split with the packed files
(offloading/bundle_figures.py), so nothing in a packed manifest is carried over unmeasured: where
fp16 storage moved a figure, the manifest says so (`metrics.packed`).

    pack(Path("artifacts/cifar10"), Path("models/cifar10"), fp16=("teacher",), test=dataset.test)
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compression.onnx_fp16 import to_fp16_storage
from offloading.bundle_figures import FIGURES, bundle_figures
from shared import bundle as B
from shared.datasets import Split

# Reports people read; everything else under reports/ (checkpoints, cross-fit caches) stays behind.
REPORT_SUFFIXES: tuple[str, ...] = (".md", ".png", ".csv", ".json", ".jsonl")
REPORT_SKIP: tuple[str, ...] = ("crossfit_logits.npz", "search_best.pt", "student.pt")


def pack(src: Path, out: Path, *, test: Split, fp16: Sequence[str] = (), keep_checkpoints: bool = False,
         rebuild_command: str | None = None) -> B.Manifest:
    """Copy ``src`` to a new ``out`` as described above; returns the packed, verified manifest."""
    src, out = Path(src), Path(out)
    manifest = B.load_manifest(src, verify=True)
    unknown = sorted(set(fp16) - set(manifest.models))
    if unknown:
        raise B.BundleError(f"{src}: no model(s) {', '.join(unknown)} to store in fp16; its models: "
                            f"{', '.join(manifest.models)}")
    if out.exists() and any(out.iterdir()):
        raise B.BundleError(f"{out}: exists and is not empty; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    models = {}
    for name, entry in manifest.models.items():
        update: dict[str, Any] = {}
        if entry.checkpoint is not None and not keep_checkpoints and entry.file is not None:
            update["checkpoint"] = None
        if name in fp16 and entry.file is not None:
            to_fp16_storage(src / entry.file, out / entry.file)
            update["metrics"] = {**entry.metrics, "storage": "fp16 weights, float32 compute"}
        models[name] = entry.model_copy(update=update)
    packed = manifest.model_copy(update={"models": models, "files": {}})
    for name in packed.referenced_files():
        if not (out / name).exists():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, out / name)
    _copy_reports(src / B.REPORTS, out / B.REPORTS)
    B.write_manifest(out, packed)
    figures = bundle_figures(out, test)
    before = manifest.metrics.model_dump()
    changed = {k: {"built": before.get(k), "packed": figures[k]} for k in FIGURES
               if k in figures and before.get(k) is not None and abs(before[k] - figures[k]) > 1e-12}
    metrics = {**before, **{k: figures[k] for k in FIGURES if k in figures},
               "packed": {"from": str(src), "fp16": list(fp16), "checkpoints_kept": keep_checkpoints,
                          "changed_figures": changed, "test_samples": figures["samples"],
                          **({"rebuild": rebuild_command} if rebuild_command else {})}}
    final = packed.model_copy(update={"metrics": B.Metrics(**metrics)})
    B.write_manifest(out, final)
    _write_readme(out, final)
    return B.load_manifest(out, verify=True)


def _write_readme(out: Path, manifest: B.Manifest) -> None:
    """README.md: what the bundle holds, its measured figures and the command that rebuilds it (for people;
    like the reports, it is not part of the manifest's hashes)."""
    metrics = manifest.metrics.model_dump()
    packed = metrics["packed"]
    lines = [f"# {out.name}: a packed `{manifest.dataset}` bundle", "",
             "Written by `edgecloud pack`; `manifest.json` holds the sha256 of every file it references, "
             "checked whenever the bundle is loaded.", "",
             "| model | role | file | bytes | storage |", "|---|---|---|---:|---|"]
    for name, entry in manifest.models.items():
        if entry.file is not None:
            size = (out / entry.file).stat().st_size
            lines.append(f"| {name} | {entry.role.value} | `{entry.file}` | {size:,} | "
                         f"{entry.metrics.get('storage', 'float32')} |")
    lines += ["", f"Measured again on the {packed['test_samples']:,} test samples with the packed files:", ""]
    lines += [f"- {key}: {metrics[key]:.4f}" for key in FIGURES if metrics.get(key) is not None]
    if packed["changed_figures"]:
        lines.append(f"- changed by packing: {packed['changed_figures']}")
    if packed.get("rebuild"):
        lines += ["", "Rebuild:", "", "```", packed["rebuild"], "```"]
    (out / "README.md").write_text("\n".join(lines) + "\n")


def _copy_reports(src: Path, out: Path) -> None:
    if not src.is_dir():
        return
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_file() and path.suffix in REPORT_SUFFIXES and path.name not in REPORT_SKIP \
                and not any(part.endswith("_state") for part in rel.parts):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out / rel)
