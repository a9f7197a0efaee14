"""A tiny but real bundle, built in seconds without torch, for testing the online half.

The student is a logistic regression and the teacher a one-hidden-layer MLP, both fitted on
scikit-learn's digits and written as ONNX graphs by hand (Flatten -> MatMul -> Add ...), so the
edge and the cloud load them exactly as they load a bundle from `edgecloud build`. The offloader
is an RBF SVM over the student's logits, the paper's default. `teacher.pt` here is a plain pickle
of the MLP's weights: good enough for the manifest's hashing, not for the cloud's torch backend.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from shared.bundle import (
    InputSpec,
    Manifest,
    Metrics,
    ModelEntry,
    OffloaderSpec,
    OperatingPoint,
    image_tensors,
    write_manifest,
)
from shared.names import ModelRole

SHAPE = (1, 8, 8)


def _graph(layers: list[tuple[np.ndarray, np.ndarray]], name: str) -> onnx.ModelProto:
    """Flatten, then Linear(+ReLU between layers), as an ONNX graph with a dynamic batch axis."""
    nodes = [helper.make_node("Flatten", ["input"], ["h0"], axis=1)]
    inits = []
    current = "h0"
    for i, (weight, bias) in enumerate(layers):
        w_name, b_name = f"W{i}", f"b{i}"
        inits += [numpy_helper.from_array(weight.astype(np.float32), w_name),
                  numpy_helper.from_array(bias.astype(np.float32), b_name)]
        out = "logits" if i == len(layers) - 1 else f"z{i}"
        nodes.append(helper.make_node("MatMul", [current, w_name], [f"m{i}"]))
        nodes.append(helper.make_node("Add", [f"m{i}", b_name], [out]))
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"h{i + 1}"]))
            current = f"h{i + 1}"
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *SHAPE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_tiny_bundle(out_dir: Path, *, seed: int = 0, budget: float = 0.2) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    raw = digits.images.astype(np.uint8).reshape(-1, *SHAPE)  # (N, 1, 8, 8), values 0..16
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(raw, y, test_size=0.2, random_state=seed, stratify=y)
    x_tr, x_va, y_tr, y_va = train_test_split(x_tr, y_tr, test_size=0.15, random_state=seed, stratify=y_tr)
    mean, std = float(x_tr.mean()), float(x_tr.std())

    def flat(x: np.ndarray) -> np.ndarray:
        return ((x.astype(np.float32) - mean) / std).reshape(len(x), -1)

    # A deliberately small student (few iterations) so that it is wrong often enough to offload.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        student = LogisticRegression(max_iter=30, C=0.05).fit(flat(x_tr), y_tr)
    teacher = MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=seed).fit(flat(x_tr), y_tr)
    onnx.save(_graph([(student.coef_.T, student.intercept_)], "student"), out_dir / "student.onnx")
    t_layers = list(zip(teacher.coefs_, teacher.intercepts_, strict=True))
    onnx.save(_graph(t_layers, "teacher"), out_dir / "teacher.onnx")
    with (out_dir / "teacher.pt").open("wb") as handle:
        pickle.dump({"arch": {"kind": "mlp", "hidden": 64}, "layers": t_layers}, handle)

    def logits(x: np.ndarray) -> np.ndarray:
        return student.decision_function(flat(x))

    wrong_tr = student.predict(flat(x_tr)) != y_tr
    offloader = make_pipeline(StandardScaler(), SVC(C=1.0, gamma="scale", class_weight="balanced"))
    offloader.fit(logits(x_tr), wrong_tr)
    with (out_dir / "offloader.pkl").open("wb") as handle:
        pickle.dump(offloader, handle)

    scores_va = offloader.decision_function(logits(x_va))
    threshold = float(np.quantile(scores_va, 1.0 - budget))
    offload_va = scores_va > threshold
    s_ok, t_ok = student.predict(flat(x_va)) == y_va, teacher.predict(flat(x_va)) == y_va
    inputs, outputs = image_tensors(list(SHAPE), 10)
    teacher_accuracy = float(teacher.score(flat(x_te), y_te))
    student_accuracy = float(student.score(flat(x_te), y_te))
    operating_point = OperatingPoint(
        filter="sl",
        threshold=threshold,
        budget=budget,
        val_offload_rate=float(offload_va.mean()),
        val_accuracy=float(np.where(offload_va, t_ok, s_ok).mean()),
    )
    manifest = Manifest(
        dataset="digits",
        input=InputSpec(shape=list(SHAPE), dtype="uint8", mean=[mean], std=[std]),
        classes=[str(c) for c in range(10)],
        models={
            "teacher": ModelEntry(role=ModelRole.TEACHER, file="teacher.onnx", checkpoint="teacher.pt",
                                  inputs=inputs, outputs=outputs, arch={"kind": "mlp", "hidden": 64},
                                  metrics={"accuracy": teacher_accuracy}),
            "student": ModelEntry(role=ModelRole.STUDENT, file="student.onnx", inputs=inputs, outputs=outputs,
                                  arch={"kind": "logistic"}, metrics={"accuracy": student_accuracy},
                                  offloader=OffloaderSpec(file="offloader.pkl", operating_point=operating_point)),
        },
        metrics=Metrics(
            teacher_accuracy=teacher_accuracy,
            student_accuracy=student_accuracy,
            teacher_bytes=(out_dir / "teacher.onnx").stat().st_size,
            student_bytes=(out_dir / "student.onnx").stat().st_size,
            offloader_bytes=(out_dir / "offloader.pkl").stat().st_size,
        ),
    )
    write_manifest(out_dir, manifest)
    np.savez(out_dir.parent / f"{out_dir.name}-test.npz", x=x_te, y=y_te)
    return out_dir


def add_student(bundle_dir: Path, name: str, *, c: float, max_iter: int, seed: int = 0) -> Path:
    """Another real student (a logistic regression of its own) in `bundle_dir`, with its own offloader.

    Written as `NAME.onnx` and `NAME-offloader.pkl`, listed in the manifest under `name`; the bundle's
    default student and teacher stay as they were.
    """
    from shared.bundle import load_manifest

    manifest = load_manifest(bundle_dir)
    digits = load_digits()
    raw = digits.images.astype(np.uint8).reshape(-1, *SHAPE)
    x_tr, _, y_tr, _ = train_test_split(raw, digits.target.astype(np.int64), test_size=0.2, random_state=seed,
                                        stratify=digits.target)
    mean, std = manifest.input.mean[0], manifest.input.std[0]
    flat = ((x_tr.astype(np.float32) - mean) / std).reshape(len(x_tr), -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        student = LogisticRegression(max_iter=max_iter, C=c).fit(flat, y_tr)
    onnx.save(_graph([(student.coef_.T, student.intercept_)], name), bundle_dir / f"{name}.onnx")
    offloader = make_pipeline(StandardScaler(), SVC(C=1.0, gamma="scale", class_weight="balanced"))
    offloader.fit(student.decision_function(flat), student.predict(flat) != y_tr)
    with (bundle_dir / f"{name}-offloader.pkl").open("wb") as handle:
        pickle.dump(offloader, handle)
    template = manifest.student_entry()
    assert template.offloader is not None
    entry = template.model_copy(update={
        "file": f"{name}.onnx", "metrics": {"accuracy": float(student.score(flat, y_tr))},
        "offloader": OffloaderSpec(file=f"{name}-offloader.pkl", operating_point=template.offloader.operating_point)})
    write_manifest(bundle_dir, manifest.model_copy(update={"models": {**manifest.models, name: entry}}))
    return bundle_dir
