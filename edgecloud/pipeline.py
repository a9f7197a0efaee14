"""The offline half end to end: teacher -> RL-compressed, distilled student -> ONNX -> SL offloader.

Each stage reads and writes the bundle directory, so `edgecloud train-teacher`, `compress` and
`train-offloader` can run one by one (and be resumed), and `edgecloud build` runs all three.
The stage settings travel in `reports/build.json`; measured numbers collect in
`reports/metrics.json` and end up in the manifest.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared import bundle as B
from shared.datasets import Dataset, input_spec, load_dataset, normalize
from shared.names import ModelRole
from shared.run_config import write_run_config

if TYPE_CHECKING:  # presets imports the stages' settings classes, and with them torch
    from edgecloud.presets import BuildConfig

log = logging.getLogger(__name__)

BUILD_JSON = "build.json"
METRICS_JSON = "metrics.json"


class StageError(RuntimeError):
    """A stage cannot run: a previous stage's output is missing."""


def _reports(out: Path) -> Path:
    path = out / B.REPORTS
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_config(out: Path, cfg: BuildConfig) -> None:
    """reports/build.json: the settings the stages ran with (the build's config.json, under its old name)."""
    write_run_config(cfg, _reports(out), name=BUILD_JSON)


def load_config(out: Path) -> BuildConfig:
    from edgecloud.presets import BuildConfig

    path = out / B.REPORTS / BUILD_JSON
    if not path.is_file():
        raise StageError(f"{path}: missing; run `edgecloud train-teacher --out {out}` first")
    return BuildConfig.from_dict(json.loads(path.read_text()))


def update_config(out: Path, layers: list[Any], *, sections: tuple[str, ...]) -> BuildConfig:
    """The bundle's saved settings with `layers` (shared.run_config.Layer: a file, variables, flags) over
    them, saved again.

    Only `sections` may change: a later stage must not rewrite the settings an earlier one already used
    (repeating one of them unchanged is fine, so that one file or set of variables can drive every stage).
    """
    from edgecloud.presets import resolve_build

    saved = load_config(out)
    cfg = resolve_build(layers, base=saved)
    before, after = saved.to_dict(), cfg.to_dict()
    frozen = sorted(k for k in after if k not in sections and after[k] != before[k])
    if frozen:
        raise ValueError(f"settings {', '.join(frozen)} belong to an earlier stage; this stage may change "
                         f"only {', '.join(sections)}")
    save_config(out, cfg)
    return cfg


def _update_metrics(out: Path, **values: Any) -> dict[str, Any]:
    path = _reports(out) / METRICS_JSON
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics.update(values)
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def read_metrics(out: Path) -> dict[str, Any]:
    path = out / B.REPORTS / METRICS_JSON
    return json.loads(path.read_text()) if path.is_file() else {}


def _require(path: Path, stage: str) -> Path:
    if not path.is_file():
        raise StageError(f"{path}: missing; run `edgecloud {stage}` first")
    return path


def load_data(cfg: BuildConfig, data_dir: Path | None) -> Dataset:
    """The dataset a bundle was (or is being) built from, split with the build's seed."""
    return load_dataset(cfg.dataset, data_dir=data_dir, seed=cfg.seed, image_size=cfg.image_size)


