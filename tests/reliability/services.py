"""Real `edgecloud` processes that a test can kill, freeze, thaw and restart on the same port."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from testbed.services import Service, free_port, start_service, stop_service, wait_ready


@dataclass
class Managed:
    """`edgecloud ARGS` on a fixed loopback port; each (re)start logs to its own file under `log_dir`."""

    name: str
    args: Sequence[str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    service: Service | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.service is not None, f"{self.name} is not running"
        return self.service.process.pid

    def start(self, *, wait: bool = True) -> Managed:
        self.starts += 1
        self.service = start_service(self.name, list(self.args), port=self.port,
                                     log_dir=self.log_dir / f"{self.name}-{self.starts}")
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        assert self.service is not None
        wait_ready(self.service, timeout_s=60)

    def signal(self, sig: signal.Signals) -> None:
        os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, the process just dies."""
        self.signal(signal.SIGKILL)
        assert self.service is not None
        self.service.process.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM (graceful), SIGKILL after a grace period; the exit code."""
        if self.service is None:
            return 0
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGCONT)  # a frozen process cannot handle SIGTERM
        return stop_service(self.service)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, n_chars: int = 2000) -> str:
        return self.service.log_tail(n_chars) if self.service is not None else ""


def scrape(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=10)
    response.raise_for_status()
    return response.text


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): float(s.value)
            for family in text_string_to_metric_families(text) for s in family.samples}


def delta(before: str, after: str, name: str, **labels: str) -> float:
    """How much one series grew between two scrapes of the same process (missing series read as 0)."""
    key = (name, tuple(sorted(labels.items())))
    return samples(after).get(key, 0.0) - samples(before).get(key, 0.0)
