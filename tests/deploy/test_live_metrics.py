"""The running edge agent and cloud server export every series the dashboard and alerts read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from shared.oip import encode_request
from testbed.services import Service, running
from tests.deploy.metric_catalog import expected_series, exposed_series, load_catalog
from tests.deploy.tools import METRICS_TXT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scraped(tiny_bundle: Path, tiny_test_split: tuple[np.ndarray, np.ndarray],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, frozenset[str]]]]:
    """/metrics of both services after one batch through the edge (labelled series appear on first use)."""
    x, _ = tiny_test_split
    with running(tiny_bundle, log_dir=tmp_path_factory.mktemp("live-logs")) as (cloud, edge):
        body, headers = encode_request({"input": x[:64]})
        answer = httpx.post(f"{edge.url}/v2/models/edge/infer", content=body, headers=headers, timeout=30.0)
        assert answer.status_code == 200, answer.text

        def scrape(service: Service) -> dict[str, frozenset[str]]:
            response = httpx.get(f"{service.url}/metrics", timeout=10.0)
            assert response.status_code == 200, response.text
            return exposed_series(response.text)

        yield {"edge": scrape(edge), "cloud": scrape(cloud)}


# The edge exports its own series and, like every server of the runtime, the per-model ones.
PREFIXES = {"edge": ("edgecloud_edge_", "edgecloud_model_"), "cloud": ("edgecloud_model_",)}


@pytest.mark.parametrize("service", ["edge", "cloud"])
def test_every_catalog_series_is_exported_with_its_labels(
        scraped: dict[str, dict[str, frozenset[str]]], service: str) -> None:
    exposed = scraped[service]
    wanted = {name: labels for name, labels in expected_series(load_catalog(METRICS_TXT)).items()
              if name.startswith(PREFIXES[service])}
    assert wanted, f"deploy/metrics.txt lists no {service} series"
    missing = sorted(set(wanted) - set(exposed))
    assert missing == [], f"the {service} does not export {missing}; it has {sorted(exposed)}"
    for name, labels in wanted.items():
        assert exposed[name] == labels, (
            f"{service} {name}: labels {sorted(exposed[name])}, catalog {sorted(labels)}")