def train_teacher(cfg: BuildConfig, out: Path, dataset: Dataset, *, progress: bool = True) -> dict[str, Any]:
    """Train the teacher ResNet, save `teacher.pt` (+ `teacher.onnx` when it exports with parity)."""
    import torch

    from compression.export import ExportError, ParityError, check_parity, export_onnx
    from compression.teacher import evaluate, train_model
    from networks.checkpoint import save_checkpoint
    from networks.family import build_model, default_arch, model_bytes

    torch.manual_seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    save_config(out, cfg)
    c, h, w = dataset.train.x.shape[1:]
    arch = default_arch(cfg.teacher.family, in_channels=c, num_classes=len(dataset.classes), input_size=(h, w),
                        **cfg.teacher.arch)
    model = build_model(arch)
    started = time.perf_counter()
    # A stopped run resumes from its last epoch (compression/resume.py) when started again.
    history = train_model(model, dataset, cfg.teacher, progress=progress,
                          state_path=_reports(out) / "teacher_state.pt")
    seconds = time.perf_counter() - started
    model = model.cpu().eval()
    accuracy = evaluate(model, dataset.test, dataset.mean, dataset.std)
    save_checkpoint(model, out / B.TEACHER_PT)
    onnx_ok = True
    try:
        export_onnx(model, out / B.TEACHER_ONNX, input_shape=(c, h, w))
        check_parity(model, out / B.TEACHER_ONNX, normalize(dataset.test.x[:256], dataset.mean, dataset.std))
    except (ExportError, ParityError) as err:
        # The cloud can still serve teacher.pt with its torch backend.
        log.warning("teacher.onnx not written: %s", err)
        (out / B.TEACHER_ONNX).unlink(missing_ok=True)
        onnx_ok = False
    (_reports(out) / "teacher_history.json").write_text(json.dumps(history, indent=2) + "\n")
    return _update_metrics(out, teacher_accuracy=accuracy, teacher_bytes=model_bytes(arch),
                           teacher_params=model_bytes(arch) // 4, teacher_train_seconds=seconds,
                           teacher_onnx=onnx_ok, teacher_arch=arch)


SEARCH_BEST_PT = "search_best.pt"
CROSSFIT_NPZ = "crossfit_logits.npz"


def fit_dataset(cfg: BuildConfig, dataset: Dataset) -> Dataset:
    """The data the student is distilled on: all of train, or train minus the offloader's held-out slice."""
    if cfg.offload.fit_source != "holdout":
        return dataset
    from compression.crossfit import holdout_indices, with_train_subset

    kept, _ = holdout_indices(len(dataset.train.y), cfg.offload.holdout_fraction, seed=cfg.seed)
    return with_train_subset(dataset, kept)


def compress(out: Path, dataset: Dataset, *, progress: bool = True, reuse_search: bool = False,
             cfg: BuildConfig | None = None) -> dict[str, Any]:
    """RL search (Algorithm 1), full SP-KD of the best student, ONNX export with a parity check.

    The search's best student is kept in reports/search_best.pt: cross-fitting starts its fold students
    from it, and `reuse_search` distils it again without searching (same settings, new distillation).
    """
    import torch

    from compression.distill import distill
    from compression.export import check_parity, export_onnx
    from compression.search import search, write_search_report
    from compression.teacher import evaluate
    from networks.checkpoint import load_checkpoint, save_checkpoint
    from networks.family import model_bytes

    # `build` hands the settings on; a stage run on its own (`edgecloud compress`) reads what the last one saved.
    cfg = cfg if cfg is not None else load_config(out)
    torch.manual_seed(cfg.seed)
    teacher = load_checkpoint(_require(out / B.TEACHER_PT, "train-teacher")).eval()
    data = fit_dataset(cfg, dataset)
    search_metrics: dict[str, Any] = {}
    if reuse_search:
        student = load_checkpoint(_require(_reports(out) / SEARCH_BEST_PT, "compress")).train()
        log.info("reusing the search's best student from %s", _reports(out) / SEARCH_BEST_PT)
    else:
        started = time.perf_counter()
        result = search(teacher, data, cfg.search, progress=progress)
        search_seconds = time.perf_counter() - started
        write_search_report(result, _reports(out))
        # Algorithm 1 keeps the best student seen; it now gets the full distillation budget.
        student = result.best_model()
        save_checkpoint(student, _reports(out) / SEARCH_BEST_PT)
        search_metrics = {"student_actions": result.best_actions, "search_best_reward": result.best_reward,
                          "search_best_compression": result.best_compression,
                          "search_best_accuracy": result.best_accuracy, "search_seconds": search_seconds}
    started = time.perf_counter()
    # A stopped distillation resumes from its last epoch (compression/resume.py) when started again.
    history = distill(student, teacher, data, cfg.distill, progress=progress,
                      state_path=_reports(out) / "distill_state.pt")
    distill_seconds = time.perf_counter() - started
    student = student.cpu().eval()
    accuracy = evaluate(student, dataset.test, dataset.mean, dataset.std)
    save_checkpoint(student, _reports(out) / "student.pt")
    c, h, w = dataset.train.x.shape[1:]
    export_onnx(student, out / B.STUDENT_ONNX, input_shape=(c, h, w))
    # A failed parity check raises: an edge must never run a student that differs from the measured one.
    delta = check_parity(student, out / B.STUDENT_ONNX, normalize(dataset.test.x, dataset.mean, dataset.std))
    (_reports(out) / "distill_history.json").write_text(json.dumps(history, indent=2) + "\n")
    return _update_metrics(
        out, student_accuracy=accuracy, student_bytes=model_bytes(student.arch),
        student_params=model_bytes(student.arch) // 4, student_onnx_bytes=(out / B.STUDENT_ONNX).stat().st_size,
        student_arch=student.arch, **search_metrics, distill_seconds=distill_seconds,
        onnx_max_abs_logit_delta=delta, student_distilled_on=len(data.train.y), size_budget=cfg.search.size_budget,
    )


