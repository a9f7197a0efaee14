"""Real cloud and edge processes shared by the reliability tests, started once per session.

Every test leaves them as it found them (running, models unchanged), and measures metrics as the
difference between two scrapes, so the tests can run in any order or alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.proxy import TcpProxy
from tests.reliability.services import Managed
from tests.reliability.traffic import Reference

# Short timeouts, so each fault plays out in seconds: an offload gets 1 s in all, one retry, and
# three failures in a row open the breaker for 1 s before it lets a probe through.
EDGE_ARGS: tuple[str, ...] = ("--deadline-ms", "1000", "--connect-timeout-s", "0.5", "--read-timeout-s", "1.0",
                              "--retries", "1", "--backoff-s", "0.02", "--breaker-failures", "3",
                              "--breaker-reset-s", "1.0")
DEADLINE_S = 1.0
# A cloud that sheds load: at most 16 queued samples, and each batch waits 300 ms for company, so a
# few concurrent offloads fill the queue and the rest are refused with 503 at once.
SMALL_CLOUD_ARGS: tuple[str, ...] = ("--max-queue-size", "16", "--max-queue-delay-ms", "300",
                                     "--max-batch-size", "64", "--threads", "1")
SMALL_CLOUD_DELAY_S = 0.3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def quiet_httpx() -> Iterator[None]:
    """httpx logs each request at INFO; thousands of lines would drown the figures the tests log."""
    httpx_logger = logging.getLogger("httpx")
    level = httpx_logger.level
    httpx_logger.setLevel(logging.WARNING)
    yield
    httpx_logger.setLevel(level)


@pytest.fixture(scope="session")
def pool(tiny_test_split: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The samples every stream cycles through: the tiny bundle's held-out digits, (360, 1, 8, 8) uint8."""
    return tiny_test_split[0]


@pytest.fixture(scope="session")
def reference(tiny_bundle: Path) -> Reference:
    return Reference(tiny_bundle)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reliability-logs")


def _managed(name: str, args: list[str], log_dir: Path) -> Iterator[Managed]:
    service = Managed(name, args, log_dir)
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def cloud(tiny_bundle: Path, log_dir: Path) -> Iterator[Managed]:
    """`edgecloud cloud serve` on the tiny bundle."""
    yield from _managed("cloud", ["cloud", "serve", "--bundle", str(tiny_bundle), "--threads", "1"], log_dir)


@pytest.fixture(scope="session")
def edge(tiny_bundle: Path, cloud: Managed, log_dir: Path) -> Iterator[Managed]:
    """`edgecloud edge serve` talking straight to `cloud`."""
    yield from _managed("edge", ["edge", "serve", "--bundle", str(tiny_bundle), "--cloud-url", cloud.url,
                                 *EDGE_ARGS], log_dir)


@pytest.fixture(scope="session")
def proxy(cloud: Managed) -> Iterator[TcpProxy]:
    link = TcpProxy(("127.0.0.1", cloud.port))
    try:
        yield link
    finally:
        link.close()


@pytest.fixture(scope="session")
def proxied_edge(tiny_bundle: Path, proxy: TcpProxy, log_dir: Path) -> Iterator[Managed]:
    """A second edge whose cloud link runs through `proxy`, so a test can cut it or point it elsewhere."""
    yield from _managed("proxied-edge", ["edge", "serve", "--bundle", str(tiny_bundle), "--cloud-url", proxy.url,
                                         *EDGE_ARGS], log_dir)


@pytest.fixture(scope="session")
def small_cloud(tiny_bundle: Path, log_dir: Path) -> Iterator[Managed]:
    """A cloud with a 16-sample queue whose batches wait 300 ms: easy to drive past its capacity."""
    yield from _managed("small-cloud", ["cloud", "serve", "--bundle", str(tiny_bundle), *SMALL_CLOUD_ARGS],
                        log_dir)
