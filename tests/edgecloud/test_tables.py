"""edgecloud.tables: the size line the build and the demo print, and the bundle's offline summary."""

from __future__ import annotations

import json
from pathlib import Path

from edgecloud.tables import bundle_lines, size_line
from shared.bundle import REPORTS, InputSpec, Manifest, Metrics, ModelEntry, OffloaderSpec, OperatingPoint
from shared.names import ModelRole


def test_size_line_says_whether_the_target_is_met() -> None:
    assert size_line(4_000, 100_000, 0.05) == (
        "student size: 4.00% of the teacher's parameter bytes (4,000 of 100,000 B); "
        "target ≤ 5% (the build's size budget): met")
    assert size_line(1_200, 100_000, 0.01).endswith("target ≤ 1% (the build's size budget): NOT met")
    assert "no size target" in size_line(1, 10, None)


def test_bundle_lines_read_the_manifest_and_the_build_settings(tmp_path: Path) -> None:
    (tmp_path / REPORTS).mkdir()
    (tmp_path / REPORTS / "build.json").write_text(json.dumps({"search": {"size_budget": 0.05}}))
    manifest = Manifest(
        dataset="digits", input=InputSpec(shape=[1, 8, 8], mean=[0.0], std=[1.0]), classes=list("0123456789"),
        metrics=Metrics(teacher_accuracy=0.98, student_accuracy=0.97, teacher_bytes=100_000, student_bytes=4_500,
                        offloader_bytes=10, cooperative_accuracy=0.9861, offload_rate=0.0947,
                        cooperative_accuracy_fused=0.9889),
        models={
            "teacher": ModelEntry(role=ModelRole.TEACHER, file="teacher.onnx"),
            "student": ModelEntry(role=ModelRole.STUDENT, file="student.onnx", offloader=OffloaderSpec(
                file="offloader.pkl",
                operating_point=OperatingPoint(rule="target", threshold=0.3, budget=0.2, target_accuracy=0.99,
                                               val_offload_rate=0.1, val_accuracy=0.99))),
        },
    )
    size, offline = bundle_lines(tmp_path, manifest)
    assert size.startswith("student size: 4.50%") and "target ≤ 5%" in size and size.endswith("met")
    assert offline == ("offline, test split: cooperation 98.61% at 9.5% offloaded (rule target, target 99.00%); "
                       "with fusion of student and teacher probabilities 98.89%")