def onnx_logits(onnx_path: Path, x_raw: np.ndarray, mean: Any, std: Any) -> np.ndarray:
    """A bundle network's logits through onnxruntime: exactly what the edge (student) or cloud (teacher) computes."""
    from shared.onnx_session import batch_logits, open_session

    return batch_logits(open_session(onnx_path), normalize(x_raw, mean, std))


def crossfit_logits(out: Path, cfg: BuildConfig, dataset: Dataset, teacher: Any, *, progress: bool = True
                    ) -> np.ndarray:
    """Out-of-fold student logits on train (compression/crossfit.py), cached in reports/crossfit_logits.npz.

    The cache is keyed by everything the logits depend on (folds, distillation settings, seed and the
    search's best student's bytes), so a changed setting recomputes them and an unchanged one reuses them.
    """
    from compression.crossfit import out_of_fold_logits
    from networks.checkpoint import load_checkpoint

    init_path = _require(_reports(out) / SEARCH_BEST_PT, "compress")
    o = cfg.offload
    # The fold students distil as the final student does, for their own number of epochs.
    distill_cfg = cfg.distill if o.fold_epochs is None else cfg.distill.model_copy(update={"epochs": o.fold_epochs})
    key = json.dumps({"folds": o.folds, "distill": distill_cfg.model_dump(mode="json"), "seed": cfg.seed,
                      "init_sha256": B.sha256_file(init_path), "n_train": len(dataset.train.y)}, sort_keys=True)
    path = _reports(out) / CROSSFIT_NPZ
    if path.is_file():
        cached = np.load(path)
        if str(cached["key"]) == key:
            log.info("reusing cross-fitted logits from %s", path)
            return cached["logits"]
    started = time.perf_counter()
    logits = out_of_fold_logits(load_checkpoint(init_path), teacher, dataset, distill_cfg, folds=o.folds,
                                seed=cfg.seed, progress=progress, state_dir=_reports(out) / "crossfit_state",
                                key=key)
    np.savez(path, logits=logits, key=np.array(key))
    _update_metrics(out, crossfit_seconds=time.perf_counter() - started)
    return logits


def offloader_fit_set(out: Path, cfg: BuildConfig, dataset: Dataset, train_logits: np.ndarray, teacher: Any,
                      *, progress: bool = True) -> Any:
    """The population the offloader learns from (offloading.train.FitSet), per `offload.fit_source`."""
    from offloading.train import FitSet

    source = cfg.offload.fit_source
    if source == "train":
        return FitSet(train_logits, dataset.train.y, "train")
    if source == "holdout":
        from compression.crossfit import holdout_indices

        _, held = holdout_indices(len(dataset.train.y), cfg.offload.holdout_fraction, seed=cfg.seed)
        return FitSet(train_logits[held], dataset.train.y[held], "holdout")
    return FitSet(crossfit_logits(out, cfg, dataset, teacher, progress=progress), dataset.train.y, "crossfit")


