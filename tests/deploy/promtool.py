"""promtool wrappers: config, rules, rule unit tests, and bare PromQL expressions."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import yaml

from tests.deploy.tools import require_tool, run_tool


def promtool(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_tool([require_tool("promtool"), *args], cwd=cwd)


def check_expressions(exprs: Sequence[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    """Parse plain PromQL EXPRS with Prometheus's own parser, as recording rules in a scratch file."""
    rules = {"groups": [{"name": "expressions",
                         "rules": [{"record": f"check:expr_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = workdir / "expressions.rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return promtool("check", "rules", path, cwd=workdir)
