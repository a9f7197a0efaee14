"""Grafana: the provisioned dashboard loads, parses as PromQL and reads only exported series."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.metric_catalog import TARGET_LABELS
from tests.deploy.promql import names_in, problems, substitute_grafana_variables
from tests.deploy.promtool import check_expressions
from tests.deploy.tools import GRAFANA_DIR, explain

DASHBOARD_JSON = GRAFANA_DIR / "dashboards" / "edgecloud.json"
DATASOURCES_DIR = GRAFANA_DIR / "provisioning" / "datasources"
PROVIDERS_DIR = GRAFANA_DIR / "provisioning" / "dashboards"
GRID_COLUMNS = 24
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*(\w+)\s*\)")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_JSON.read_text())


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows, rows themselves excluded."""
    flat: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            flat += panel.get("panels", [])
        else:
            flat.append(panel)
    return flat


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in _panels(dashboard) for target in panel["targets"]]


def _provisioned_datasource() -> dict[str, Any]:
    datasources = [ds for path in sorted(DATASOURCES_DIR.glob("*.yml"))
                   for ds in yaml.safe_load(path.read_text())["datasources"]]
    assert len(datasources) == 1, datasources
    return datasources[0]


def test_dashboard_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "edgecloud"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {ids}"


def test_every_panel_queries_the_provisioned_prometheus(dashboard: dict[str, Any]) -> None:
    datasource = _provisioned_datasource()
    assert datasource["type"] == "prometheus"
    for panel in _panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {panel['title']!r} has an empty query"
            assert target.get("datasource", panel["datasource"]) == panel["datasource"], panel["title"]


def test_every_query_reads_only_exported_series(dashboard: dict[str, Any],
                                                catalog_series: dict[str, frozenset[str]]) -> None:
    for panel in _panels(dashboard):
        for target in panel["targets"]:
            found = problems(target["expr"], catalog_series, target_labels=TARGET_LABELS)
            assert found == [], f"panel {panel['title']!r}, query {target['expr']!r}: {found}"


def test_template_variables_read_exported_series(dashboard: dict[str, Any],
                                                 catalog_series: dict[str, frozenset[str]]) -> None:
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = _LABEL_VALUES.fullmatch(query)
        assert match, f"variable {variable['name']!r}: {query!r} is not label_values(metric, label)"
        metric, label = match.groups()
        assert metric in catalog_series, f"variable {variable['name']!r} reads unknown {metric!r}"
        assert label in catalog_series[metric] | TARGET_LABELS, f"{metric} has no label {label!r}"


def test_every_query_parses_as_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    exprs = [substitute_grafana_variables(e) for e in _exprs(dashboard)]
    result = check_expressions(exprs, tmp_path)
    assert result.returncode == 0, explain(result)
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout + result.stderr


def _queries_reading(dashboard: dict[str, Any], metric: str) -> list[str]:
    return [e for e in _exprs(dashboard) if metric in names_in(e).metrics]


def test_dashboard_covers_what_operators_ask_first(dashboard: dict[str, Any]) -> None:
    assert _queries_reading(dashboard, "edgecloud_edge_offload_ratio"), "no offload ratio panel"

    latency = _queries_reading(dashboard, "edgecloud_edge_latency_seconds_bucket")
    quantiles = {float(m) for e in latency for m in re.findall(r"histogram_quantile\(\s*([\d.]+)", e)}
    assert {0.5, 0.99} <= quantiles, f"latency percentiles shown: {sorted(quantiles)}"
    assert all("source" in names_in(e).grouping_labels for e in latency), "latency must be split by source"

    fallbacks = _queries_reading(dashboard, "edgecloud_edge_fallbacks_total")
    assert any("reason" in names_in(e).grouping_labels for e in fallbacks), "no fallbacks-by-reason panel"

    # Every server of the runtime exports the same per-model series; the panels split them by model.
    for series in ("edgecloud_model_queue_depth", "edgecloud_model_batch_size_bucket",
                   "edgecloud_model_queue_wait_seconds_bucket", "edgecloud_model_compute_seconds_bucket"):
        panels = _queries_reading(dashboard, series)
        assert panels, f"no panel reads {series}"
        assert all("model" in names_in(e).grouping_labels for e in panels), f"{series} must be split by model"
    for counter in ("edgecloud_edge_requests_total", "edgecloud_model_requests_total"):
        rates = [e for e in _queries_reading(dashboard, counter) if "rate(" in e]
        assert rates, f"no request rate of {counter}"


def test_dashboard_shows_the_orchestrators_choices_and_rewards_by_tier_and_variant(dashboard: dict[str, Any]) -> None:
    for series in ("edgecloud_orchestrator_choices_total", "edgecloud_orchestrator_cost_total"):
        panels = _queries_reading(dashboard, series)
        assert panels, f"no panel reads {series}"
        assert all({"tier", "variant"} <= names_in(e).grouping_labels for e in panels), f"{series} by tier, variant"
    assert _queries_reading(dashboard, "edgecloud_orchestrator_reward"), "no reward panel"
    response = _queries_reading(dashboard, "edgecloud_orchestrator_response_seconds_bucket")
    assert response and all("tier" in names_in(e).grouping_labels for e in response)


def test_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= GRID_COLUMNS, f"{panel['title']!r} is off the grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_datasource_points_at_the_compose_prometheus() -> None:
    datasource = _provisioned_datasource()
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["access"] == "proxy"


def test_dashboard_provider_is_well_formed() -> None:
    providers = [p for path in sorted(PROVIDERS_DIR.glob("*.yml"))
                 for p in yaml.safe_load(path.read_text())["providers"]]
    assert len(providers) == 1, providers
    assert providers[0]["type"] == "file"
    assert providers[0]["options"]["path"].startswith("/")
