"""Edge agent fixtures: settings on the tiny bundle, the stub cloud, a real `edgecloud cloud serve`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.settings import EdgeSettings
from testbed.services import Service, free_port, start_service, stop_service, wait_ready
from tests.edge_agent.helpers import StubBehaviour, serve_in_thread, stub_cloud_app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_settings(tiny_bundle: Path) -> Callable[..., EdgeSettings]:
    """EdgeSettings on the tiny bundle with short timeouts, so failure tests take fractions of a second."""

    def make(**overrides: Any) -> EdgeSettings:
        base: dict[str, Any] = {"bundle": tiny_bundle, "connect_timeout_s": 0.5, "read_timeout_s": 1.0,
                                "deadline_ms": 1500.0, "retries": 2, "backoff_s": 0.01, "threads": 1}
        return EdgeSettings(**{**base, **overrides})

    return make


@pytest.fixture(scope="module")
def stub_server() -> Iterator[tuple[str, StubBehaviour]]:
    """One stub cloud per module; each test resets its behaviour through `stub`."""
    behaviour = StubBehaviour()
    with serve_in_thread(stub_cloud_app(behaviour)) as url:
        yield url, behaviour


@pytest.fixture
def stub(stub_server: tuple[str, StubBehaviour]) -> tuple[str, StubBehaviour]:
    url, behaviour = stub_server
    behaviour.reset()
    return url, behaviour


@pytest.fixture(scope="module")
def real_cloud(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`edgecloud cloud serve` on the tiny bundle, as a subprocess on a free loopback port."""
    log_dir = tmp_path_factory.mktemp("cloud-logs")
    service = start_service("cloud", ["cloud", "serve", "--bundle", str(tiny_bundle), "--threads", "1"],
                            port=free_port(), log_dir=log_dir)
    try:
        wait_ready(service, timeout_s=60)
        yield service
    finally:
        stop_service(service)
