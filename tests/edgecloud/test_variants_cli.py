"""`edgecloud variants` end to end on a tiny digits build: search-front variants, the student, another
bundle's model, int8 copies, and the profile the orchestrator reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgecloud.cli import main
from orchestration.profiles import profiles_from_manifest
from shared import bundle as B
from shared.names import ModelRole
from tests.edgecloud.test_build_cli import TINY

pytestmark = pytest.mark.slow


def test_variants_span_the_search_front_the_student_and_imports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "bundle"
    assert main(["build", "--out", str(out), "--config", str(config), "--no-progress"]) == 0
    other = tmp_path / "other"
    shutil.copytree(out, other)
    assert main(["variants", "--bundle", str(out), "--count", "1", "--epochs", "1", "--no-progress",
                 "--add", f"copy={other}:teacher"]) == 0
    printed = capsys.readouterr().out
    manifest = B.load_manifest(out)
    variants = set(manifest.models_with_role(ModelRole.VARIANT))
    assert {"copy", "copy-int8", "teacher-int8", "variant-a", "variant-a-int8", "student-int8"} <= variants
    # The edge's own student is in the family under its own name, still the student with its offloader.
    assert "latency_ms" in manifest.models["student"].metrics and manifest.models["student"].offloader
    assert manifest.models["copy"].parameters["from"] == f"{other}:teacher"
    profiles = profiles_from_manifest(out, manifest)
    assert {"student", "copy"} <= set(profiles.names)
    # digits has no files: a request is raw pixels plus the protocol's overhead.
    assert profiles.request_bytes == 64 + 200
    assert "| student |" in printed
    # Another bundle whose input differs is refused by name.
    broken = tmp_path / "broken"
    shutil.copytree(other, broken)
    raw = json.loads((broken / "manifest.json").read_text())
    raw["input"]["mean"] = [0.0]
    (broken / "manifest.json").write_text(json.dumps(raw))
    assert main(["variants", "--bundle", str(out), "--count", "1", "--epochs", "1", "--no-progress",
                 "--add", f"bad={broken}:teacher"]) == 2
    assert "a variant must take the same normalised images" in capsys.readouterr().err
    # --count 0 distils nothing: the family is the teacher, the student and their int8 copies.
    assert main(["variants", "--bundle", str(other), "--count", "0", "--no-progress"]) == 0
    zero = B.load_manifest(other)
    assert set(zero.models_with_role(ModelRole.VARIANT)) == {"teacher-int8", "student-int8"}
    assert zero.models["student-int8"].parameters == {"bits": 8, "from": "student"}
