"""`edgecloud demo`: the three systems on natural images, from the pretrained bundles in the repository.

1. Cooperation (Zhang et al.): the CIFAR-10 bundle (`models/cifar10`) is served by a real cloud server
   and a real edge agent on loopback, and the 1,000 embedded test JPEGs (`data/cifar10-sample`) go
   through edge-only, cloud-only and cooperation (Table VII).
2. Split inference (Niu et al.) and 3. orchestration (Shahhosseini et al.): simulated over cellular
   uplink traces from their bundles (`edgecloud.demo_parts`).

Nothing is downloaded and nothing is trained: every input is in the repository, checked against its
sha256 first. `run_build_demo` is the offline half too: it builds a digits bundle from scratch (torch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecloud.evaluation.run import EvalConfig, run_eval
from shared.bundle import BundleError, Manifest, load_manifest, sha256_file
from shared.data.imagefolder import load_image_split
from shared.datasets import Split, load_dataset
from shared.image_codec import as_bytes_tensor
from testbed.services import running

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "cifar10-sample" / "cifar10-test-1000.tar.gz"
SAMPLE_SHA256 = "92ec7fbe9b6da7b43ffe9f33c47fa70fc695d7a36d49f3a6fae23151765d991c"
MODELS = REPO / "models"


class DemoError(RuntimeError):
    """A demo input is missing or not what its manifest says; the message names it and what to do."""


@dataclass(frozen=True)
class DemoInputs:
    """Where the demo reads its bundles and images (the repository's by default)."""

    cooperation: Path = MODELS / "cifar10"
    split: Path = MODELS / "cifar10-split"
    variants: Path = MODELS / "cifar10-variants"
    sample: Path = SAMPLE
    sample_sha256: str = SAMPLE_SHA256


def verified_bundle(path: Path) -> Manifest:
    """The bundle's manifest after every sha256 in it has been checked."""
    try:
        return load_manifest(path, verify=True)
    except BundleError as err:
        raise DemoError(f"{path}: {err} (the pretrained bundles are part of the repository: a fresh clone "
                        "has them; `git status` shows a changed one)") from err


def sample_images(inputs: DemoInputs, manifest: Manifest) -> tuple[Split, np.ndarray]:
    """The embedded test JPEGs, checked against their sha256: decoded to the bundle's input shape (for
    their labels and the offline checks), and as (N,) files, which the requests carry."""
    if not inputs.sample.is_file():
        raise DemoError(f"{inputs.sample}: missing; it is part of the repository (data/cifar10-sample)")
    actual = sha256_file(inputs.sample)
    if actual != inputs.sample_sha256:
        raise DemoError(f"{inputs.sample}: sha256 {actual} is not {inputs.sample_sha256} "
                        "(data/cifar10-sample/README.md says how it was made)")
    split, files = load_image_split(inputs.sample, "test", classes=list(manifest.classes),
                                    shape=tuple(manifest.input.shape))  # type: ignore[arg-type]
    return split, as_bytes_tensor(files)


def run_cooperation(inputs: DemoInputs, out: Path, *, progress: bool = True, concurrency: int = 4
                    ) -> dict[str, Any]:
    """Part 1: serve the CIFAR-10 bundle and run the three strategies on the embedded images."""
    manifest = verified_bundle(inputs.cooperation)
    test, files = sample_images(inputs, manifest)
    with running(inputs.cooperation, log_dir=out / "logs") as (cloud, edge):
        log.info("cloud at %s, edge at %s", cloud.url, edge.url)
        cfg = EvalConfig(edge_url=edge.url, cloud_url=cloud.url, concurrency=concurrency)
        # The requests carry the JPEG files, as a device holds them; the edge forwards offloads as they are.
        return run_eval(inputs.cooperation, test, cfg, out / "cooperation", dataset=manifest.dataset,
                        progress=progress, inputs=files)


def ensure_bundle(bundle: Path, *, dataset: str, seed: int, progress: bool, rebuild: bool = False) -> bool:
    """Build the bundle unless a verified one is already there; True if it was built now."""
    if not rebuild:
        try:
            load_manifest(bundle)
            log.info("using the cached bundle in %s", bundle)
            return False
        except BundleError as err:
            log.info("building a bundle: %s", err)
    try:
        from edgecloud.pipeline import build
        from edgecloud.presets import make_config
    except ImportError as err:  # torch and the training tools are not in the demo's install
        raise DemoError(f"building needs the training tools ({err}): pip install -e '.[train]' "
                        "(torch==2.13.0 first, see the Makefile), or run `make test`, which installs them") from err

    data = load_dataset(dataset, seed=seed)
    cfg = make_config("fast", dataset=dataset, train_size=len(data.train.y), seed=seed)
    build(cfg, bundle, data, progress=progress)
    return True


def run_build_demo(out: Path, *, dataset: str = "digits", seed: int = 0, progress: bool = True,
                   rebuild: bool = False, concurrency: int = 4) -> dict[str, Any]:
    """The offline half too: build the digits bundle (cached), serve it, evaluate the three strategies."""
    bundle = out / "bundle"
    ensure_bundle(bundle, dataset=dataset, seed=seed, progress=progress, rebuild=rebuild)
    test = load_dataset(dataset, seed=seed).test
    with running(bundle, log_dir=out / "logs") as (cloud, edge):
        log.info("cloud at %s, edge at %s", cloud.url, edge.url)
        cfg = EvalConfig(edge_url=edge.url, cloud_url=cloud.url, concurrency=concurrency)
        return run_eval(bundle, test, cfg, out / "eval", dataset=dataset, progress=progress)
