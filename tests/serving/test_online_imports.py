"""The online half imports no training code: nothing of torch, networks/, compression/ or the offline
parts of offloading/ is loaded by a running edge or cloud (the edge never has torch; a cloud image
without torch must serve every ONNX model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

OFFLINE = ("torch", "networks", "compression", "offloading.train", "offloading.qbc", "offloading.models",
           "offloading.calibration", "offloading.fusion_tuning", "offloading.comparison",
           "offloading.report", "offloading.operating_point", "offloading.resampling", "matplotlib")


def _offline_modules_after(code: str) -> list[str]:
    probe = code + ("\nimport json, sys\n"
                    f"offline = {OFFLINE!r}\n"
                    "print(json.dumps(sorted(m for m in sys.modules if m in offline "
                    "or m.split('.')[0] in ('torch', 'networks', 'compression', 'matplotlib'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _serve_once(factory: str, settings: str, model: str, tiny_bundle: Path) -> str:
    return (
        "import numpy as np\n"
        "from fastapi.testclient import TestClient\n"
        f"{factory}\n"
        "from shared.oip import encode_request\n"
        f"app = create_app({settings})\n"
        "body, headers = encode_request({'input': np.zeros((2, 1, 8, 8), dtype=np.uint8)})\n"
        "with TestClient(app) as client:\n"
        f"    reply = client.post('/v2/models/{model}/infer', content=body, headers=headers)\n"
        "    assert reply.status_code == 200, reply.text\n"
        "    assert client.post('/v2/repository/index').status_code == 200\n"
    )


def test_the_runtime_alone_imports_no_training_code() -> None:
    assert _offline_modules_after("import serving.app, serving.model, serving.batcher, serving.repository") == []


def test_a_serving_cloud_imports_no_training_code(tiny_bundle: Path) -> None:
    code = _serve_once("from cloud_server.main import create_app\nfrom cloud_server.settings import CloudSettings",
                       f"CloudSettings(bundle={str(tiny_bundle)!r}, threads=1)", "teacher", tiny_bundle)
    assert _offline_modules_after(code) == []


def test_a_serving_edge_imports_no_training_code(tiny_bundle: Path) -> None:
    code = _serve_once("from edge_agent.app import create_app\nfrom edge_agent.settings import EdgeSettings",
                       f"EdgeSettings(bundle={str(tiny_bundle)!r}, threads=1)", "edge", tiny_bundle)
    assert _offline_modules_after(code) == []


def test_the_probe_sees_an_offline_import_when_there_is_one() -> None:
    # The check above is only worth something if it can fail.
    assert "compression" in _offline_modules_after("import compression")
