"""The edge works on a machine without torch: `import torch` is made to fail in the subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from shared.oip import decode_response, encode_request
from testbed.services import free_port
from tests.conftest import REPO_ROOT
from tests.edge_agent.helpers import StubBehaviour

# A meta-path finder that refuses torch, then the real CLI; any torch import anywhere fails loudly.
PRELUDE = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is not installed on this edge (blocked: {name})")
        return None
sys.meta_path.insert(0, NoTorch())
from edgecloud.cli import main
code = main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
assert not leaked, leaked
raise SystemExit(code)
"""


def no_torch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", PRELUDE, *args]


def test_the_blocker_really_blocks_torch() -> None:
    done = subprocess.run([sys.executable, "-c", PRELUDE.replace("from edgecloud.cli import main", "import torch")],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.returncode != 0 and "torch is not installed on this edge" in done.stderr


def test_edge_run_without_torch(tiny_bundle: Path, tmp_path: Path, stub: tuple[str, StubBehaviour]) -> None:
    out = tmp_path / "answers.jsonl"
    done = subprocess.run(no_torch_cmd("edge", "run", "--bundle", str(tiny_bundle), "--cloud-url", stub[0],
                                       "--dataset", "digits", "--out", str(out), "--limit", "200",
                                       "--batch-size", "50", "--no-progress"),
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(200))
    sources = {r["source"] for r in rows}
    assert sources == {"edge", "cloud"}
    assert "answered  200" in done.stdout and "by source cloud=" in done.stdout


@pytest.mark.slow
def test_edge_serve_without_torch(tiny_bundle: Path, tmp_path: Path, stub: tuple[str, StubBehaviour],
                                  tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    port = free_port()
    log = (tmp_path / "edge.log").open("wb")
    process = subprocess.Popen(no_torch_cmd("edge", "serve", "--bundle", str(tiny_bundle), "--cloud-url", stub[0],
                                            "--port", str(port), "--log-level", "warning"),
                               stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "edge.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "edge serve did not become ready"
            time.sleep(0.2)
        x = tiny_test_split[0][:64]
        body, headers = encode_request({"input": x})
        response = httpx.post(f"{url}/v2/models/edge/infer", content=body, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        _, outputs = decode_response(response.content, response.headers)
        assert outputs["label"].shape == (64,)
        assert {s.decode() for s in outputs["source"]} == {"edge", "cloud"}
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
    # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully, hence -15.
    log_text = (tmp_path / "edge.log").read_text()
    assert process.returncode in (0, -15), log_text[-3000:]
    assert "Traceback" not in log_text and "ImportError" not in log_text
