"""A real Prometheus, run with the project's config, scrapes a running cloud and edge; its API agrees
with what a known workload did.

The config is deploy/prometheus/prometheus.yml with only what a test must change: the cloud's
static target and the edge's file_sd targets point at the test's loopback ports, scrapes and rule
evaluations run every second, and storage is a temporary directory. The rule file is the project's.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from shared.oip import decode_response, encode_request
from testbed.services import Service, free_port, running
from tests.deploy.tools import PROMETHEUS_DIR

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="the `prometheus` binary is not on PATH: install the Debian "
                       "package 'prometheus' (`make system-deps` does) to run Prometheus against live services"),
]

CLOUD_JOB, EDGE_JOB = "edgecloud-cloud", "edgecloud-edge"
SCRAPE_INTERVAL = "1s"


def derive_config(work: Path, *, cloud_target: str, edge_target: str) -> Path:
    """Write work/prometheus.yml: the project's config with the test's targets, 1 s intervals."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = SCRAPE_INTERVAL
    config["global"]["evaluation_interval"] = SCRAPE_INTERVAL
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {CLOUD_JOB, EDGE_JOB} <= jobs.keys(), f"prometheus.yml has jobs {sorted(jobs)}"

    cloud = jobs[CLOUD_JOB]
    assert cloud.get("static_configs"), f"job {CLOUD_JOB} no longer uses static_configs: {cloud}"
    for static in cloud["static_configs"]:
        static["targets"] = [cloud_target]  # keep its labels (role: cloud)

    # The edge job keeps its file-based discovery; only the targets file it reads is the test's own.
    edge = jobs[EDGE_JOB]
    patterns = [pattern for sd in edge.get("file_sd_configs", []) for pattern in sd["files"]]
    assert patterns, f"job {EDGE_JOB} no longer uses file_sd_configs: {edge}"
    targets_file = work / patterns[0].replace("*", "edges")
    targets_file.parent.mkdir(parents=True, exist_ok=True)
    targets_file.write_text(yaml.safe_dump([{"targets": [edge_target], "labels": {"site": "test"}}]))

    for rule_file in config.get("rule_files", []):
        shutil.copy(PROMETHEUS_DIR / rule_file, work / rule_file)
    path = work / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class Prometheus:
    url: str
    log_path: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10.0)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{expr}: {response.text}"
        return list(body["data"]["result"])

    def scalar(self, expr: str) -> float:
        result = self.query(expr)
        assert len(result) == 1, f"{expr} gave {len(result)} series, wanted 1: {result}"
        return float(result[0]["value"][1])

    def by_label(self, expr: str, label: str) -> dict[str, float]:
        return {series["metric"][label]: float(series["value"][1]) for series in self.query(expr)}


@contextlib.contextmanager
def prometheus(config: Path, work: Path) -> Iterator[Prometheus]:
    """Run the prometheus binary on loopback until the block exits; its log goes to work/prometheus.log."""
    assert PROMETHEUS is not None
    port = free_port()
    log_path = work / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=info"],
            cwd=work, stdout=log, stderr=subprocess.STDOUT)
    server = Prometheus(f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 60.0
        while True:
            assert process.poll() is None, f"prometheus exited {process.returncode}:\n{log_path.read_text()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/-/ready", timeout=1.0).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"prometheus not ready in 60 s:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Workload:
    """What the test did, counted from the answers it got back."""

    edge_answers: dict[str, int]       # samples by source, as the edge's responses named them
    cloud_requests: dict[str, int]     # infer requests the cloud answered, by status code


def edge_infer(edge: Service, x: np.ndarray, strategy: str) -> list[str]:
    body, headers = encode_request({"input": x}, outputs=("label", "source"), parameters={"strategy": strategy})
    response = httpx.post(f"{edge.url}/v2/models/edge/infer", content=body, headers=headers, timeout=30.0)
    assert response.status_code == 200, response.text
    _, outputs = decode_response(response.content, response.headers)
    return [s.decode() if isinstance(s, bytes) else str(s) for s in outputs["source"].reshape(-1)]


