"""A pickle with a malicious `__reduce__` planted in a bundle never runs: refused before unpickling.

tests/shared/test_bundle.py shows `load_offloader` refusing a planted offloader.pkl. Here the same
payload meets every way the online half opens a bundle: `edgecloud edge serve` and
`edgecloud cloud serve` as real processes, the edge agent in-process, and the edge's hot-swap load
endpoint; plus a file swapped for the payload *after* its hash was checked (the bytes unpickled
must be the bytes hashed). Out of scope: an attacker who can rewrite manifest.json as well; the
sha256 then matches the payload, so the manifest must reach the edge by a channel they cannot write.
"""

from __future__ import annotations

import builtins
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edge_agent.agent import open_agent
from edge_agent.app import create_app
from edge_agent.settings import EdgeSettings
from shared.bundle import OFFLOADER_PKL, BundleError, load_manifest, load_offloader

pytestmark = pytest.mark.anyio


class Payload:
    """Unpickling this calls os.open(marker, O_CREAT): code of the attacker's choosing, made visible."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return (os.open, (str(self.marker), os.O_CREAT | os.O_WRONLY))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


@pytest.fixture
def planted(tiny_bundle: Path, tmp_path: Path, marker: Path) -> Path:
    """A copy of the tiny bundle whose offloader.pkl is the payload; manifest.json is left as built."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / OFFLOADER_PKL).write_bytes(pickle.dumps(Payload(marker)))
    return bundle


def test_the_payload_is_real(tmp_path: Path) -> None:
    """Without the check the planted bytes do run code, so the tests below prove a refusal, not a dud."""
    canary = tmp_path / "canary"
    pickle.loads(pickle.dumps(Payload(canary)))
    assert canary.exists()


def test_load_offloader_refuses_it_naming_the_file(planted: Path, marker: Path) -> None:
    manifest = load_manifest(planted, verify=False)
    with pytest.raises(BundleError, match=f"{OFFLOADER_PKL}: (size|sha256)"):
        load_offloader(planted, manifest)
    assert not marker.exists()


def test_a_file_swapped_after_its_hash_was_checked_is_not_unpickled(
        tiny_bundle: Path, tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attacker swaps offloader.pkl as soon as the loader has read it once (a time-of-check race)."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    target = bundle / OFFLOADER_PKL
    evil = pickle.dumps(Payload(marker))
    manifest = load_manifest(bundle)
    opens = 0
    real_open = Path.open

    def racing_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        nonlocal opens
        if self == target:
            opens += 1
            if opens > 1:  # a second look at the file gets the payload
                with builtins.open(target, "wb") as handle:
                    handle.write(evil)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", racing_open)
    model = load_offloader(bundle, manifest)
    assert hasattr(model, "decision_function")  # the genuine offloader, from the bytes that were hashed
    assert not marker.exists()


async def test_the_edge_agent_refuses_to_start(planted: Path, marker: Path) -> None:
    with pytest.raises(BundleError, match=OFFLOADER_PKL):
        async with open_agent(EdgeSettings(bundle=planted, threads=1)):
            pass
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("side", ["edge", "cloud"])
def test_serve_exits_naming_the_file_before_anything_runs(planted: Path, marker: Path, side: str) -> None:
    result = subprocess.run([sys.executable, "-m", "edgecloud", side, "serve", "--bundle", str(planted),
                             "--port", "0", "--threads", "1"],
                            capture_output=True, text=True, timeout=120, env={**os.environ})
    assert result.returncode == 2, result.stderr
    assert OFFLOADER_PKL in result.stderr and ("sha256" in result.stderr or "size" in result.stderr)
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_hot_swap_to_the_planted_bundle_is_refused_and_the_old_one_serves(
        tiny_bundle: Path, planted: Path, marker: Path) -> None:
    with TestClient(create_app(EdgeSettings(bundle=tiny_bundle, threads=1))) as client:
        reply = client.post("/v2/repository/models/edge/load", json={"parameters": {"bundle": str(planted)}})
        assert 400 <= reply.status_code < 500, reply.text
        assert OFFLOADER_PKL in reply.json()["error"]
        assert not marker.exists()
        assert client.get("/v2/models/edge/ready").status_code == 200
