"""Run the three strategies against live services and assemble the report."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from edgecloud.evaluation.driver import STRATEGIES, StrategyRun, fetch_metrics, run_strategy, scrape_counter
from edgecloud.evaluation.report import summarise, write_report
from shared.bundle import REPORTS, load_manifest
from shared.datasets import Split

OFFLOAD_BYTES = "edgecloud_edge_offload_bytes_total"


@dataclass(frozen=True)
class EvalConfig:
    edge_url: str
    """base URL of the edge agent (its OIP endpoint)."""
    cloud_url: str | None = None
    """base URL of the cloud server; only checked for readiness, the edge reaches it itself."""
    batch_size: int = 1
    """samples per request to the edge; 1 makes a request's latency the sample's latency."""
    concurrency: int = 4
    """requests in flight at once."""
    warmup: int = 32
    """samples sent (and not timed) before each strategy, so no strategy pays the cold start."""
    strategies: tuple[str, ...] = STRATEGIES
    """which of edge_only, cloud_only, cooperation to run."""
    timeout_s: float = 30.0
    """per-request timeout of the evaluation client."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.concurrency < 1 or self.warmup < 0:
            raise ValueError(f"batch_size and concurrency must be >= 1 and warmup >= 0, got {self}")
        unknown = set(self.strategies) - set(STRATEGIES)
        if unknown:
            raise ValueError(f"unknown strategies {sorted(unknown)}; choose from {', '.join(STRATEGIES)}")


async def wait_ready(url: str, *, timeout_s: float = 60.0) -> None:
    """Poll OIP readiness; raise TimeoutError naming the URL if it never comes."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            try:
                if (await client.get(f"{url.rstrip('/')}/v2/health/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{url} did not become ready within {timeout_s:.0f} s")
            await asyncio.sleep(0.2)


async def _bytes_sent(edge_url: str) -> float | None:
    text = await fetch_metrics(edge_url)
    return scrape_counter(text, OFFLOAD_BYTES) if OFFLOAD_BYTES in text else None


async def evaluate(bundle: Path, test: Split, cfg: EvalConfig, *, dataset: str, progress: bool = True,
                   ) -> tuple[dict[str, Any], dict[str, StrategyRun]]:
    manifest = load_manifest(bundle)
    await wait_ready(cfg.edge_url)
    if cfg.cloud_url:
        await wait_ready(cfg.cloud_url)
    runs: dict[str, StrategyRun] = {}
    summaries: dict[str, Any] = {}
    for strategy in cfg.strategies:
        if cfg.warmup:
            await run_strategy(cfg.edge_url, test.x[: cfg.warmup], strategy, batch_size=cfg.batch_size,
                               concurrency=cfg.concurrency, timeout_s=cfg.timeout_s)
        before = await _bytes_sent(cfg.edge_url)
        with tqdm(total=len(test.y), desc=strategy, unit="sample", disable=not progress) as bar:
            run = await run_strategy(cfg.edge_url, test.x, strategy, batch_size=cfg.batch_size,
                                     concurrency=cfg.concurrency, timeout_s=cfg.timeout_s, on_batch=bar.update)
        after = await _bytes_sent(cfg.edge_url)
        sent = None if before is None or after is None else after - before
        runs[strategy] = run
        summaries[strategy] = summarise(run, test.y, bytes_sent=sent)
    report = {
        "dataset": dataset,
        "bundle": str(bundle),
        "samples": len(test.y),
        "batch_size": cfg.batch_size,
        "concurrency": cfg.concurrency,
        "teacher_accuracy": manifest.metrics.teacher_accuracy,
        "student_accuracy": manifest.metrics.student_accuracy,
        "operating_point": manifest.operating_point.model_dump(),
        "strategies": summaries,
    }
    return report, runs


def offline_curves(bundle: Path) -> dict[str, Any] | None:
    """The build's accuracy-against-offload-rate curves on the test split, if the bundle has them."""
    path = bundle / REPORTS / "offloading_summary.json"
    if not path.is_file():
        return None
    curves = json.loads(path.read_text()).get("curves")
    return curves or None


def run_eval(bundle: Path, test: Split, cfg: EvalConfig, out: Path, *, dataset: str,
             progress: bool = True) -> dict[str, Any]:
    report, runs = asyncio.run(evaluate(bundle, test, cfg, dataset=dataset, progress=progress))
    write_report(report, runs, out, curve=offline_curves(bundle))
    return report
