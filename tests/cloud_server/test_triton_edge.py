"""The edge agent with a real Triton server as its cloud, serving the graph `edgecloud export triton` wrote.

Triton here is the `tritonserver` of the nvidia-pytriton wheel (.venv-triton), which runs the python
backend only: bench/_triton_server.py hands each of Triton's dynamic batches to onnxruntime on the
exported graph (raw UINT8 pixels in, the normalisation inside it). Triton's HTTP front end, batcher
and answers (`label` as [N, 1]) are real; the edge's `edgecloud edge serve` offloads to it.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cloud_server.triton_export import TritonExportSettings, export_repository
from shared.bundle import load_manifest
from shared.names import AnswerSource, FallbackReason
from testbed.services import Service
from tests.deploy.tools import REPO_ROOT
from tests.helpers.edge_stream import EdgeAnswers, EdgeCounters, edge_serving, stream

if str(REPO_ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "bench"))  # bench/ holds scripts whose helpers import each other by name

from _side_by_side import CompareConfig, probe_triton_python, start_triton, stop_triton, wait_model_ready

pytestmark = [pytest.mark.slow]



@pytest.fixture(scope="module")
def exported(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle's teacher as `edgecloud export triton` writes it: the raw-pixel graph."""
    (model,) = export_repository(TritonExportSettings(bundle=tiny_bundle, out=tmp_path_factory.mktemp("triton-repo")))
    return model.graph


def _start(tiny_bundle: Path, graph: Path, log_dir: Path) -> Service:
    cores = frozenset(os.sched_getaffinity(0))
    cfg = CompareConfig(threads=1, server_cpus=cores, client_cpus=cores, max_batch_size=64, max_queue_delay_ms=2.0)
    libdir = probe_triton_python(cfg.triton_python)["libdir"]
    triton = start_triton(tiny_bundle, load_manifest(tiny_bundle), cfg, libdir=libdir, token=secrets.token_urlsafe(8),
                          log_dir=log_dir, exported=graph)
    try:
        wait_model_ready(triton, "teacher", timeout_s=300)
    except BaseException:
        stop_triton(triton)
        raise
    return triton


@pytest.fixture
def triton(triton_venv: None, tiny_bundle: Path, exported: Path, tmp_path: Path) -> Iterator[Service]:
    server = _start(tiny_bundle, exported, tmp_path)
    try:
        yield server
    finally:
        stop_triton(server)


def test_the_edge_through_triton_answers_as_through_cloud_serve(
        triton: Service, tiny_bundle: Path, reference: EdgeAnswers, tiny_test_split: tuple[np.ndarray, np.ndarray],
        tmp_path: Path) -> None:
    x, y = tiny_test_split
    with edge_serving(tiny_bundle, triton.url, tmp_path) as edge:
        answers = stream(edge.url, x)
    assert answers.answered == len(x) and answers.failed_requests == 0
    assert (reference.sources == AnswerSource.CLOUD).sum() > 10
    np.testing.assert_array_equal(answers.sources, reference.sources)  # every offload answered by Triton
    np.testing.assert_array_equal(answers.labels, reference.labels)
    assert answers.accuracy(y) == reference.accuracy(y)


def test_triton_stopped_mid_stream_loses_no_sample(
        triton: Service, tiny_bundle: Path, reference: EdgeAnswers, tiny_test_split: tuple[np.ndarray, np.ndarray],
        tmp_path: Path) -> None:
    x = np.concatenate([tiny_test_split[0]] * 4)  # (1440, 1, 8, 8)
    expected_sources = np.concatenate([reference.sources] * 4)
    stopped_at: list[int] = []

    def stop_once(answered: int) -> None:
        if not stopped_at and answered >= len(x) // 4:
            # Triton's own shutdown (SIGTERM; whatever is left after the grace is killed). The clients wait
            # meanwhile, so everything they send after this goes to a Triton that is gone.
            stop_triton(triton, grace_s=20.0)
            stopped_at.append(answered)

    with edge_serving(tiny_bundle, triton.url, tmp_path) as edge:
        before = EdgeCounters.read(edge.url)
        answers = stream(edge.url, x, concurrency=2, on_answered=stop_once)
        counted = EdgeCounters.read(edge.url).minus(before)
    assert stopped_at and triton.process.poll() is not None

    assert answers.answered == len(x) and answers.failed_requests == 0  # not one sample lost
    on_edge = expected_sources == AnswerSource.EDGE
    assert set(answers.sources[on_edge]) == {AnswerSource.EDGE}
    flagged = answers.sources[~on_edge]
    n_cloud = int((flagged == AnswerSource.CLOUD).sum())
    n_fallback = int((flagged == AnswerSource.FALLBACK).sum())
    assert n_cloud > 0 and n_fallback > 0 and n_cloud + n_fallback == len(flagged)
    # Everything sent after the stop (a batch per client may have been in flight) fell back.
    tail = slice(stopped_at[0] + 2 * 10, None)
    assert set(answers.sources[tail][~on_edge[tail]]) == {AnswerSource.FALLBACK}
    assert counted.by_source[AnswerSource.FALLBACK] == n_fallback == sum(counted.fallbacks.values())
    assert counted.by_source[AnswerSource.CLOUD] == n_cloud == counted.offload_success
    reasons = set(answers.reasons[answers.sources == AnswerSource.FALLBACK])
    assert reasons <= set(FallbackReason) - {FallbackReason.UNAUTHORIZED}
