"""--backend torch: teacher.pt rebuilt by networks.checkpoint.load_checkpoint, served like the ONNX one."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cloud_server.main import create_app
from cloud_server.settings import CloudSettings
from shared.bundle import BundleError, load_manifest, write_manifest
from shared.oip import decode_response, encode_request
from shared.preprocess import normalize

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def torch_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle with a real (random, tiny) ResNet checkpoint as teacher.pt."""
    from networks.checkpoint import save_checkpoint
    from networks.resnet import build_model, resnet_arch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    copy = tmp_path_factory.mktemp("torch-bundle") / "bundle"
    shutil.copytree(tiny_bundle, copy)
    (copy / "teacher.onnx").unlink()  # so that only the torch backend can serve it
    model = build_model(resnet_arch(18, in_channels=1, num_classes=10, width=4, input_size=(8, 8))).eval()
    save_checkpoint(model, copy / "teacher.pt")
    manifest = load_manifest(copy, verify=False)
    teacher = manifest.models["teacher"].model_copy(update={"file": None})
    write_manifest(copy, manifest.model_copy(update={"models": {**manifest.models, "teacher": teacher}}))
    return copy


def test_torch_backend_serves_the_checkpoint(torch_bundle: Path,
                                             tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    from networks.checkpoint import load_checkpoint

    manifest = load_manifest(torch_bundle)
    x = tiny_test_split[0][:6]
    app = create_app(CloudSettings(bundle=torch_bundle, backend="torch", threads=1))
    with TestClient(app) as client:
        assert client.get("/v2/models/teacher").json()["platform"] == "edgecloud_torch"
        body, headers = encode_request({"input": x})
        reply = client.post("/v2/models/teacher/infer", content=body, headers=headers)
    assert reply.status_code == 200, reply.text
    _, outputs = decode_response(reply.content, reply.headers)
    with torch.inference_mode():
        expected = load_checkpoint(torch_bundle / "teacher.pt")(
            torch.from_numpy(normalize(x, manifest.input.mean, manifest.input.std)))
    np.testing.assert_allclose(outputs["logits"], expected.numpy(), rtol=1e-4, atol=1e-5)


def test_torch_backend_names_a_teacher_pt_it_cannot_load(make_settings: Callable[..., CloudSettings]) -> None:
    app = create_app(make_settings(backend="torch"))  # the tiny bundle's teacher.pt is not a checkpoint
    with pytest.raises(BundleError, match=r"teacher\.pt: cannot load the torch model"), TestClient(app):
        pass
