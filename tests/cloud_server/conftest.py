"""Cloud server fixtures: settings on the tiny bundle, apps with a real or a controllable backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud_server.main import create_app
from cloud_server.settings import CloudSettings
from shared.bundle import Manifest
from shared.preprocess import normalize
from tests.cloud_server.helpers import FakeBackend
from tests.helpers.edge_stream import EdgeAnswers, through_cloud_serve


@pytest.fixture
def make_settings(tiny_bundle: Path) -> Callable[..., CloudSettings]:
    def make(**overrides: Any) -> CloudSettings:
        return CloudSettings(**{"bundle": tiny_bundle, "threads": 1, **overrides})

    return make


@pytest.fixture
def fake_backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def make_fake_app(make_settings: Callable[..., CloudSettings], fake_backend: FakeBackend
                  ) -> Callable[..., FastAPI]:
    def make(**overrides: Any) -> FastAPI:
        def loader(settings: CloudSettings, manifest: Manifest, model: str) -> FakeBackend:
            return fake_backend

        return create_app(make_settings(**overrides), backend_loader=loader)

    return make


@pytest.fixture
def client(make_settings: Callable[..., CloudSettings]) -> Iterator[TestClient]:
    """The real app (onnxruntime on the tiny teacher), lifespan included."""
    with TestClient(create_app(make_settings())) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def teacher_reference(tiny_bundle: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Logits from onnxruntime directly, normalising raw pixels with the manifest's mean/std."""
    from shared.bundle import load_manifest

    manifest = load_manifest(tiny_bundle)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(tiny_bundle / "teacher.onnx"), options,
                                   providers=["CPUExecutionProvider"])

    def reference(raw: np.ndarray) -> np.ndarray:
        x = normalize(raw, manifest.input.mean, manifest.input.std)  # (N, C, H, W), the one normalisation
        return session.run(["logits"], {"input": x})[0]

    return reference


@pytest.fixture(scope="session")
def reference(tiny_bundle: Path, tiny_test_split: tuple[np.ndarray, np.ndarray],
              tmp_path_factory: pytest.TempPathFactory) -> EdgeAnswers:
    """The tiny test split through an edge backed by `edgecloud cloud serve`: what the edge must answer through
    Ray Serve and through Triton too. Computed once for both (each run starts a cloud and an edge)."""
    return through_cloud_serve(tiny_bundle, tiny_test_split[0], tmp_path_factory.mktemp("reference"))
