"""NVIDIA's own OIP client (tritonclient.http) talks to the edge endpoint with its binary defaults."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edge_agent.app import create_app
from edge_agent.settings import EdgeSettings
from tests.edge_agent.helpers import StubBehaviour, serve_in_thread, stub_labels

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is a dev dependency")


def test_tritonclient_infers_label_and_source(make_settings: Callable[..., EdgeSettings],
                                              stub: tuple[str, StubBehaviour],
                                              tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:48]
    with serve_in_thread(create_app(make_settings(cloud_url=stub[0]))) as url:
        client = httpclient.InferenceServerClient(url=url.removeprefix("http://"))
        try:
            assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("edge")
            meta = client.get_model_metadata("edge")
            assert meta["inputs"][0]["datatype"] == "UINT8"
            inp = httpclient.InferInput("input", list(x.shape), "UINT8")
            inp.set_data_from_numpy(x)  # binary_data=True: tritonclient's default
            outputs = [httpclient.InferRequestedOutput(name) for name in ("label", "source", "fallback_reason")]
            result = client.infer("edge", [inp], outputs=outputs, request_id="t-1")
        finally:
            client.close()
    labels = result.as_numpy("label")
    sources = np.array([s.decode() for s in result.as_numpy("source")])
    assert labels.dtype == np.int64 and labels.shape == (48,)
    assert set(sources) <= {"edge", "cloud"} and "cloud" in sources
    np.testing.assert_array_equal(labels[sources == "cloud"], stub_labels(x[sources == "cloud"]))
    assert set(result.as_numpy("fallback_reason").tolist()) == {b""}
    assert result.get_response()["id"] == "t-1"


def test_tritonclient_sends_image_files_as_bytes(make_settings: Callable[..., EdgeSettings],
                                                 stub: tuple[str, StubBehaviour],
                                                 tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    """What a camera app does with tritonclient: one BYTES element per image file, forwarded as it is."""
    from shared.image_codec import as_bytes_tensor, encode_image

    x = tiny_test_split[0][:16]
    files = as_bytes_tensor([encode_image(sample) for sample in x])
    with serve_in_thread(create_app(make_settings(cloud_url=stub[0]))) as url:
        client = httpclient.InferenceServerClient(url=url.removeprefix("http://"))
        try:
            inp = httpclient.InferInput("input", [len(files)], "BYTES")
            inp.set_data_from_numpy(files)
            result = client.infer("edge", [inp], parameters={"strategy": "cloud_only"},
                                  outputs=[httpclient.InferRequestedOutput("label")])
        finally:
            client.close()
    np.testing.assert_array_equal(result.as_numpy("label"), stub_labels(x))
    assert stub[1].datatypes == ["BYTES"]
