"""docker-compose.yml: Compose validates it, and it wires the cloud, Prometheus and Grafana together."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud_server.settings import CloudSettings
from tests.deploy.compose import (
    COMPOSE_FILE,
    clean_env,
    compose_config,
    mounts,
    published_ports,
    resolved_config,
)
from tests.deploy.contract import SETTINGS_PREFIX, settings_env_names
from tests.deploy.tools import GRAFANA_DIR, PROMETHEUS_DIR, REPO_ROOT, explain

CLOUD_PORT = 8001


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return resolved_config()["services"]


def test_compose_validates_the_file() -> None:
    result = compose_config(quiet=True)
    assert result.returncode == 0, explain(result)
    assert "WARN" not in result.stderr.upper(), result.stderr


def test_compose_rejects_a_misspelt_key(tmp_path: Path) -> None:
    # The control: `config -q` must really check the schema, or the test above proves nothing.
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE_FILE.read_text()
    broken.write_text(text.replace("    restart: unless-stopped\n", "    restrat: no\n", 1))
    result = compose_config(broken, quiet=True)
    assert result.returncode != 0, explain(result)
    assert "restrat" in result.stdout + result.stderr


def test_services_restart_and_cloud_is_built_here(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"cloud", "prometheus", "grafana"}
    for name, service in services.items():
        assert service["restart"] in {"always", "unless-stopped", "on-failure"}, name
    assert Path(services["cloud"]["build"]["context"]) == REPO_ROOT
    assert services["prometheus"]["image"].startswith("prom/prometheus:v")
    assert services["grafana"]["image"].startswith("grafana/grafana")


def test_bundle_is_mounted_read_only_from_models_cifar10_by_default(services: dict[str, dict[str, Any]]) -> None:
    bundle = [m for m in mounts(services["cloud"]) if m.target == "/bundle"]
    assert len(bundle) == 1 and bundle[0].read_only, mounts(services["cloud"])
    assert Path(bundle[0].source) == REPO_ROOT / "models" / "cifar10"
    assert services["cloud"]["environment"]["EDGECLOUD_BUNDLE"] == "/bundle"


def test_bundle_dir_comes_from_the_environment(tmp_path: Path) -> None:
    cloud = resolved_config(EDGECLOUD_BUNDLE_DIR=str(tmp_path))["services"]["cloud"]
    assert [Path(m.source) for m in mounts(cloud) if m.target == "/bundle"] == [tmp_path]


def test_cloud_reads_its_token_from_a_secret_file(services: dict[str, dict[str, Any]]) -> None:
    cloud = services["cloud"]
    env = cloud["environment"]
    assert "EDGECLOUD_TOKEN" not in env, "a token value in `environment` leaks through docker inspect"
    assert env["EDGECLOUD_TOKEN_FILE"] == "/run/secrets/cloud_token"
    assert [s["source"] if isinstance(s, dict) else s for s in cloud["secrets"]] == ["cloud_token"]
    secret_file = Path(resolved_config()["secrets"]["cloud_token"]["file"])
    assert secret_file.parent == REPO_ROOT / "deploy" / "secrets"
    # The token must never be committed: that directory ignores everything but its .gitignore.
    rules = [line for line in (secret_file.parent / ".gitignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert rules == ["*", "!.gitignore"]


def test_cloud_environment_names_real_settings(services: dict[str, dict[str, Any]]) -> None:
    allowed = settings_env_names(CloudSettings)
    for name in services["cloud"]["environment"]:
        if name.startswith(SETTINGS_PREFIX):
            assert name in allowed, f"{name} is no CloudSettings field; it has {sorted(allowed)}"


def _container_settings(environment: dict[str, str | None], *, bundle: Path, token_file: Path,
                        monkeypatch: pytest.MonkeyPatch) -> CloudSettings:
    """CloudSettings as the container builds them, its /bundle and secret swapped for local files."""
    for name in list(os.environ):
        if name.startswith(SETTINGS_PREFIX):
            monkeypatch.delenv(name)
    paths = {"/bundle": str(bundle), "/run/secrets/cloud_token": str(token_file)}
    for name, value in environment.items():
        if value is not None:  # null: passed through only when the host sets it
            monkeypatch.setenv(name, paths.get(value, value))
    return CloudSettings()  # type: ignore[call-arg]  # bundle comes from EDGECLOUD_BUNDLE


def test_the_cloud_environment_validates_as_cloud_settings(
        tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "cloud_token"
    token_file.write_text("s3cret-token\n")
    files = {"bundle": tiny_bundle, "token_file": token_file, "monkeypatch": monkeypatch}
    environment = resolved_config()["services"]["cloud"]["environment"]
    settings = _container_settings(environment, **files)
    assert settings.bundle == tiny_bundle and settings.token_file == token_file
    assert settings.max_batch_size == CloudSettings.model_fields["max_batch_size"].default

    # A tuning variable set on the host reaches the server.
    tuned = resolved_config(EDGECLOUD_MAX_BATCH_SIZE="16", EDGECLOUD_BACKEND="torch")
    settings = _container_settings(tuned["services"]["cloud"]["environment"], **files)
    assert (settings.max_batch_size, settings.backend) == (16, "torch")


def test_cloud_healthcheck_and_port_match_the_server(services: dict[str, dict[str, Any]]) -> None:
    cloud = services["cloud"]
    check = " ".join(cloud["healthcheck"]["test"])
    assert f"http://127.0.0.1:{CLOUD_PORT}/v2/health/ready" in check
    assert cloud["healthcheck"]["test"][0] == "CMD" and "curl" not in check
    assert published_ports(cloud) == {CLOUD_PORT: CLOUD_PORT}


def test_prometheus_gets_its_config_rules_and_targets(services: dict[str, dict[str, Any]]) -> None:
    prometheus = services["prometheus"]
    config = {m.target: m for m in mounts(prometheus)}["/etc/prometheus"]
    assert Path(config.source) == PROMETHEUS_DIR and config.read_only
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    for name in ("prometheus.yml", "alerts.yml", "targets/edges.yml"):
        assert (PROMETHEUS_DIR / name).is_file(), name
    assert any(m.target == "/prometheus" and not m.read_only for m in mounts(prometheus)), "no TSDB volume"
    assert published_ports(prometheus) == {9090: 9090}


def test_grafana_gets_its_provisioning_and_the_dashboard_where_the_provider_looks(
        services: dict[str, dict[str, Any]]) -> None:
    by_target = {m.target: m for m in mounts(services["grafana"])}
    provisioning = by_target["/etc/grafana/provisioning"]
    assert Path(provisioning.source) == GRAFANA_DIR / "provisioning" and provisioning.read_only
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "edgecloud.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert Path(by_target[path].source) == GRAFANA_DIR / "dashboards"
    assert (GRAFANA_DIR / "dashboards" / "edgecloud.json").is_file()
    assert services["grafana"]["environment"]["GF_USERS_ALLOW_SIGN_UP"] == "false"


def test_admin_password_comes_from_the_environment() -> None:
    env = clean_env(GRAFANA_ADMIN_PASSWORD="s3cret")
    result = compose_config(env=env)
    assert result.returncode == 0, explain(result)
    grafana = yaml.safe_load(result.stdout)["services"]["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "s3cret"
