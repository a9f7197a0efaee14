"""deploy/metrics.txt agrees with the contract, and its naming is what prometheus_client exposes."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tests.deploy.contract import contract_metrics
from tests.deploy.metric_catalog import (
    CatalogError,
    MetricSpec,
    expected_series,
    exposed_series,
    load_catalog,
)
from tests.deploy.promql import names_in, problems, substitute_grafana_variables
from tests.deploy.tools import METRICS_TXT


def test_catalog_lists_exactly_the_contract_metrics() -> None:
    catalog = load_catalog(METRICS_TXT)
    contract = contract_metrics()
    assert set(catalog) == set(contract), (
        f"only in deploy/metrics.txt: {sorted(set(catalog) - set(contract))}; "
        f"only in docs/architecture.md: {sorted(set(contract) - set(catalog))}")
    for name, spec in catalog.items():
        assert spec == contract[name], f"{name}: metrics.txt says {spec}, the contract {contract[name]}"


def _expose(catalog: dict[str, MetricSpec]) -> str:
    """What a service defining CATALOG with prometheus_client serves on /metrics."""
    registry = CollectorRegistry()
    for spec in catalog.values():
        labels = sorted(spec.labels)
        values = ["x"] * len(labels)
        if spec.type == "counter":
            metric = Counter(spec.name, spec.name, labels, registry=registry)
            (metric.labels(*values) if labels else metric).inc()
        elif spec.type == "gauge":
            metric = Gauge(spec.name, spec.name, labels, registry=registry)
            (metric.labels(*values) if labels else metric).set(1.0)
        else:
            metric = Histogram(spec.name, spec.name, labels, registry=registry)
            (metric.labels(*values) if labels else metric).observe(0.1)
    return generate_latest(registry).decode()


def test_prometheus_client_exposes_every_catalog_series_with_its_labels() -> None:
    catalog = load_catalog(METRICS_TXT)
    exposed = exposed_series(_expose(catalog))
    for name, labels in expected_series(catalog).items():
        assert name in exposed, f"{name} is not what prometheus_client exposes; it has {sorted(exposed)}"
        assert exposed[name] == labels, f"{name}: exposed labels {exposed[name]}, catalog {labels}"


def test_histograms_expand_to_bucket_sum_and_count() -> None:
    series = expected_series({"h": MetricSpec("h", "histogram", frozenset({"source"}))})
    assert series == {"h_bucket": {"source", "le"}, "h_sum": {"source"}, "h_count": {"source"}}


@pytest.mark.parametrize(("line", "problem"), [
    ("edgecloud_x_total counter", "expected 'name type labels'"),
    ("edgecloud_x_total summary -", "type 'summary'"),
    ("edgecloud_requests counter -", "must be listed as exposed, ending in _total"),
    ("9bad gauge -", "not a Prometheus metric name"),
])
def test_load_catalog_rejects_bad_lines_naming_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "metrics.txt"
    path.write_text(f"# header\n{line}\n")
    with pytest.raises(CatalogError, match=problem) as info:
        load_catalog(path)
    assert f"{path}:2" in str(info.value)


def test_load_catalog_rejects_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "metrics.txt"
    path.write_text("a gauge -\na gauge -\n")
    with pytest.raises(CatalogError, match="listed twice"):
        load_catalog(path)


def test_names_in_finds_metrics_and_labels_through_functions_and_grouping() -> None:
    names = names_in('histogram_quantile(0.99, sum by (source, le) (rate('
                     'edgecloud_edge_latency_seconds_bucket{instance=~"$edge", le!="{}"}[$__rate_interval])))'
                     ' / on (instance) group_left up offset 5m')
    assert names.metrics == {"edgecloud_edge_latency_seconds_bucket", "up"}
    assert names.matcher_labels == {"edgecloud_edge_latency_seconds_bucket": {"instance", "le"}}
    assert names.grouping_labels == {"source", "le", "instance"}


def test_names_in_sees_bare_metrics_and_binary_operators() -> None:
    names = names_in("sum(rate(a_total[5m])) by (job) / ignoring(x) b_total > bool 0.5 and c unless d")
    assert names.metrics == {"a_total", "b_total", "c", "d"}
    assert names.grouping_labels == {"job", "x"}


def test_grafana_variables_become_plain_promql() -> None:
    assert substitute_grafana_variables('rate(x{i=~"$edge"}[$__rate_interval])') == 'rate(x{i=~".*"}[5m])'


def test_problems_names_unknown_metrics_and_labels() -> None:
    series = {"a_total": frozenset({"source"}), "h_bucket": frozenset({"le"})}
    targets = frozenset({"job", "instance"})
    query = 'sum by (source, instance) (rate(a_total{job="x"}[5m]))'
    assert problems(query, series, target_labels=targets) == []
    assert problems('rate(a_totl[5m])', series, target_labels=targets) == ["unknown metric 'a_totl'"]
    assert problems('a_total{reason="x"}', series, target_labels=targets) == ["a_total has no label 'reason'"]
    assert problems("sum by (code) (h_bucket)", series, target_labels=targets) == [
        "grouping by 'code', which none of ['h_bucket'] has"]
