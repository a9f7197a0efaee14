"""The manifest refuses tampered, incomplete and malformed bundles before unpickling anything."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from shared.bundle import (
    MANIFEST,
    OFFLOADER_PKL,
    STUDENT_ONNX,
    TEACHER_PT,
    BundleError,
    load_manifest,
    load_offloader,
    sha256_file,
    write_manifest,
)
from shared.names import ModelRole


@pytest.fixture
def bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


def test_intact_bundle_loads_and_lists_every_artifact(bundle: Path) -> None:
    manifest = load_manifest(bundle)
    assert {STUDENT_ONNX, OFFLOADER_PKL, TEACHER_PT} <= set(manifest.files)
    for name, entry in manifest.files.items():
        assert entry.sha256 == sha256_file(bundle / name)
        assert entry.bytes == (bundle / name).stat().st_size
    model = load_offloader(bundle, manifest)
    assert hasattr(model, "decision_function")


@pytest.mark.parametrize("name", [STUDENT_ONNX, OFFLOADER_PKL, TEACHER_PT])
def test_one_flipped_byte_is_refused_naming_the_file(bundle: Path, name: str) -> None:
    path = bundle / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{name}.*sha256"):
        load_manifest(bundle)


def test_truncated_file_is_refused_by_size(bundle: Path) -> None:
    path = bundle / STUDENT_ONNX
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(BundleError, match=f"{STUDENT_ONNX}: size"):
        load_manifest(bundle)


def test_missing_file_is_refused(bundle: Path) -> None:
    (bundle / OFFLOADER_PKL).unlink()
    with pytest.raises(BundleError, match=f"{OFFLOADER_PKL}.*missing"):
        load_manifest(bundle)


def test_missing_manifest_and_bad_json_are_refused(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        load_manifest(tmp_path / "nope")
    (bundle / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_manifest(bundle)
    (bundle / MANIFEST).unlink()
    with pytest.raises(BundleError, match="manifest is missing"):
        load_manifest(bundle)


def test_unknown_schema_version_and_invalid_fields_are_refused(bundle: Path) -> None:
    raw = json.loads((bundle / MANIFEST).read_text())
    (bundle / MANIFEST).write_text(json.dumps({**raw, "schema_version": 99}))
    with pytest.raises(BundleError, match="schema_version 99"):
        load_manifest(bundle)
    del raw["models"]["student"]["offloader"]["operating_point"]
    (bundle / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="operating_point"):
        load_manifest(bundle)


def test_required_file_dropped_from_manifest_is_refused(bundle: Path) -> None:
    raw = json.loads((bundle / MANIFEST).read_text())
    del raw["files"][OFFLOADER_PKL]
    (bundle / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=f"{OFFLOADER_PKL}: referenced by a model but not listed"):
        load_manifest(bundle)


class _Payload:
    """A pickle that, when loaded, creates a marker file: what an attacker would plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, int]]:
        return (os.open, (str(self.marker), os.O_CREAT | os.O_WRONLY))


def test_malicious_pickle_is_refused_before_it_runs(bundle: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (bundle / OFFLOADER_PKL).write_bytes(pickle.dumps(_Payload(marker)))
    manifest = load_manifest(bundle, verify=False)
    with pytest.raises(BundleError, match=f"{OFFLOADER_PKL}.*(size|sha256)"):
        load_offloader(bundle, manifest)
    with pytest.raises(BundleError):
        load_manifest(bundle)
    assert not marker.exists(), "the planted pickle ran"
    # Sanity: the payload really does run when unpickled without the check.
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


def _as_v1(raw: dict) -> dict:
    """The manifest as the v1 writer wrote it: fixed file names, arch and operating point at the top."""
    student, teacher = raw["models"]["student"], raw["models"]["teacher"]
    v1 = {k: v for k, v in raw.items() if k not in {"models", "teacher", "student", "artifacts"}}
    return {**v1, "schema_version": 1, "operating_point": student["offloader"]["operating_point"],
            "teacher_arch": teacher["arch"], "student_arch": student["arch"]}


def test_a_v1_manifest_is_upgraded_on_read(bundle: Path) -> None:
    raw = json.loads((bundle / MANIFEST).read_text())
    (bundle / MANIFEST).write_text(json.dumps(_as_v1(raw)))
    manifest = load_manifest(bundle)
    assert manifest.schema_version == 2
    assert manifest.models["teacher"].file == "teacher.onnx" and manifest.models["teacher"].checkpoint == TEACHER_PT
    assert manifest.student_entry().file == STUDENT_ONNX
    assert manifest.operating_point.threshold == raw["models"]["student"]["offloader"]["operating_point"]["threshold"]
    assert manifest.student_arch == raw["models"]["student"]["arch"]
    assert hasattr(load_offloader(bundle, manifest), "decision_function")


def test_a_v1_manifest_without_teacher_onnx_serves_the_checkpoint(bundle: Path) -> None:
    raw = _as_v1(json.loads((bundle / MANIFEST).read_text()))
    del raw["files"]["teacher.onnx"]
    (bundle / MANIFEST).write_text(json.dumps(raw))
    teacher = load_manifest(bundle).models["teacher"]
    assert teacher.file is None and teacher.checkpoint == TEACHER_PT


def test_a_broken_v1_manifest_says_how_to_rebuild(bundle: Path) -> None:
    raw = _as_v1(json.loads((bundle / MANIFEST).read_text()))
    del raw["operating_point"]
    (bundle / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=r"schema_version 1.*operating_point.*edgecloud build"):
        load_manifest(bundle)


def test_a_bundle_carries_several_students_each_with_its_offloader(bundle: Path) -> None:
    manifest = load_manifest(bundle)
    second = manifest.student_entry().model_copy(deep=True)
    shutil.copyfile(bundle / STUDENT_ONNX, bundle / "student-b.onnx")
    shutil.copyfile(bundle / OFFLOADER_PKL, bundle / "offloader-b.pkl")
    second.file, second.offloader.file = "student-b.onnx", "offloader-b.pkl"
    second.offloader.operating_point.threshold = 1.5
    write_manifest(bundle, manifest.model_copy(update={"models": {**manifest.models, "student-b": second}}))
    reread = load_manifest(bundle)
    assert reread.models_with_role(ModelRole.STUDENT) == ["student", "student-b"]
    assert {"student-b.onnx", "offloader-b.pkl"} <= set(reread.files)
    assert reread.student_entry("student-b").offloader.operating_point.threshold == 1.5
    assert reread.operating_point.threshold != 1.5  # the default student is untouched
    assert hasattr(load_offloader(bundle, reread, "student-b"), "decision_function")
    with pytest.raises(BundleError, match=r"no student 'teacher'.*\['student', 'student-b'\]"):
        reread.student_entry("teacher")


def test_every_referenced_file_must_exist_when_written(bundle: Path) -> None:
    manifest = load_manifest(bundle)
    with pytest.raises(BundleError, match=r"policy\.onnx: referenced by the manifest but missing"):
        write_manifest(bundle, manifest.model_copy(update={"artifacts": {"planner": "policy.onnx"}}))


def test_defaults_must_name_models_of_the_right_role(bundle: Path) -> None:
    raw = json.loads((bundle / MANIFEST).read_text())
    (bundle / MANIFEST).write_text(json.dumps({**raw, "student": "teacher"}))
    with pytest.raises(BundleError, match="student 'teacher' is not a model with role 'student'"):
        load_manifest(bundle)
