"""TLS between edge and cloud: `cloud serve --ssl-certfile/--ssl-keyfile`, the edge trusting a custom CA bundle.

The certificates are made by the test (tests/security/tls.py, openssl CLI): a private CA signs a
server certificate for 127.0.0.1, as in a deployment without a public CA. The edge must offload
over HTTPS when given that CA (`--ca-bundle`), and must refuse the server (falling back, reason
`unreachable`) when it trusts only the system CAs or an unrelated CA: verification is never off.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydantic import ValidationError

from cloud_server.settings import CloudSettings
from edge_agent.cloud_client import CloudClient, FallbackReason, OffloadError
from edge_agent.settings import EdgeSettings
from shared.oip import decode_response, encode_request
from testbed.services import Service, free_port, start_service, stop_service
from tests.security.helpers import serving
from tests.security.tls import Pki, make_pki

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _wait_https_ready(service: Service, url: str, ca: Path, *, timeout_s: float = 90.0) -> None:
    verify = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"cloud exited with {service.process.returncode}:\n{service.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/v2/health/ready", verify=verify, timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"https cloud at {url} not ready:\n{service.log_tail()}")


@pytest.fixture(scope="module")
def https_cloud(tiny_bundle: Path, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`edgecloud cloud serve` over HTTPS; yields its https:// base URL."""
    port = free_port()
    service = start_service("cloud", ["cloud", "serve", "--bundle", str(tiny_bundle), "--threads", "1",
                                      "--ssl-certfile", str(pki.cert), "--ssl-keyfile", str(pki.key)],
                            port=port, log_dir=tmp_path_factory.mktemp("tls-cloud"))
    url = f"https://127.0.0.1:{port}"
    try:
        _wait_https_ready(service, url, pki.ca)
        yield url
    finally:
        stop_service(service)


def _edge_infer(edge_url: str, x: np.ndarray) -> tuple[list[str], list[str]]:
    body, headers = encode_request({"input": x}, outputs=("source", "fallback_reason"),
                                   parameters={"strategy": "cloud_only"})
    reply = httpx.post(f"{edge_url}/v2/models/edge/infer", content=body, headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    _, outputs = decode_response(reply.content, reply.headers)
    return ([s.decode() for s in outputs["source"]], [r.decode() for r in outputs["fallback_reason"]])


def test_edge_serve_offloads_to_an_https_cloud_trusting_the_ca_bundle(
        https_cloud: str, pki: Pki, tiny_bundle: Path, tmp_path: Path,
        tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x = tiny_test_split[0][:16]
    args = ["edge", "serve", "--bundle", str(tiny_bundle), "--cloud-url", https_cloud, "--ca-bundle", str(pki.ca),
            "--threads", "1", "--retries", "0"]
    with serving("edge", args, log_dir=tmp_path) as edge:
        sources, reasons = _edge_infer(edge.url, x)
    assert sources == ["cloud"] * len(x), reasons


def test_plain_http_to_the_tls_port_is_not_answered(https_cloud: str) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(https_cloud.replace("https://", "http://") + "/v2/health/live", timeout=5)


@pytest.mark.parametrize("trust", ["system", "other_ca"])
async def test_a_cloud_certificate_the_edge_does_not_trust_is_refused(
        https_cloud: str, pki: Pki, tiny_bundle: Path, trust: str) -> None:
    ca_bundle = None if trust == "system" else pki.other_ca
    settings = EdgeSettings(bundle=tiny_bundle, cloud_url=https_cloud, ca_bundle=ca_bundle, retries=0,
                            connect_timeout_s=5.0, deadline_ms=10_000.0)
    async with CloudClient(settings, num_classes=10) as cloud:
        with pytest.raises(OffloadError) as info:
            await cloud.infer(np.zeros((2, 1, 8, 8), dtype=np.uint8))
    assert info.value.reason is FallbackReason.UNREACHABLE
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)


async def test_the_cloud_client_trusts_exactly_the_ca_bundle(https_cloud: str, pki: Pki, tiny_bundle: Path) -> None:
    settings = EdgeSettings(bundle=tiny_bundle, cloud_url=https_cloud, ca_bundle=pki.ca, retries=0,
                            connect_timeout_s=5.0, deadline_ms=10_000.0)
    async with CloudClient(settings, num_classes=10) as cloud:
        answer = await cloud.infer(np.zeros((3, 1, 8, 8), dtype=np.uint8))
    assert answer.labels.shape == (3,) and answer.tries == 1


def test_tls_settings_are_checked_at_start(tiny_bundle: Path, pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="set both ssl_certfile and ssl_keyfile"):
        CloudSettings(bundle=tiny_bundle, ssl_certfile=pki.cert)
    with pytest.raises(ValidationError, match=r"ssl_keyfile .*missing\.key does not exist"):
        CloudSettings(bundle=tiny_bundle, ssl_certfile=pki.cert, ssl_keyfile=tmp_path / "missing.key")
    with pytest.raises(ValidationError, match="is not https"):
        EdgeSettings(bundle=tiny_bundle, cloud_url="http://127.0.0.1:1", ca_bundle=pki.ca)
