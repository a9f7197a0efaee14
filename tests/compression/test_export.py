"""compression.export: one self-contained ONNX file per model, and a parity check that really fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from compression import export
from compression.export import ExportError, ParityError, check_parity, export_onnx
from compression.surgery import shrink
from shared.datasets import normalize


@pytest.fixture
def student(tiny_model) -> torch.nn.Module:
    """A shrunk student with inherited weights: removed blocks, 1x1 kernels and a new shortcut."""
    teacher = tiny_model(18)
    actions = [0.6, 0.2, 0.8, 0.0, 0.4, 1.0, 0.6, 0.0, 0.2, 0.4, 0.4, 0.8, 1.0, 0.2, 0.6, 0.0, 0.0]
    return shrink(teacher, actions)


@pytest.fixture
def real_inputs(digits) -> np.ndarray:
    return normalize(digits.test.x[:64], digits.mean, digits.std)


def test_export_is_self_contained_with_agreed_names(tmp_path: Path, student, real_inputs) -> None:
    path = export_onnx(student, tmp_path / "student.onnx", input_shape=(1, 8, 8))
    assert path == tmp_path / "student.onnx"
    assert [p.name for p in tmp_path.iterdir()] == ["student.onnx"]  # no external-data files
    graph = onnx.load(str(path))
    assert [i.name for i in graph.graph.input] == ["input"]
    assert [o.name for o in graph.graph.output] == ["logits"]
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {op.version for op in graph.opset_import if op.domain in ("", "ai.onnx")} == {17}
    # Dynamic batch: the same file runs 1 and 64 samples.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.run(["logits"], {"input": real_inputs[:1]})[0].shape == (1, 10)
    assert session.run(["logits"], {"input": real_inputs})[0].shape == (64, 10)


def test_parity_on_real_inputs(tmp_path: Path, student, real_inputs) -> None:
    student.train()  # export must switch to eval mode (BN running stats), as must the parity check
    path = export_onnx(student, tmp_path / "s.onnx", input_shape=(1, 8, 8))
    assert not student.training
    diff = check_parity(student, path, real_inputs)
    assert 0.0 <= diff <= 1e-4


def test_auto_falls_back_to_the_dynamo_exporter(tmp_path: Path, student, real_inputs, monkeypatch) -> None:
    def legacy_gone(*args: object) -> None:
        raise RuntimeError("legacy exporter removed")

    # A future torch without the legacy exporter: "auto" must still produce a matching single file.
    monkeypatch.setattr(export, "_export_legacy", legacy_gone)
    path = export_onnx(student, tmp_path / "d.onnx", input_shape=(1, 8, 8))
    assert [p.name for p in tmp_path.iterdir()] == ["d.onnx"]
    graph = onnx.load(str(path))
    assert {op.version for op in graph.opset_import if op.domain in ("", "ai.onnx")} == {18}
    assert check_parity(student, path, real_inputs) <= 1e-4


def test_graph_check_rejects_other_shapes_and_names(tmp_path: Path, student) -> None:
    path = tmp_path / "other.onnx"
    export._export_legacy(student, torch.zeros(2, 1, 8, 8), path, 17)
    export._check_graph(path, (1, 8, 8))
    with pytest.raises(ExportError, match="input must be"):
        export._check_graph(path, (1, 16, 16))
    graph = onnx.load(str(path))
    graph.graph.output[0].name = "scores"
    graph.graph.node[-1].output[0] = "scores"
    onnx.save(graph, str(path))
    with pytest.raises(ExportError, match="scores"):
        export._check_graph(path, (1, 8, 8))


def test_corrupted_weights_raise_parity_error(tmp_path: Path, student, real_inputs) -> None:
    path = export_onnx(student, tmp_path / "s.onnx", input_shape=(1, 8, 8))
    graph = onnx.load(str(path))
    # Perturb the largest initializer (a conv weight) slightly, as a bit flip or bad copy would.
    init = max(graph.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weights = numpy_helper.to_array(init).copy()
    weights.flat[0] += 0.5
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    onnx.save(graph, str(path))
    with pytest.raises(ParityError, match="differs"):
        check_parity(student, path, real_inputs)


def test_mismatched_model_raises_parity_error(tmp_path: Path, student, tiny_model, real_inputs) -> None:
    path = export_onnx(student, tmp_path / "s.onnx", input_shape=(1, 8, 8))
    other = shrink(tiny_model(18, seed=1), [1.0] * 17)  # same interface, other weights
    with pytest.raises(ParityError, match="differs"):
        check_parity(other, path, real_inputs)
    nine_classes = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 9))
    with pytest.raises(ParityError, match="shape"):
        check_parity(nine_classes, path, real_inputs)
    with pytest.raises(ParityError, match="cannot run"):
        check_parity(student, path, np.zeros((2, 3, 8, 8), np.float32))


def test_nan_never_passes_parity(tmp_path: Path, student, real_inputs) -> None:
    path = export_onnx(student, tmp_path / "s.onnx", input_shape=(1, 8, 8))
    with pytest.raises(ParityError):
        check_parity(student, path, np.full_like(real_inputs, np.nan))


def test_bad_arguments(tmp_path: Path, student, real_inputs) -> None:
    with pytest.raises(ValueError, match="input_shape"):
        export_onnx(student, tmp_path / "s.onnx", input_shape=(8, 8))  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        check_parity(student, tmp_path / "missing.onnx", real_inputs)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        check_parity(student, tmp_path / "s.onnx", real_inputs[0])
