"""A device sends its image file (OIP BYTES): the edge decodes it and forwards the same bytes to the cloud."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from edge_agent.app import create_app
from edge_agent.settings import EdgeSettings
from shared.image_codec import as_bytes_tensor, encode_image
from shared.oip import decode_response, encode_request
from testbed.services import Service
from tests.edge_agent.helpers import StubBehaviour, metric, stub_labels

Make = Callable[..., EdgeSettings]
INFER = "/v2/models/edge/infer"


def png_files(x: np.ndarray) -> np.ndarray:
    """(N,) object array of PNG files of (N, 1, H, W) uint8 digits (lossless: they decode to `x` exactly)."""
    return as_bytes_tensor([encode_image(sample) for sample in x])


def infer(client: TestClient, x: np.ndarray, strategy: str) -> dict[str, np.ndarray]:
    body, headers = encode_request({"input": x}, binary=True, parameters={"strategy": strategy})
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == 200, response.text
    return decode_response(response.content, response.headers)[1]


@pytest.fixture
def client(make_settings: Make, stub: tuple[str, StubBehaviour]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(cloud_url=stub[0]))) as test_client:
        yield test_client


def test_files_get_the_answers_their_pixels_get_and_the_cloud_gets_the_files(
        client: TestClient, stub: tuple[str, StubBehaviour], tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:64]
    files = png_files(x)
    from_pixels = infer(client, x, "cooperation")
    assert stub[1].datatypes == ["uint8"]
    stub[1].reset()
    from_files = infer(client, files, "cooperation")
    np.testing.assert_array_equal(from_files["label"], from_pixels["label"])
    np.testing.assert_array_equal(from_files["source"], from_pixels["source"])
    cloud = np.array([s == b"cloud" for s in from_files["source"]])
    assert 0 < cloud.sum() < 64
    # The offloaded samples went to the cloud as the device's files, not re-encoded pixels.
    assert stub[1].datatypes == ["BYTES"] and stub[1].batch_sizes == [int(cloud.sum())]
    np.testing.assert_array_equal(from_files["label"][cloud], stub_labels(x[cloud]))
    sent = metric(client.get("/metrics").text, "edgecloud_edge_offload_bytes_total")
    assert sent > sum(len(f) for f in files[cloud])


def test_a_corrupt_file_is_a_400_naming_it_and_nothing_is_offloaded(
        client: TestClient, stub: tuple[str, StubBehaviour], tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    files = png_files(tiny_test_split[0][:3])
    files[2] = files[2][:20]  # cut short, as a dropped upload leaves it
    body, headers = encode_request({"input": files}, binary=True, parameters={"strategy": "cloud_only"})
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == 400
    assert "input 'input' element 2: not a readable image" in response.json()["error"]
    assert stub[1].requests == 0


def test_a_real_cloud_decodes_forwarded_files_like_pixels(
        make_settings: Make, real_cloud: Service, tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:32]
    with TestClient(create_app(make_settings(cloud_url=real_cloud.url))) as client:
        from_pixels = infer(client, x, "cloud_only")
        from_files = infer(client, png_files(x), "cloud_only")
    assert set(from_files["source"].tolist()) == {b"cloud"}
    np.testing.assert_array_equal(from_files["label"], from_pixels["label"])
