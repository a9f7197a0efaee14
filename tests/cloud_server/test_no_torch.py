"""The wire layer never imports torch (the edge imports it), and the cloud only does for --backend torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _torch_modules_after(code: str) -> list[str]:
    probe = code + ("\nimport json, sys\n"
                    "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_shared_wire_layer_never_imports_torch() -> None:
    assert _torch_modules_after("import shared.oip, shared.settings") == []


def test_onnx_cloud_serves_without_importing_torch(tiny_bundle: Path) -> None:
    code = (
        "import numpy as np\n"
        "from fastapi.testclient import TestClient\n"
        "from cloud_server.main import create_app\n"
        "from cloud_server.settings import CloudSettings\n"
        "from shared.oip import encode_request\n"
        f"app = create_app(CloudSettings(bundle={str(tiny_bundle)!r}, threads=1, backend='onnx'))\n"
        "body, headers = encode_request({'input': np.zeros((1, 1, 8, 8), dtype=np.uint8)})\n"
        "with TestClient(app) as client:\n"
        "    reply = client.post('/v2/models/teacher/infer', content=body, headers=headers)\n"
        "assert reply.status_code == 200, reply.text\n"
    )
    assert _torch_modules_after(code) == []
