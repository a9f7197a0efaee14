"""CloudSettings: environment, CLI overrides, and start-up failures that name the bad value."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from cloud_server.settings import CloudSettings, default_threads
from edgecloud.commands import cloud as cloud_command
from shared.bundle import BundleError


def _serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cloud_command.add_parser(parser.add_subparsers())
    return parser.parse_args(["cloud", "serve", *argv])


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch, tiny_bundle: Path) -> None:
    monkeypatch.setenv("EDGECLOUD_BUNDLE", str(tiny_bundle))
    monkeypatch.setenv("EDGECLOUD_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("EDGECLOUD_TOKEN", "t0k")
    settings = CloudSettings()  # type: ignore[call-arg]
    assert settings.bundle == tiny_bundle and settings.max_batch_size == 8
    assert settings.token is not None and "t0k" not in repr(settings)  # SecretStr hides it
    assert CloudSettings(max_batch_size=2).max_batch_size == 2  # explicit values (CLI flags) win


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("bundle", "/nonexistent/bundle", "does not exist"),
        ("max_batch_size", 0, "greater than or equal to 1"),
        ("max_queue_size", -5, "greater than or equal to 1"),
        ("max_queue_delay_ms", -1.0, "greater than or equal to 0"),
        ("max_body_bytes", 0, "greater than or equal to 1"),
        ("port", 70000, "less than or equal to 65535"),
        ("backend", "tensorrt", "'onnx' or 'torch'"),
        ("threads", 0, "greater than or equal to 1"),
        ("request_timeout_s", 0, "greater than 0"),
        ("token_file", "/nonexistent/token", "does not exist"),
    ],
)
def test_bad_values_fail_naming_the_field(tiny_bundle: Path, field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        CloudSettings(**{"bundle": tiny_bundle, field: value})
    errors = info.value.errors()
    assert errors[0]["loc"] == (field,) and message in errors[0]["msg"]


def test_a_directory_without_manifest_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"no manifest\.json"):
        CloudSettings(bundle=tmp_path)


def test_onnx_backend_needs_teacher_onnx_in_the_manifest(make_settings: Callable[..., CloudSettings],
                                                         tiny_bundle: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from cloud_server.main import create_app

    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["files"]["teacher.onnx"]
    del manifest["models"]["teacher"]["file"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    app = create_app(CloudSettings(bundle=copy, threads=1))
    with pytest.raises(BundleError, match=r"teacher 'teacher' has no ONNX file in this bundle; try --backend torch"), \
            TestClient(app):
        pass  # the lifespan fails before the app serves anything


def test_cli_reports_bad_settings_in_one_line_each(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    args = _serve_args("--bundle", str(tmp_path / "missing"), "--max-batch-size", "0")
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert "invalid bundle" in err and "does not exist" in err
    assert "invalid max_batch_size" in err


def test_cli_reports_a_tampered_bundle(capsys: pytest.CaptureFixture[str], tiny_bundle: Path,
                                       tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    (copy / "teacher.onnx").write_bytes(b"not a model")
    args = _serve_args("--bundle", str(copy))
    assert args.handler(args) == 2
    assert "teacher.onnx" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_default_threads_follow_the_affinity_mask() -> None:
    # Under `taskset -c 0` the server must not start more intra-op threads than it has cores.
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert default_threads() == 1
    finally:
        os.sched_setaffinity(0, before)
    assert default_threads() == max(1, min(8, len(before)))
