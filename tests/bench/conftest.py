"""bench/ holds scripts, not a package: its helper modules import each other by bare name, as when run."""

from __future__ import annotations

import sys

from tests.deploy.tools import REPO_ROOT

BENCH_DIR = REPO_ROOT / "bench"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))
