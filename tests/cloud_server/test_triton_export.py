"""`edgecloud export triton`: a Triton repository whose graph takes raw pixels and whose config Triton parses."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2

from cloud_server.triton_export import (
    ExportError,
    TritonExportSettings,
    check_parity,
    export_repository,
    fold_normalisation,
    parse_config,
)
from edgecloud.cli import main
from serving.backends import OnnxBackend
from shared.bundle import load_manifest, write_manifest
from shared.preprocess import ImagePreprocessor


@pytest.fixture(scope="module")
def repository(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "repo"
    export_repository(TritonExportSettings(bundle=tiny_bundle, out=out, max_batch_size=32, max_queue_delay_ms=1.5,
                                           instances=2, threads=3))
    return out


def test_the_repository_has_triton_layout_and_its_config_parses_as_model_config(repository: Path) -> None:
    assert sorted(p.relative_to(repository).as_posix() for p in repository.rglob("*") if p.is_file()) == [
        "teacher/1/model.onnx", "teacher/config.pbtxt", "teacher/labels.txt"]
    config = text_format.Parse((repository / "teacher" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.name == "teacher" and config.backend == "onnxruntime"
    assert config.max_batch_size == 32
    (tensor_in,) = config.input
    assert (tensor_in.name, tensor_in.data_type, list(tensor_in.dims)) == ("input", model_config_pb2.TYPE_UINT8,
                                                                           [1, 8, 8])
    logits, label = config.output
    assert (logits.name, logits.data_type, list(logits.dims)) == ("logits", model_config_pb2.TYPE_FP32, [10])
    assert logits.label_filename == "labels.txt"
    # [N] in the graph, [N, 1] to clients: Triton's documented way for a per-sample scalar.
    assert (label.name, label.data_type, list(label.dims)) == ("label", model_config_pb2.TYPE_INT64, [1])
    assert label.HasField("reshape") and list(label.reshape.shape) == []
    assert config.dynamic_batching.max_queue_delay_microseconds == 1500
    (group,) = config.instance_group
    assert (group.count, group.kind) == (2, model_config_pb2.ModelInstanceGroup.KIND_CPU)
    assert config.parameters["intra_op_thread_count"].string_value == "3"
    assert (repository / "teacher" / "labels.txt").read_text().split() == [str(c) for c in range(10)]


def test_the_exported_graph_on_raw_pixels_answers_what_the_cloud_answers(
        repository: Path, tiny_bundle: Path, tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = tiny_test_split  # (N, 1, 8, 8) uint8 raw pixels
    session = ort.InferenceSession(str(repository / "teacher" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("input", "tensor(uint8)")]
    assert [o.name for o in session.get_outputs()] == ["logits", "label"]
    logits, labels = session.run(["logits", "label"], {"input": x})
    # The cloud's own path: the one normalisation in numpy, then the bundle's graph.
    manifest = load_manifest(tiny_bundle)
    expected = OnnxBackend(tiny_bundle / "teacher.onnx", threads=1).infer(
        ImagePreprocessor.from_spec(manifest.input).normalize(x))
    assert labels.dtype == np.int64 and labels.shape == (len(x),)
    np.testing.assert_array_equal(labels, expected.argmax(axis=1))
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)
    assert (labels == y).mean() == pytest.approx(manifest.metrics.teacher_accuracy)


def test_graphs_with_other_tensor_names_are_renamed_to_ours(tiny_bundle: Path, tmp_path: Path) -> None:
    # A graph whose input is `x` and whose logits are `y`, and which uses the name `input` nowhere.
    manifest = load_manifest(tiny_bundle)
    weight = np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "W"], ["y"])],
        "renamed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], [numpy_helper.from_array(weight, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "renamed.onnx"
    onnx.save(model, str(path))
    folded = fold_normalisation(model, manifest, num_classes=10)
    assert [v.name for v in folded.graph.input] == ["input"]
    assert [v.name for v in folded.graph.output] == ["logits", "label"]
    parity = check_parity(path, folded, manifest, samples=16)
    assert parity.ok and parity.labels_equal and parity.max_abs_logit_diff <= 1e-5


def test_a_folded_graph_with_a_wrong_normalisation_fails_the_parity_check(tiny_bundle: Path) -> None:
    manifest = load_manifest(tiny_bundle)
    model = onnx.load(str(tiny_bundle / "teacher.onnx"))
    wrong = manifest.model_copy(update={"input": manifest.input.model_copy(update={"mean": [0.0]})})
    parity = check_parity(tiny_bundle / "teacher.onnx", fold_normalisation(model, wrong, num_classes=10), manifest,
                          samples=32)
    assert not parity.ok and parity.max_abs_logit_diff > 1e-3


def test_a_misspelt_config_field_does_not_parse() -> None:
    with pytest.raises(ExportError, match="max_batch_sise"):
        parse_config('name: "teacher"\nmax_batch_sise: 4\n')


def test_the_command_writes_the_repository_and_says_what_it_checked(
        tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "repo"
    (out / "teacher" / "2").mkdir(parents=True)  # from an earlier export: it must not survive
    assert main(["export", "triton", "--bundle", str(tiny_bundle), "--out", str(out), "--models", "teacher,student",
                 "--parity-samples", "8"]) == 0
    printed = capsys.readouterr().out
    assert "teacher: " in printed and "student: " in printed and "8 samples: labels equal" in printed
    assert f"tritonserver --model-repository {out}" in printed
    assert sorted(p.name for p in (out / "teacher").iterdir()) == ["1", "config.pbtxt", "labels.txt"]
    for name in ("teacher", "student"):
        config = parse_config((out / name / "config.pbtxt").read_text())
        assert config.name == name and config.max_batch_size == 64  # the cloud server's default batching


def test_the_command_names_a_model_the_bundle_lacks(tiny_bundle: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "triton", "--bundle", str(tiny_bundle), "--out", str(tmp_path / "r"),
                 "--models", "teacher,resnet"]) == 1
    err = capsys.readouterr().err
    assert "model 'resnet' is not in bundle" in err and "['student', 'teacher']" in err
    assert not (tmp_path / "r" / "teacher").exists()  # nothing written before every name was checked


def test_a_tampered_graph_is_refused_before_export(tiny_bundle: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / "teacher.onnx").write_bytes((bundle / "teacher.onnx").read_bytes() + b"\0")
    assert main(["export", "triton", "--bundle", str(bundle), "--out", str(tmp_path / "r")]) == 1
    assert "teacher.onnx" in capsys.readouterr().err


def test_a_bundle_with_float_raw_pixels_exports_an_fp32_input(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = load_manifest(bundle)
    float_input = manifest.input.model_copy(update={"dtype": "float32"})
    write_manifest(bundle, manifest.model_copy(update={"input": float_input}))
    (exported,) = export_repository(TritonExportSettings(bundle=bundle, out=tmp_path / "repo", parity_samples=8))
    assert exported.parity.ok
    config = parse_config(exported.config.read_text())
    assert config.input[0].data_type == model_config_pb2.TYPE_FP32
