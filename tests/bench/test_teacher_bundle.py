"""bench/teacher_bundle.py writes a teacher-only bundle that verifies and that the cloud serves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from cloud_server.main import create_app
from cloud_server.settings import CloudSettings
from shared.bundle import load_manifest
from shared.oip import decode_response, encode_request
from tests.deploy.tools import REPO_ROOT, explain

SCRIPT = REPO_ROOT / "bench" / "teacher_bundle.py"


def test_an_untrained_teacher_bundle_says_so_and_is_served(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = subprocess.run([sys.executable, str(SCRIPT), "--width", "4", "--out", str(out)], capture_output=True,
                            text=True, timeout=300, check=False, cwd=REPO_ROOT)
    assert result.returncode == 0, explain(result)
    manifest = load_manifest(out, verify=True)
    assert list(manifest.models) == ["teacher"] and manifest.metrics.student_accuracy is None
    assert "not trained" in manifest.metrics.note and "width 4" in manifest.metrics.note
    assert f"accuracy {manifest.metrics.teacher_accuracy:.4f}" in result.stdout

    again = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True,
                           timeout=300, check=False, cwd=REPO_ROOT)
    assert again.returncode != 0 and "exists" in again.stderr  # never overwrites a bundle

    x = np.arange(2 * 64, dtype=np.uint8).reshape(2, 1, 8, 8) % 17  # digits pixels are 0..16
    body, headers = encode_request({"input": x}, outputs=("label",))
    with TestClient(create_app(CloudSettings(bundle=out, threads=1))) as client:
        response = client.post("/v2/models/teacher/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    _, outputs = decode_response(response.content, response.headers)
    assert outputs["label"].shape == (2,) and set(outputs["label"].tolist()) <= set(range(10))
