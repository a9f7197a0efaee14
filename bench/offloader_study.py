"""Which offloader learns "student wrong" best: fit source x features x model, against the confidence filters.

For a built bundle (student.onnx, teacher, reports/search_best.pt), trains the SL offloader on each
fit source (the student's own train logits; cross-fitted out-of-fold logits; the held-out slice when
the bundle was compressed with fit_source "holdout") with each feature set, for every candidate model,
and prints one markdown row per combination: mistakes learned from, test ROC AUC, the smallest test
offload rate at which cooperation reaches the teacher's test accuracy, and the operating point the
bundle's rule picks on validation, measured on test. The confidence filters' rows close the table.

    .venv/bin/python bench/offloader_study.py --bundle artifacts/demo/bundle
    .venv/bin/python bench/offloader_study.py --bundle artifacts/mnist --data-dir ../shared/data/mnist \
        --features confidence sorted --out artifacts/mnist/reports/offloader_study.md
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from edgecloud.pipeline import load_config, load_data, offloader_fit_set, onnx_logits
from offloading.features import FEATURE_KINDS
from offloading.filters import make_filter
from offloading.models import CANDIDATES
from offloading.train import FitSet, OffloaderConfig, train_offloader
from shared import bundle as B

LOGITS_NPZ = "study_logits.npz"


def _logits(bundle: Path, data_dir: Path | None) -> tuple[dict, dict, dict, object]:
    cfg = load_config(bundle)
    dataset = load_data(cfg, data_dir)
    cache = bundle / B.REPORTS / LOGITS_NPZ
    student_sha = B.sha256_file(bundle / B.STUDENT_ONNX)
    if cache.is_file() and str(np.load(cache)["student_sha256"]) == student_sha:
        raw = np.load(cache)
        s = {k: raw[f"s_{k}"] for k in ("train", "val", "test")}
        t = {k: raw[f"t_{k}"] for k in ("val", "test")}
    else:
        splits = {"train": dataset.train, "val": dataset.val, "test": dataset.test}
        s = {k: onnx_logits(bundle / B.STUDENT_ONNX, v.x, dataset.mean, dataset.std) for k, v in splits.items()}
        t = {k: onnx_logits(bundle / B.TEACHER_ONNX, splits[k].x, dataset.mean, dataset.std) for k in ("val", "test")}
        np.savez(cache, student_sha256=np.array(student_sha), **{f"s_{k}": v for k, v in s.items()},
                 **{f"t_{k}": v for k, v in t.items()})
    labels = {"train": dataset.train.y, "val": dataset.val.y, "test": dataset.test.y}
    return s, t, labels, (cfg, dataset)


def _fit_sets(bundle: Path, cfg: object, dataset: object, s_train: np.ndarray) -> list[FitSet]:
    from networks.checkpoint import load_checkpoint

    sets = [FitSet(s_train, dataset.train.y, "train")]  # type: ignore[attr-defined]
    teacher = load_checkpoint(bundle / B.TEACHER_PT).eval()
    if cfg.offload.fit_source == "holdout":  # type: ignore[attr-defined]
        sets.append(offloader_fit_set(bundle, cfg, dataset, s_train, teacher))  # type: ignore[arg-type]
    else:
        import dataclasses

        crossfit = dataclasses.replace(cfg, offload=dataclasses.replace(cfg.offload, fit_source="crossfit"))  # type: ignore
        sets.append(offloader_fit_set(bundle, crossfit, dataset, s_train, teacher))  # type: ignore[arg-type]
    return sets


def _pct(value: float | None) -> str:
    return "not reached" if value is None else f"{100 * value:.2f}%"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--features", nargs="+", default=list(FEATURE_KINDS), choices=FEATURE_KINDS)
    parser.add_argument("--models", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    s, t, labels, (cfg, dataset) = _logits(args.bundle, args.data_dir)
    o = cfg.offload
    teacher_test = float((t["test"].argmax(1) == labels["test"]).mean())
    lines = [f"teacher test accuracy {100 * teacher_test:.2f}%, student "
             f"{100 * float((s['test'].argmax(1) == labels['test']).mean()):.2f}%; rule {o.rule}, budget {o.budget}",
             "",
             "| fit source | wrong / samples | features | model | test AUC | offload to reach the teacher (test) "
             "| val offload | test offload | test acc. |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|"]
    filters: dict[str, object] = {}
    for fit in _fit_sets(args.bundle, cfg, dataset, s["train"]):
        wrong = int((fit.logits.argmax(1) != fit.labels).sum())
        for features in args.features:
            for model in args.models:
                res = train_offloader(
                    student_logits=s, teacher_logits=t, labels=labels, fit=fit,
                    cfg=OffloaderConfig(model=model, candidates=(model,), features=features, rule=o.rule,
                                        budget=o.budget, target_accuracy=o.target_accuracy, fusion=False,
                                        seed=cfg.seed))
                row = res.candidates[0]
                sl = next(r for r in res.filters if r.name == "sl")
                lines.append(f"| {fit.source} | {wrong} / {len(fit.labels)} | {features} | {model} | "
                             f"{row.test_auc:.4f} | {_pct(row.test_rate_to_teacher)} | "
                             f"{_pct(sl.val_offload_rate)} | {_pct(sl.test_offload_rate)} | "
                             f"{100 * sl.test_accuracy:.2f}% |")
                filters = {r.name: r for r in res.filters if r.name in ("max_softmax", "entropy", "margin")}
                print(lines[-1], flush=True)
    test_wrong = s["test"].argmax(1) != labels["test"]
    for name, r in filters.items():
        auc = roc_auc_score(test_wrong, make_filter(name).scores(s["test"]))
        lines.append(f"| (filter) | | | {name} | {auc:.4f} | {_pct(r.test_rate_to_teacher)} | "
                     f"{_pct(r.val_offload_rate)} | {_pct(r.test_offload_rate)} | {100 * r.test_accuracy:.2f}% |")
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
