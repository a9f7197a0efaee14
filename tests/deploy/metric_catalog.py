"""deploy/metrics.txt: the Prometheus series the dashboard and alert rules rely on.

`load_catalog` reads the file; `expected_series` expands it into the sample names a scrape shows
(a histogram NAME becomes NAME_bucket, NAME_sum and NAME_count); `exposed_series` reads the same
names and labels back from a service's /metrics text, so a test against a running edge or cloud can
compare the two in a few lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

METRIC_TYPES: tuple[str, ...] = ("counter", "gauge", "histogram")
# Every scraped series carries these (Prometheus adds job/instance); `le` only on histogram buckets.
TARGET_LABELS: frozenset[str] = frozenset({"job", "instance"})
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class CatalogError(ValueError):
    """A malformed line in the metrics catalog; the message names the file and line."""


@dataclass(frozen=True)
class MetricSpec:
    name: str                    # as exposed: counters end in _total, histograms are the base name
    type: str                    # one of METRIC_TYPES
    labels: frozenset[str]       # labels the service sets (not job/instance/le)


def load_catalog(path: Path) -> dict[str, MetricSpec]:
    """Parse `name type labels` lines (labels comma-separated, `-` for none; `#` starts a comment)."""
    catalog: dict[str, MetricSpec] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        where = f"{path}:{number}"
        if len(fields) != 3:
            raise CatalogError(f"{where}: expected 'name type labels', got {raw!r}")
        name, kind, labels = fields
        if not _NAME.match(name):
            raise CatalogError(f"{where}: {name!r} is not a Prometheus metric name")
        if kind not in METRIC_TYPES:
            raise CatalogError(f"{where}: type {kind!r} is not one of {METRIC_TYPES}")
        if kind == "counter" and not name.endswith("_total"):
            raise CatalogError(f"{where}: counter {name!r} must be listed as exposed, ending in _total")
        if name in catalog:
            raise CatalogError(f"{where}: {name!r} is listed twice")
        label_set = frozenset() if labels == "-" else frozenset(labels.split(","))
        catalog[name] = MetricSpec(name=name, type=kind, labels=label_set)
    return catalog


def expected_series(catalog: dict[str, MetricSpec]) -> dict[str, frozenset[str]]:
    """Sample name -> the label names its samples carry, before Prometheus adds job and instance."""
    series: dict[str, frozenset[str]] = {}
    for spec in catalog.values():
        if spec.type == "histogram":
            series[f"{spec.name}_bucket"] = spec.labels | {"le"}
            series[f"{spec.name}_sum"] = spec.labels
            series[f"{spec.name}_count"] = spec.labels
        else:
            series[spec.name] = spec.labels
    return series


def exposed_series(exposition: str) -> dict[str, frozenset[str]]:
    """Sample name -> label names seen, from Prometheus text exposition (a /metrics body)."""
    seen: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            seen.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in seen.items()}