def train_offloader(out: Path, dataset: Dataset, *, progress: bool = True, cfg: BuildConfig | None = None
                    ) -> B.Manifest:
    """SL offloader with QBC (Algorithm 2), operating point and fusion on validation, then the manifest."""
    from compression.teacher import predict_logits
    from networks.checkpoint import load_checkpoint
    from offloading.report import write_offloading_report
    from offloading.train import train_offloader as fit_offloader

    cfg = cfg if cfg is not None else load_config(out)
    started = time.perf_counter()
    student_onnx = _require(out / B.STUDENT_ONNX, "compress")
    teacher = load_checkpoint(_require(out / B.TEACHER_PT, "train-teacher")).eval()
    splits = {"train": dataset.train, "val": dataset.val, "test": dataset.test}
    s_logits = {k: onnx_logits(student_onnx, v.x, dataset.mean, dataset.std) for k, v in splits.items()}
    # The cloud serves teacher.onnx when the bundle has it: fusion is tuned on the logits it will return.
    # The offloader never reads the teacher on train, so only val and test go through it.
    if (out / B.TEACHER_ONNX).is_file():
        t_logits = {k: onnx_logits(out / B.TEACHER_ONNX, splits[k].x, dataset.mean, dataset.std)
                    for k in ("val", "test")}
    else:
        t_logits = {k: predict_logits(teacher, splits[k].x, dataset.mean, dataset.std) for k in ("val", "test")}
    labels = {k: v.y for k, v in splits.items()}
    logits_seconds = time.perf_counter() - started
    fit = offloader_fit_set(out, cfg, dataset, s_logits["train"], teacher, progress=progress)
    started = time.perf_counter()
    result = fit_offloader(student_logits=s_logits, teacher_logits=t_logits, labels=labels, fit=fit,
                           cfg=cfg.offload)
    with (out / B.OFFLOADER_PKL).open("wb") as handle:
        pickle.dump(result.model, handle, protocol=pickle.HIGHEST_PROTOCOL)
    write_offloading_report(result, _reports(out))

    metrics = _update_metrics(out, offloader_bytes=(out / B.OFFLOADER_PKL).stat().st_size,
                              logits_seconds=logits_seconds, offloader_seconds=time.perf_counter() - started,
                              **result.test_summary())
    spec = B.InputSpec(**input_spec(dataset))
    inputs, outputs = B.image_tensors(spec.shape, len(dataset.classes))
    teacher_onnx = (out / B.TEACHER_ONNX).is_file()
    models = {
        B.TEACHER: B.ModelEntry(
            role=ModelRole.TEACHER, file=B.TEACHER_ONNX if teacher_onnx else None, checkpoint=B.TEACHER_PT,
            inputs=inputs, outputs=outputs, arch=metrics.get("teacher_arch", {}),
            metrics={"accuracy": metrics["teacher_accuracy"], "bytes": metrics["teacher_bytes"]}),
        B.STUDENT: B.ModelEntry(
            role=ModelRole.STUDENT, file=B.STUDENT_ONNX, inputs=inputs, outputs=outputs,
            arch=metrics.get("student_arch", {}),
            metrics={"accuracy": metrics["student_accuracy"], "bytes": metrics["student_bytes"]},
            offloader=B.OffloaderSpec(file=B.OFFLOADER_PKL,
                                      operating_point=B.OperatingPoint(**result.operating_point))),
    }
    manifest = B.Manifest(
        dataset=cfg.dataset,
        input=spec,
        classes=list(dataset.classes),
        models=models,
        metrics=B.Metrics(**{k: v for k, v in metrics.items() if not k.endswith("_arch")}),
    )
    B.write_manifest(out, manifest)
    return B.load_manifest(out)


def build(cfg: BuildConfig, out: Path, dataset: Dataset, *, progress: bool = True) -> B.Manifest:
    """All three stages on one loaded dataset, each handed the same settings (reports/build.json records them)."""
    train_teacher(cfg, out, dataset, progress=progress)
    compress(out, dataset, progress=progress, cfg=cfg)
    return train_offloader(out, dataset, progress=progress, cfg=cfg)
