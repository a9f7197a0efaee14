"""Wire schemas of the OIP model-repository extension, spoken by every server of the runtime.

    POST /v2/repository/index                    -> [RepositoryIndexEntry, ...]
    POST /v2/repository/models/{name}/load       body empty, or {"parameters": {"bundle": "/path/to/bundle"}}
                                                 -> LoadResponse, or {"error": ...} with a 4xx/5xx
    POST /v2/repository/models/{name}/unload     body empty -> UnloadResponse

An empty body (or no `bundle` parameter) reloads the bundle the server was started with. A server
loads the new model beside the one serving, warms it up, and only then switches to it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.oip import ProtocolError

logger = logging.getLogger(__name__)

LOAD_PARAMETERS: tuple[str, ...] = ("bundle",)
"""Parameters a load request may carry; any other name is refused (a typo must not vanish)."""

ModelState = Literal["READY", "UNAVAILABLE", "LOADING"]


class RepositoryIndexEntry(BaseModel):
    name: str
    version: str | None = None
    state: ModelState
    reason: str = ""  # why the last load failed, when it did (the previous bundle keeps serving)


class LoadResponse(BaseModel):
    """What a successful load swapped in."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    bundle: str       # directory the serving model now comes from
    dataset: str
    load_ms: float    # verify + open + warm up, before the switch


class UnloadResponse(BaseModel):
    """What an unload took out of service."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str


def parse_load_request(body: bytes) -> Path | None:
    """The `bundle` parameter of a load request body, or None for "reload the configured bundle".

    Raises ProtocolError (400) naming the problem: not JSON, not an object, unknown parameters, or a
    `bundle` that is not a non-empty string.
    """
    if not body.strip():
        return None
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProtocolError(f"load request body is not JSON: {err}") from None
    if not isinstance(payload, dict):
        raise ProtocolError(f"load request body must be a JSON object, got {type(payload).__name__}")
    unknown_keys = sorted(set(payload) - {"parameters"})
    if unknown_keys:
        raise ProtocolError(f"load request has unknown fields {unknown_keys}; only 'parameters' is accepted")
    parameters = payload.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError(f"load request 'parameters' must be an object, got {type(parameters).__name__}")
    unknown = sorted(set(parameters) - set(LOAD_PARAMETERS))
    if unknown:
        raise ProtocolError(f"load request has unknown parameters {unknown}; accepted: {list(LOAD_PARAMETERS)}")
    bundle = parameters.get("bundle")
    if bundle is None:
        return None
    if not isinstance(bundle, str) or not bundle.strip():
        raise ProtocolError(f"load parameter 'bundle' must be a non-empty path string, got {bundle!r}")
    return Path(bundle)
