"""Suite-wide fixtures."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.deploy.tools import explain
from tests.helpers.tiny_bundle import make_tiny_bundle

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (sklearn-made) digits bundle; treat it as read-only, copy it to tamper with it."""
    return make_tiny_bundle(tmp_path_factory.mktemp("bundles") / "tiny")


@pytest.fixture(scope="session")
def tiny_test_split(tiny_bundle: Path) -> tuple[np.ndarray, np.ndarray]:
    """The tiny bundle's held-out raw uint8 samples (N,1,8,8) and labels."""
    data = np.load(tiny_bundle.parent / f"{tiny_bundle.name}-test.npz")
    return data["x"], data["y"]


@pytest.fixture(scope="session")
def triton_venv() -> None:
    """.venv-triton (the real Triton server's Python 3.12), made here when `make test` has not made it; failing to
    make it fails the test."""
    if (REPO_ROOT / ".venv-triton" / ".installed").is_file():
        return
    result = subprocess.run(["make", "--no-print-directory", ".venv-triton/.installed"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=1800, check=False)
    if result.returncode != 0:
        pytest.fail(f"cannot create .venv-triton (needs Python 3.12 at TRITON_PYTHON and PyPI):\n{explain(result)}",
                    pytrace=False)
