"""`edgecloud edge run` / `serve` argument handling: output formats, summary, flags over environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecloud.cli import main
from tests.edge_agent.helpers import StubBehaviour


def test_edge_run_tsv_with_summary(tiny_bundle: Path, tmp_path: Path, stub: tuple[str, StubBehaviour],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "answers.tsv"
    code = main(["edge", "run", "--bundle", str(tiny_bundle), "--cloud-url", stub[0], "--dataset", "digits",
                 "--out", str(out), "--limit", "100", "--batch-size", "25", "--no-progress"])
    assert code == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "index\tlabel\ttarget\tsource\tfallback_reason"
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == 100 and [int(r[0]) for r in rows] == list(range(100))
    assert {r[3] for r in rows} == {"edge", "cloud"}
    printed = capsys.readouterr().out
    assert "samples   100" in printed and "answered  100" in printed and "accuracy  " in printed


def test_flags_override_the_environment(tiny_bundle: Path, tmp_path: Path, stub: tuple[str, StubBehaviour],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGECLOUD_BATCH_SIZE", "7")
    args = ["edge", "run", "--bundle", str(tiny_bundle), "--cloud-url", stub[0], "--dataset", "digits",
            "--out", str(tmp_path / "a.jsonl"), "--limit", "50", "--strategy", "cloud_only", "--no-progress"]
    assert main(args) == 0
    # Offloads are pipelined, so they may reach the cloud out of order.
    assert sorted(stub[1].batch_sizes) == [1] + [7] * 7  # from EDGECLOUD_BATCH_SIZE
    stub[1].reset()
    assert main([*args, "--batch-size", "25"]) == 0
    assert stub[1].batch_sizes == [25, 25]  # the flag wins


def test_edge_run_fallbacks_are_summarised(tiny_bundle: Path, tmp_path: Path, stub: tuple[str, StubBehaviour],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    stub[1].mode = "401"
    out = tmp_path / "answers.jsonl"
    code = main(["edge", "run", "--bundle", str(tiny_bundle), "--cloud-url", stub[0], "--dataset", "digits",
                 "--out", str(out), "--limit", "60", "--strategy", "cloud_only", "--no-progress",
                 "--breaker-failures", "100"])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["source"], r["fallback_reason"]) for r in rows} == {("edge-fallback", "unauthorized")}
    assert "fallbacks unauthorized=60" in capsys.readouterr().out


def test_edge_only_run(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a.jsonl"
    assert main(["edge", "run", "--bundle", str(tiny_bundle), "--dataset", "digits", "--out", str(out),
                 "--limit", "30", "--no-progress"]) == 0
    assert {json.loads(line)["source"] for line in out.read_text().splitlines()} == {"edge"}
    assert "by source edge=30" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--deadline-ms", "-5"], "invalid deadline_ms"),
    (["--cloud-url", "not a url"], "invalid cloud_url"),
    (["--limit", "0"], "--limit must be >= 1"),
    (["--token-file", "/nonexistent/token"], "invalid token_file"),
])
def test_bad_flags_exit_2_naming_the_setting(tiny_bundle: Path, tmp_path: Path, args: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["edge", "run", "--bundle", str(tiny_bundle), "--dataset", "digits", "--out",
                 str(tmp_path / "a.jsonl"), "--no-progress", *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_serve_refuses_a_missing_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["edge", "serve", "--bundle", str(tmp_path / "nope")]) == 2
    assert "invalid bundle" in capsys.readouterr().err
