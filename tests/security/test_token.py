"""Bearer token between edge and cloud, on real processes: never in any log line, compared in constant time.

tests/cloud_server/test_auth.py checks the in-process rules (401 messages, open health/metrics,
token_file); here the cloud reads its token from EDGECLOUD_TOKEN and the edge from --token-file,
both log at debug level with access logs on, and after authorised, unauthorised and offloaded
requests not one byte of their output contains the token. The edge has no inbound auth (its API
belongs on a trusted network), so only the cloud's inference is closed.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cloud_server.main import create_app
from cloud_server.settings import CloudSettings
from edge_agent.agent import open_agent
from edge_agent.settings import EdgeSettings
from edgecloud.cli import build_parser
from serving import auth
from shared.oip import decode_response, encode_request
from testbed.services import Service
from tests.security.helpers import serving

TOKEN = f"tok-{secrets.token_hex(16)}"
"""Random per run, so finding it in a log cannot be a coincidence of a fixed string."""
CLOUD_INFER = "/v2/models/teacher/infer"
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/teacher", "/v2/models/teacher/ready",
              "/metrics")


@pytest.fixture(scope="module")
def secured_pair(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service]]:
    """Cloud (token from EDGECLOUD_TOKEN) and edge (token from a file), both at debug level with access logs."""
    logs = tmp_path_factory.mktemp("token-logs")
    token_file = logs / "token"
    token_file.write_text(TOKEN + "\n")
    verbose = ["--threads", "1", "--log-level", "debug", "--access-log"]
    with serving("cloud", ["cloud", "serve", "--bundle", str(tiny_bundle), *verbose], log_dir=logs,
                 env={"EDGECLOUD_TOKEN": TOKEN}) as cloud, \
            serving("edge", ["edge", "serve", "--bundle", str(tiny_bundle), "--cloud-url", cloud.url,
                             "--token-file", str(token_file), "--retries", "0", *verbose], log_dir=logs) as edge:
        yield cloud, edge


def _cloud_infer(cloud: Service, authorization: str | None) -> httpx.Response:
    body, headers = encode_request({"input": np.zeros((2, 1, 8, 8), dtype=np.uint8)})
    if authorization is not None:
        headers["Authorization"] = authorization
    return httpx.post(f"{cloud.url}{CLOUD_INFER}", content=body, headers=headers, timeout=30)


@pytest.mark.slow
def test_token_never_appears_in_either_process_output(secured_pair: tuple[Service, Service]) -> None:
    cloud, edge = secured_pair
    for authorization in (None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x"):
        reply = _cloud_infer(cloud, authorization)
        assert reply.status_code == 401 and TOKEN not in reply.text, (authorization, reply.text)
    assert _cloud_infer(cloud, f"Bearer {TOKEN}").status_code == 200
    # Through the edge: it reads the token from its file and offloads every sample with it.
    body, headers = encode_request({"input": np.zeros((4, 1, 8, 8), dtype=np.uint8)}, outputs=("source",),
                                   parameters={"strategy": "cloud_only"})
    reply = httpx.post(f"{edge.url}/v2/models/edge/infer", content=body, headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    _, outputs = decode_response(reply.content, reply.headers)
    assert [s.decode() for s in outputs["source"]] == ["cloud"] * 4
    for service in (cloud, edge):
        text = service.log_path.read_text(errors="replace")
        assert " DEBUG " in text and "POST /v2/models/" in text, f"{service.name} did not log verbosely"
        assert TOKEN not in text, f"{service.name} logged the token"
        assert TOKEN[: len(TOKEN) // 2] not in text, f"{service.name} logged part of the token"
    cloud_log = cloud.log_path.read_text()
    assert '"POST /v2/models/teacher/infer HTTP/1.1" 401' in cloud_log
    assert '"POST /v2/models/teacher/infer HTTP/1.1" 200' in cloud_log


@pytest.mark.slow
def test_health_metadata_and_metrics_open_and_inference_closed_on_a_real_cloud(
        secured_pair: tuple[Service, Service]) -> None:
    cloud, edge = secured_pair
    for path in OPEN_PATHS:
        assert httpx.get(f"{cloud.url}{path}", timeout=10).status_code == 200, path
    reply = _cloud_infer(cloud, None)
    assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"
    versioned = httpx.post(f"{cloud.url}/v2/models/teacher/versions/1/infer", content=b"{}", timeout=10)
    assert versioned.status_code == 401  # every infer route is closed, not just the short one
    for path in ("/v2/health/live", "/v2/health/ready", "/metrics"):
        assert httpx.get(f"{edge.url}{path}", timeout=10).status_code == 200, path


def test_tokens_are_compared_in_constant_time(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check, right length or not, goes through hmac.compare_digest: no early exit leaks a prefix."""
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    settings = CloudSettings(bundle=tiny_bundle, threads=1, token=SecretStr(TOKEN))
    body, headers = encode_request({"input": np.zeros((1, 1, 8, 8), dtype=np.uint8)})
    with TestClient(create_app(settings)) as client:
        for presented in ("x", TOKEN[:-1] + "0", TOKEN + "-longer", TOKEN):
            client.post(CLOUD_INFER, content=body, headers={**headers, "Authorization": f"Bearer {presented}"})
    assert [a for a, _ in calls] == [b"x", (TOKEN[:-1] + "0").encode(), (TOKEN + "-longer").encode(),
                                     TOKEN.encode()]
    assert {b for _, b in calls} == {TOKEN.encode()}


@pytest.mark.anyio
async def test_edge_with_a_wrong_token_falls_back_without_logging_either_token(
        secured_pair: tuple[Service, Service], tiny_bundle: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    cloud, _ = secured_pair
    wrong = f"wrong-{secrets.token_hex(8)}"
    caplog.set_level(logging.DEBUG)
    settings = EdgeSettings(bundle=tiny_bundle, cloud_url=cloud.url, token=SecretStr(wrong), retries=0,
                            deadline_ms=10_000.0, threads=1)
    async with open_agent(settings) as agent:
        answers = await agent.infer(np.zeros((3, 1, 8, 8), dtype=np.uint8), strategy="cloud_only")
    assert list(answers.sources) == ["edge-fallback"] * 3
    assert list(answers.reasons) == ["unauthorized"] * 3
    assert wrong not in caplog.text and TOKEN not in caplog.text
    assert wrong not in repr(settings) and wrong not in str(settings.model_dump())


def test_no_command_line_flag_takes_the_token_itself(capsys: pytest.CaptureFixture[str]) -> None:
    """A token on the command line would show in `ps` to every user; only a variable or a file is accepted."""
    for command in (["cloud", "serve"], ["edge", "serve"], ["edge", "run", "--dataset", "digits", "--out", "x"]):
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args([*command, "--token", TOKEN])
        assert info.value.code == 2
    assert "unrecognized arguments: --token" in capsys.readouterr().err
