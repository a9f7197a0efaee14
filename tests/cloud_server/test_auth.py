"""Bearer-token auth: inference is closed without the token; health, metadata and metrics stay open."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cloud_server.main import create_app
from cloud_server.settings import CloudSettings
from shared.oip import encode_request
from shared.settings import TokenError

TOKEN = "s3cret-token-value"
INFER = "/v2/models/teacher/infer"


@pytest.fixture
def secured(make_settings: Callable[..., CloudSettings], caplog: pytest.LogCaptureFixture
            ) -> Iterator[TestClient]:
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(make_settings(token=SecretStr(TOKEN)))) as client:
        yield client


def _infer(client: TestClient, authorization: str | None) -> tuple[int, dict[str, str], str]:
    body, headers = encode_request({"input": np.zeros((1, 1, 8, 8), dtype=np.uint8)})
    if authorization is not None:
        headers["Authorization"] = authorization
    reply = client.post(INFER, content=body, headers=headers)
    return reply.status_code, dict(reply.headers), reply.text


@pytest.mark.parametrize(
    ("authorization", "message"),
    [(None, "missing bearer token"), ("Bearer wrong", "wrong bearer token"), (f"Basic {TOKEN}", "missing"),
     ("Bearer", "missing"), (f"Bearer {TOKEN}x", "wrong")],
)
def test_infer_without_the_right_token_is_401(secured: TestClient, authorization: str | None,
                                              message: str) -> None:
    status, headers, text = _infer(secured, authorization)
    assert status == 401 and message in text
    assert headers["www-authenticate"] == "Bearer"
    assert TOKEN not in text


def test_infer_with_the_token_is_200_and_the_token_is_never_logged(
        secured: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    status, _, _ = _infer(secured, f"Bearer {TOKEN}")
    assert status == 200
    assert _infer(secured, f"bearer {TOKEN}")[0] == 200  # the scheme is case-insensitive
    _infer(secured, "Bearer wrong")
    assert TOKEN not in caplog.text


def test_health_metadata_and_metrics_stay_open(secured: TestClient) -> None:
    open_paths = ("/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/teacher",
                  "/v2/models/teacher/ready", "/metrics")
    for path in open_paths:
        assert secured.get(path).status_code == 200, path


def test_token_file_is_read_and_conflicts_are_refused(make_settings: Callable[..., CloudSettings],
                                                      tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    with TestClient(create_app(make_settings(token_file=path))) as client:
        assert _infer(client, None)[0] == 401
        assert _infer(client, f"Bearer {TOKEN}")[0] == 200
    with pytest.raises(TokenError, match="not both"):
        create_app(make_settings(token_file=path, token=SecretStr(TOKEN)))