def drive(cloud: Service, edge: Service, x: np.ndarray) -> Workload:
    """Edge-only, cloud-only and per-sample cooperation through the edge, plus one bad request to the cloud."""
    answers = {"edge": 0, "cloud": 0, "edge-fallback": 0}
    cloud_requests = {"200": 0}
    # The edge sends one cloud request per edge request that has an offloaded sample (no retries on a
    # healthy loopback cloud: the test checks below that nothing fell back).
    for source in edge_infer(edge, x[:40], "edge_only"):
        answers[source] += 1
    sources = edge_infer(edge, x[40:65], "cloud_only")
    cloud_requests["200"] += 1
    for source in sources:
        answers[source] += 1
    for i in range(65, 125):
        (source,) = edge_infer(edge, x[i:i + 1], "cooperation")
        answers[source] += 1
        cloud_requests["200"] += source == "cloud"
    bad = httpx.post(f"{cloud.url}/v2/models/teacher/infer", content=b"{not json", timeout=10.0,
                     headers={"content-type": "application/json"})
    assert 400 <= bad.status_code < 500, f"a malformed body got {bad.status_code}: {bad.text}"
    cloud_requests[str(bad.status_code)] = 1
    return Workload(answers, cloud_requests)


def wait_for_scrapes_after(server: Prometheus, moment: float, *, timeout_s: float = 30.0) -> None:
    """Block until both jobs have a sample scraped after MOMENT (unix time), so counters are final."""
    deadline = time.monotonic() + timeout_s
    while True:
        stamps = server.by_label("timestamp(up)", "job")
        if len(stamps) == 2 and min(stamps.values()) > moment:
            return
        assert time.monotonic() < deadline, f"no scrape of both jobs after the workload: {stamps}\n" \
                                            f"{server.log_path.read_text()[-3000:]}"
        time.sleep(0.25)


def test_prometheus_sees_the_offload_ratio_and_request_counts(
        tiny_bundle: Path, tiny_test_split: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    x, _ = tiny_test_split
    assert len(x) >= 125
    # A window larger than the workload: the gauge is then offloaded / answered over all of it.
    with running(tiny_bundle, log_dir=tmp_path / "logs", edge_args=["--ratio-window", "10000"]) as (cloud, edge):
        config = derive_config(tmp_path, cloud_target=cloud.url.removeprefix("http://"),
                               edge_target=edge.url.removeprefix("http://"))
        with prometheus(config, tmp_path) as server:
            workload = drive(cloud, edge, x)
            finished = time.time()
            wait_for_scrapes_after(server, finished)

            answers = workload.edge_answers
            assert answers["edge-fallback"] == 0, f"healthy loopback cloud, yet fallbacks: {answers}"
            assert answers["edge"] > 40 and answers["cloud"] > 25, (
                f"cooperation should answer some samples on each side: {answers}")
            offloaded = answers["cloud"]
            total = sum(answers.values())

            assert server.by_label("up", "job") == {CLOUD_JOB: 1.0, EDGE_JOB: 1.0}
            by_source = server.by_label(f'sum by (source) (edgecloud_edge_requests_total{{job="{EDGE_JOB}"}})',
                                        "source")
            assert by_source == {source: float(n) for source, n in answers.items()}
            assert server.scalar(f'edgecloud_edge_offload_ratio{{job="{EDGE_JOB}"}}') == pytest.approx(
                offloaded / total, abs=1e-9)
            # The same ratio from the counters, as a dashboard would compute it.
            assert server.scalar('sum(edgecloud_edge_requests_total{source!="edge"}) '
                                 "/ sum(edgecloud_edge_requests_total)") == pytest.approx(offloaded / total)
            assert server.scalar("edgecloud_edge_offload_attempts_total") == offloaded
            assert server.scalar("edgecloud_edge_offload_success_total") == offloaded
            assert server.scalar("sum(edgecloud_edge_fallbacks_total)") == 0
            by_code = server.by_label(f'sum by (code) (edgecloud_model_requests_total{{job="{CLOUD_JOB}"}})', "code")
            assert by_code == {code: float(n) for code, n in workload.cloud_requests.items()}
            assert server.scalar(f'sum(edgecloud_model_batch_size_sum{{job="{CLOUD_JOB}"}})') == offloaded

            # The project's alert rules were loaded from the derived config and evaluate cleanly on real data.
            deadline = time.monotonic() + 20.0
            while True:
                groups = httpx.get(f"{server.url}/api/v1/rules", timeout=10.0).json()["data"]["groups"]
                rules = [rule for group in groups for rule in group["rules"]]
                if rules and all(rule["lastEvaluation"] > "1970-01-02" for rule in rules):
                    break
                assert time.monotonic() < deadline, f"rules never evaluated: {groups}"
                time.sleep(0.25)
            assert [r["name"] for r in rules if r["health"] != "ok"] == [], rules
            assert {r["name"] for r in rules} >= {"EdgecloudCloudDown", "EdgecloudFallbackRateHigh"}
