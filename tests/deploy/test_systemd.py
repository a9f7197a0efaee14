"""The edge agent's systemd unit: systemd accepts it, it is hardened, and its settings are real."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edge_agent.settings import EdgeSettings
from tests.deploy.contract import SETTINGS_PREFIX, settings_env_names
from tests.deploy.systemd_unit import (
    EXEC_START_BINARY,
    Unit,
    environment,
    parse_unit,
    security_exposure,
    verify,
)
from tests.deploy.tools import SYSTEMD_DIR, explain

UNIT_FILE = SYSTEMD_DIR / "edgecloud-edge.service"
ENV_EXAMPLE = SYSTEMD_DIR / "edge.env.example"
# systemd-analyze rates 0 (locked down) to 10 (fully exposed); "OK" ends at 4.9. Ours is ~1.2.
MAX_EXPOSURE = 2.0


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT_FILE.read_text())


@pytest.fixture
def fake_binary(tmp_path: Path) -> Path:
    binary = tmp_path / "edgecloud"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return binary


def _env_file_assignments(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_systemd_verifies_the_unit_without_a_warning(fake_binary: Path, tmp_path: Path) -> None:
    result = verify(UNIT_FILE, binary=fake_binary, workdir=tmp_path)
    assert result.returncode == 0, explain(result)
    assert result.stdout + result.stderr == "", explain(result)


def test_verify_reports_a_misspelt_directive(fake_binary: Path, tmp_path: Path) -> None:
    # The control: verify only warns (exit 0) on unknown keys, which is why the test above wants no output.
    broken = tmp_path / "broken" / UNIT_FILE.name
    broken.parent.mkdir()
    broken.write_text(UNIT_FILE.read_text().replace("ProtectSystem=", "ProtectSytem="))
    result = verify(broken, binary=fake_binary, workdir=broken.parent)
    assert "Unknown key" in result.stderr and "ProtectSytem" in result.stderr, explain(result)


def test_exposure_score_stays_low(tmp_path: Path) -> None:
    result = security_exposure(UNIT_FILE, threshold=MAX_EXPOSURE, workdir=tmp_path)
    assert result.returncode == 0, explain(result)
    assert "Overall exposure level" in result.stdout


def test_runs_the_venv_agent_as_a_dedicated_user_and_restarts_on_failure(unit: Unit) -> None:
    service = unit["Service"]
    assert service["Type"] == ["simple"]
    assert service["User"] == ["edgecloud"] and service["Group"] == ["edgecloud"]
    assert service["EnvironmentFile"] == ["/etc/edgecloud/edge.env"]
    assert service["ExecStart"][0].startswith(EXEC_START_BINARY)
    assert service["Restart"] == ["on-failure"] and service["RestartSec"]
    # `systemctl reload` is the edge's hot swap (SIGHUP, tests/reliability/test_hot_swap.py).
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in unit["Unit"]["After"][0]


@pytest.mark.parametrize(("key", "value"), [
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectControlGroups", "yes"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ("CapabilityBoundingSet", ""),
    ("MemoryMax", "1G"),
])
def test_hardening_and_memory_limit(unit: Unit, key: str, value: str) -> None:
    assert unit["Service"].get(key) == [value]


def test_bundle_is_read_only_to_the_agent(unit: Unit) -> None:
    paths = " ".join(unit["Service"]["ReadOnlyPaths"]).split()
    assert {p.lstrip("-") for p in paths} == {"/var/lib/edgecloud/bundle"}
    assert environment(unit)["EDGECLOUD_BUNDLE"] == "/var/lib/edgecloud/bundle"


def test_nothing_that_breaks_onnxruntime(unit: Unit) -> None:
    service = unit["Service"]
    # onnxruntime reads /proc/cpuinfo (hidden by ProcSubset=pid) and pins threads (sched_setaffinity).
    assert "ProcSubset" not in service
    assert "MemoryDenyWriteExecute" not in service
    assert not any("@resources" in f for f in service.get("SystemCallFilter", []))


def test_the_token_reaches_the_agent_as_a_credential(unit: Unit) -> None:
    (credential,) = unit["Service"]["LoadCredential"]
    name, path = credential.split(":", 1)
    assert path == "/etc/edgecloud/cloud_token"
    assert environment(unit)["EDGECLOUD_TOKEN_FILE"] == f"%d/{name}"


def test_unit_and_example_env_set_only_real_edge_settings(unit: Unit) -> None:
    allowed = settings_env_names(EdgeSettings)
    names = set(environment(unit)) | set(_env_file_assignments(ENV_EXAMPLE))
    commented = {line.lstrip("#").split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines()
                 if line.startswith("#EDGECLOUD_")}
    for name in names | commented:
        if name.startswith(SETTINGS_PREFIX):
            assert name in allowed, f"{name} is no EdgeSettings field; it has {sorted(allowed)}"


def test_exec_start_leaves_every_setting_to_the_environment(unit: Unit) -> None:
    # A flag would win over edge.env (flags beat EDGECLOUD_*), silently ignoring the user's settings.
    assert unit["Service"]["ExecStart"] == [f"{EXEC_START_BINARY} edge serve"]


def test_the_shipped_environment_validates_as_edge_settings(
        unit: Unit, tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit's defaults overlaid by edge.env.example, as systemd builds them, are valid EdgeSettings."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "cloud_token").write_text("s3cret-token\n")
    merged = {**environment(unit), **_env_file_assignments(ENV_EXAMPLE)}  # EnvironmentFile= wins
    for name in list(os.environ):
        if name.startswith(SETTINGS_PREFIX):
            monkeypatch.delenv(name)
    for name, value in merged.items():
        value = value.replace("%d", str(credentials))  # the credentials directory systemd passes
        monkeypatch.setenv(name, str(tiny_bundle) if value == "/var/lib/edgecloud/bundle" else value)
    settings = EdgeSettings()  # type: ignore[call-arg]  # bundle comes from EDGECLOUD_BUNDLE
    assert settings.bundle == tiny_bundle
    assert settings.bearer_token() == "s3cret-token"
    assert (settings.host, settings.port, settings.threads) == ("0.0.0.0", 8000, 4)
    assert settings.cloud_url is not None and settings.cloud_url.port == 8001


def test_example_env_is_a_plain_key_value_file() -> None:
    # systemd's EnvironmentFile= has no `export` and no shell expansion.
    for key, value in _env_file_assignments(ENV_EXAMPLE).items():
        assert key.isupper() and not key.startswith("export"), key
        assert "$" not in value and not value.startswith(("'", '"')), f"{key}={value}"


def test_parse_unit_keeps_repeats_and_joins_continuations() -> None:
    text = "[Service]\n# c\nEnvironment=A=1\nEnvironment=B=2 C=3\nExecStart=/x \\\n    --y ${A}\n"
    parsed = parse_unit(text)
    assert parsed["Service"]["Environment"] == ["A=1", "B=2 C=3"]
    assert parsed["Service"]["ExecStart"] == ["/x --y ${A}"]
    assert environment(parsed) == {"A": "1", "B": "2", "C": "3"}
