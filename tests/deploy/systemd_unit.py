"""Read a systemd unit file (repeated keys kept, continuation lines joined) and verify it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.deploy.tools import require_tool, run_tool

Unit = dict[str, dict[str, list[str]]]
EXEC_START_BINARY = "/opt/edgecloud/venv/bin/edgecloud"


def parse_unit(text: str) -> Unit:
    """section -> key -> every value given, in order (systemd allows repeats, e.g. Environment=)."""
    unit: Unit = {}
    section = ""
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped[0] in "#;"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical, pending = pending + stripped, ""
        if logical.startswith("[") and logical.endswith("]"):
            section = logical[1:-1]
            unit.setdefault(section, {})
            continue
        key, sep, value = logical.partition("=")
        if not sep:
            raise ValueError(f"not a KEY=value line: {logical!r}")
        unit.setdefault(section, {}).setdefault(key.strip(), []).append(" ".join(value.split()))
    return unit


def environment(unit: Unit) -> dict[str, str]:
    """The unit's Environment= assignments."""
    return dict(a.split("=", 1) for value in unit["Service"].get("Environment", []) for a in value.split())


def verify(unit_file: Path, *, binary: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on a copy whose ExecStart runs BINARY (verify insists it exists)."""
    text = unit_file.read_text()
    if EXEC_START_BINARY not in text:
        raise ValueError(f"{unit_file} does not run {EXEC_START_BINARY}")
    copy = workdir / unit_file.name
    copy.write_text(text.replace(EXEC_START_BINARY, str(binary)))
    return run_tool([require_tool("systemd-analyze"), "verify", copy], cwd=workdir)


def security_exposure(unit_file: Path, *, threshold: float,
                      workdir: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze security --offline`: exits non-zero when the exposure is over THRESHOLD (0-10)."""
    copy = workdir / unit_file.name
    copy.write_text(unit_file.read_text())
    return run_tool([require_tool("systemd-analyze"), "security", "--offline=true", "--no-pager",
                     f"--threshold={round(threshold * 10)}", copy], cwd=workdir)
