"""Prometheus: config and alert rules pass promtool, the rules' unit tests pass, names exist."""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.metric_catalog import TARGET_LABELS
from tests.deploy.promql import problems
from tests.deploy.promtool import check_expressions, promtool
from tests.deploy.tools import PROMETHEUS_DIR, explain

PROMETHEUS_YML = PROMETHEUS_DIR / "prometheus.yml"
ALERTS_YML = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST_YML = PROMETHEUS_DIR / "alerts_test.yml"
EDGES_YML = PROMETHEUS_DIR / "targets" / "edges.yml"
REQUIRED_ALERTS = ("EdgecloudCloudDown", "EdgecloudFallbackRateHigh", "EdgecloudEdgeLatencyP99High")


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load(ALERTS_YML)["groups"] for rule in group["rules"]]


def _jobs() -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in _load(PROMETHEUS_YML)["scrape_configs"]}


def test_promtool_accepts_the_config_and_its_rule_files() -> None:
    result = promtool("check", "config", PROMETHEUS_YML, cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, explain(result)
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", ALERTS_YML, cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, explain(result)
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout + result.stderr


def test_alert_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", ALERTS_TEST_YML, cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, explain(result)
    assert "SUCCESS" in result.stdout


def test_alert_rule_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    # The unit tests must pin behaviour: a 50% fallback threshold lets the 10% case through, and fails them.
    shutil.copy(ALERTS_TEST_YML, tmp_path)
    text = ALERTS_YML.read_text()
    assert text.count(") > 0.05") == 1
    (tmp_path / "alerts.yml").write_text(text.replace(") > 0.05", ") > 0.5"))
    result = promtool("test", "rules", tmp_path / ALERTS_TEST_YML.name, cwd=tmp_path)
    assert result.returncode != 0, explain(result)
    assert "EdgecloudFallbackRateHigh" in result.stdout + result.stderr


def test_promtool_rejects_a_broken_expression(tmp_path: Path) -> None:
    # The control for check_expressions, which the dashboard test relies on to parse its queries.
    result = check_expressions(["sum by (le (rate(x[5m]))"], tmp_path)
    assert result.returncode != 0, explain(result)


def test_required_alerts_exist_with_severity_duration_and_summary() -> None:
    rules = {rule["alert"]: rule for rule in _rules()}
    for name in REQUIRED_ALERTS:
        assert name in rules, f"alerts.yml has no {name}; it has {sorted(rules)}"
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule.get("for"), f"{name} fires on a single evaluation; give it a `for:`"
        assert rule["annotations"]["summary"], name


def test_every_alert_is_unit_tested() -> None:
    cases = [case for test in _load(ALERTS_TEST_YML)["tests"] for case in test["alert_rule_test"]]
    tested = {case["alertname"] for case in cases}
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts == tested == firing, f"alerts {alerts}, tested {tested}, tested firing {firing}"


def test_alert_expressions_read_only_exported_series(catalog_series: dict[str, frozenset[str]]) -> None:
    for rule in _rules():
        assert problems(rule["expr"], catalog_series, target_labels=TARGET_LABELS) == [], rule["alert"]


def test_alerts_name_jobs_that_are_scraped() -> None:
    jobs = set(_jobs())
    for rule in _rules():
        for job in ("edgecloud-cloud", "edgecloud-edge"):
            if f'job="{job}"' in rule["expr"]:
                assert job in jobs, f"{rule['alert']} watches job {job!r}; prometheus.yml scrapes {jobs}"
    assert {"edgecloud-cloud", "edgecloud-edge"} <= jobs


def test_cloud_is_scraped_at_the_compose_service_and_port() -> None:
    targets = [t for static in _jobs()["edgecloud-cloud"]["static_configs"] for t in static["targets"]]
    assert targets == ["cloud:8001"]


def test_edge_targets_file_is_found_by_file_sd_and_well_formed() -> None:
    patterns = [f for sd in _jobs()["edgecloud-edge"]["file_sd_configs"] for f in sd["files"]]
    relative = EDGES_YML.relative_to(PROMETHEUS_DIR).as_posix()
    assert any(fnmatch.fnmatch(relative, p) for p in patterns), f"{relative} matches none of {patterns}"
    groups = _load(EDGES_YML)
    assert isinstance(groups, list), "file_sd wants a list of {targets, labels} groups"
    for group in groups:
        assert set(group) <= {"targets", "labels"}, group
        assert all(isinstance(t, str) and ":" in t for t in group["targets"]), group


def test_the_commented_example_in_the_edge_targets_file_is_valid_file_sd() -> None:
    # Users uncomment it; it must be a list of groups whose targets are host:port.
    lines = EDGES_YML.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "For example" in line) + 1
    example = []
    for line in lines[start:]:
        if line.strip() == "#" and example:
            break
        if line.startswith("# "):
            example.append(line.removeprefix("# "))
    groups = yaml.safe_load("\n".join(example))
    assert groups and all(":" in t for g in groups for t in g["targets"]), example
    assert all(isinstance(v, str) for g in groups for v in g["labels"].values()), example
