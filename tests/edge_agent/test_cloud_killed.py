"""A real cloud process dies mid-stream: every sample is still answered, and the fallbacks are counted."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge_agent.agent import open_agent
from edge_agent.settings import EdgeSettings
from testbed.services import free_port, start_service, stop_service, wait_ready
from tests.edge_agent.helpers import metric

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


async def test_cloud_killed_mid_stream(tiny_bundle: Path, tmp_path: Path, make_settings: Callable[..., EdgeSettings],
                                       tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    cloud = start_service("cloud", ["cloud", "serve", "--bundle", str(tiny_bundle), "--threads", "1"],
                          port=free_port(), log_dir=tmp_path)
    try:
        wait_ready(cloud, timeout_s=60)
        x = np.concatenate([tiny_test_split[0]] * 2)  # (720, 1, 8, 8)
        batches = [x[i:i + 10] for i in range(0, len(x), 10)]
        settings = make_settings(cloud_url=cloud.url, retries=1, breaker_failures=3, breaker_reset_s=30)
        sources: list[np.ndarray] = []
        reasons: list[np.ndarray] = []
        killed_after = 0
        async with open_agent(settings) as agent:
            flagged = agent.engine.run(x).offload
            async for answers in agent.stream(batches, strategy="cooperation"):
                sources.append(answers.sources)
                reasons.append(answers.reasons)
                if len(sources) == 12:
                    os.killpg(cloud.process.pid, signal.SIGKILL)  # no graceful shutdown: the cloud just dies
                    cloud.process.wait(timeout=10)
                    killed_after = sum(len(s) for s in sources)
            text = agent.metrics.exposition().decode()
    finally:
        stop_service(cloud)
    all_sources = np.concatenate(sources)
    all_reasons = np.concatenate(reasons)
    assert len(all_sources) == len(x)  # not one sample dropped
    before, after = slice(0, killed_after), slice(killed_after + 8 * 10, None)  # allow in-flight ones to settle
    assert "cloud" in set(all_sources[before][flagged[before]])
    assert set(all_sources[after][flagged[after]]) == {"edge-fallback"}
    assert set(all_reasons[after][flagged[after]]) <= {"unreachable", "circuit_open", "timeout"}
    assert "circuit_open" in set(all_reasons[after])  # the breaker stopped calling the dead cloud
    n_fallback = int((all_sources == "edge-fallback").sum())
    n_cloud = int((all_sources == "cloud").sum())
    assert n_fallback > 0 and n_cloud + n_fallback == flagged.sum()
    assert metric(text, "edgecloud_edge_requests_total", {"source": "edge-fallback"}) == n_fallback
    assert metric(text, "edgecloud_edge_offload_success_total") == n_cloud
    assert sum(metric(text, "edgecloud_edge_fallbacks_total", {"reason": r})
               for r in ("unreachable", "circuit_open", "timeout")) == n_fallback
