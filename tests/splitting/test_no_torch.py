"""The online half of split inference imports without torch: the device runs the planner in numpy."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

ONLINE = ("edge_agent.split", "edge_agent.app", "serving.split_tail", "cloud_server.hosting", "shared.feature_codec",
          "splitting.setup", "splitting.env", "splitting.evaluate", "splitting.policy", "splitting.live_client",
          "splitting.segments", "splitting.profile", "splitting.regime", "splitting.inputs", "testbed.device")

CODE = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, NoTorch())
import importlib
for module in sys.argv[1:]:
    importlib.import_module(module)
assert not [m for m in sys.modules if m.split(".")[0] == "torch"]
print("ok")
"""


def test_online_split_modules_import_without_torch() -> None:
    done = subprocess.run([sys.executable, "-c", CODE, *ONLINE], capture_output=True, text=True, timeout=120,
                          cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
