"""The main job: build the digits bundle (cached), serve it, evaluate the three strategies."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgecloud.evaluation.run import EvalConfig, run_eval
from shared.bundle import BundleError, load_manifest
from shared.datasets import load_dataset
from testbed.services import running

log = logging.getLogger(__name__)


def ensure_bundle(bundle: Path, *, dataset: str, seed: int, progress: bool, rebuild: bool = False) -> bool:
    """Build the bundle unless a verified one is already there; True if it was built now."""
    if not rebuild:
        try:
            load_manifest(bundle)
            log.info("using the cached bundle in %s", bundle)
            return False
        except BundleError as err:
            log.info("building a bundle: %s", err)
    from edgecloud.pipeline import build
    from edgecloud.presets import make_config

    data = load_dataset(dataset, seed=seed)
    cfg = make_config("fast", dataset=dataset, train_size=len(data.train.y), seed=seed)
    build(cfg, bundle, data, progress=progress)
    return True


def run_demo(out: Path, *, dataset: str = "digits", seed: int = 0, progress: bool = True,
             rebuild: bool = False, concurrency: int = 4) -> dict[str, Any]:
    bundle = out / "bundle"
    ensure_bundle(bundle, dataset=dataset, seed=seed, progress=progress, rebuild=rebuild)
    test = load_dataset(dataset, seed=seed).test
    with running(bundle, log_dir=out / "logs") as (cloud, edge):
        log.info("cloud at %s, edge at %s", cloud.url, edge.url)
        cfg = EvalConfig(edge_url=edge.url, cloud_url=cloud.url, concurrency=concurrency)
        return run_eval(bundle, test, cfg, out / "eval", dataset=dataset, progress=progress)
