"""The cloud on Ray Serve, on a real local Ray cluster of two node processes, with the edge streaming through it.

One cluster (a head and a worker node, `ray start` each, one logical CPU each) serves the whole
module: `edgecloud cloud ray-serve --address ... --replicas 2` puts one replica on each node, an
`edgecloud edge serve` offloads to it, and the same samples go through the same edge backed by
`edgecloud cloud serve` for reference.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgecloud.ray_cluster import LocalRayCluster, descendants
from shared.names import AnswerSource, FallbackReason
from testbed.services import Service, free_port, start_service, stop_service, wait_ready
from tests.helpers.edge_stream import EdgeAnswers, EdgeCounters, edge_serving, stream

pytestmark = [pytest.mark.slow]

REPLICA = "ray::ServeReplica:edgecloud:cloud"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayCluster]:
    with LocalRayCluster(nodes=2, cpus_per_node=1, log_dir=tmp_path_factory.mktemp("ray-nodes")) as running:
        yield running


@pytest.fixture(scope="module")
def ray_cloud(cluster: LocalRayCluster, tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Service]:
    service = start_service("ray-serve", ["cloud", "ray-serve", "--bundle", str(tiny_bundle), "--address",
                                          cluster.address, "--replicas", "2", "--threads", "1"],
                            port=free_port(), log_dir=tmp_path_factory.mktemp("ray-serve"))
    try:
        wait_ready(service, timeout_s=400)
        # The proxy answers once one replica is up; the command says ready once the application is (both).
        deadline = time.monotonic() + 300
        while "ready: application 'edgecloud'" not in service.log_tail(1_000_000):
            assert service.process.poll() is None and time.monotonic() < deadline, service.log_tail()
            time.sleep(0.5)
        yield service
    finally:
        stop_service(service, grace_s=60)


@pytest.fixture(scope="module")
def ray_edge(ray_cloud: Service, tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with edge_serving(tiny_bundle, ray_cloud.url, tmp_path_factory.mktemp("ray-edge")) as edge:
        yield edge


def _replicas(cluster: LocalRayCluster) -> list[int]:
    return cluster.processes(REPLICA)


def test_one_replica_runs_on_each_node(cluster: LocalRayCluster, ray_cloud: Service) -> None:
    replicas = _replicas(cluster)
    assert len(replicas) == 2, [(pid, cluster.processes("ray::")) for pid in replicas]
    homes = [next(node.name for node in cluster.started if pid in descendants(node.process.pid))
             for pid in replicas]
    assert sorted(homes) == ["head", "worker1"]


def test_the_runtime_answers_through_the_ray_proxy(ray_cloud: Service) -> None:
    # The runtime's own routes and error map, unchanged behind Ray Serve's proxy.
    assert httpx.get(f"{ray_cloud.url}/v2/models/teacher", timeout=10).json()["outputs"][1]["name"] == "label"
    missing = httpx.post(f"{ray_cloud.url}/v2/models/nope/infer", content=b"{}", timeout=10)
    assert missing.status_code == 404 and "unknown model 'nope'" in missing.json()["error"]
    bad = httpx.post(f"{ray_cloud.url}/v2/models/teacher/infer", json={"inputs": [
        {"name": "input", "datatype": "UINT8", "shape": [1, 3], "data": [1, 2, 3]}]}, timeout=10)
    assert bad.status_code == 400 and "expected shape [-1, 1, 8, 8]" in bad.json()["error"]


def test_the_edge_through_ray_serve_answers_as_through_cloud_serve(
        ray_edge: Service, reference: EdgeAnswers, tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = tiny_test_split
    answers = stream(ray_edge.url, x)
    assert answers.answered == len(x) and answers.failed_requests == 0
    offloaded = reference.sources == AnswerSource.CLOUD
    assert offloaded.sum() > 10 and set(reference.sources) == {AnswerSource.EDGE, AnswerSource.CLOUD}
    np.testing.assert_array_equal(answers.sources, reference.sources)  # every offload answered by Ray Serve
    np.testing.assert_array_equal(answers.labels, reference.labels)
    assert answers.accuracy(y) == reference.accuracy(y)


def test_a_replica_killed_under_load_loses_no_sample(
        cluster: LocalRayCluster, ray_edge: Service, reference: EdgeAnswers,
        tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = np.concatenate([tiny_test_split[0]] * 4)  # (1440, 1, 8, 8)
    expected_sources = np.concatenate([reference.sources] * 4)
    before = EdgeCounters.read(ray_edge.url)
    victim = _replicas(cluster)[0]
    killed_at: list[int] = []

    def kill_once(answered: int) -> None:
        if not killed_at and answered >= len(x) // 4:
            os.kill(victim, signal.SIGKILL)  # no graceful shutdown: the replica's process just dies
            killed_at.append(answered)

    answers = stream(ray_edge.url, x, concurrency=4, on_answered=kill_once)
    counted = EdgeCounters.read(ray_edge.url).minus(before)

    assert killed_at, "the replica was never killed"
    assert answers.answered == len(x) and answers.failed_requests == 0  # not one sample lost
    edge_answered = expected_sources == AnswerSource.EDGE
    assert set(answers.sources[edge_answered]) == {AnswerSource.EDGE}  # the same samples stayed on the edge
    flagged = answers.sources[~edge_answered]
    assert set(flagged) <= {AnswerSource.CLOUD, AnswerSource.FALLBACK}
    n_cloud = int((flagged == AnswerSource.CLOUD).sum())
    n_fallback = int((flagged == AnswerSource.FALLBACK).sum())
    # The surviving replica keeps answering after the kill: most offloads still reach the cloud.
    assert n_cloud > n_fallback
    # Every fallback is counted by the edge, with its reason.
    assert counted.by_source[AnswerSource.FALLBACK] == n_fallback
    assert counted.by_source[AnswerSource.CLOUD] == n_cloud == counted.offload_success
    assert sum(counted.fallbacks.values()) == n_fallback
    reasons = set(answers.reasons[answers.sources == AnswerSource.FALLBACK])
    assert reasons <= set(FallbackReason) - {FallbackReason.UNAUTHORIZED}

    # Ray Serve replaces the dead replica: two live replicas again.
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (len(_replicas(cluster)) != 2 or victim in _replicas(cluster)):
        time.sleep(1.0)
    assert len(_replicas(cluster)) == 2 and victim not in _replicas(cluster)
