"""Fixtures shared by the deployment checks."""

from __future__ import annotations

import pytest

from tests.deploy.metric_catalog import expected_series, load_catalog
from tests.deploy.tools import METRICS_TXT

# Series Prometheus makes itself for every target, next to what the services export.
PROMETHEUS_SERIES: dict[str, frozenset[str]] = {"up": frozenset()}


@pytest.fixture(scope="session")
def catalog_series() -> dict[str, frozenset[str]]:
    """Every series a query may read: the services' (deploy/metrics.txt) plus Prometheus's own."""
    return {**expected_series(load_catalog(METRICS_TXT)), **PROMETHEUS_SERIES}
