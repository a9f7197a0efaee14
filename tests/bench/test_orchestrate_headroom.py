"""bench/orchestrate_headroom.py: per condition the bound, the static references, greedy, the myopic
oracle and the learners, with the bound below every policy of its row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from orchestrate_headroom import main


@pytest.fixture(scope="module")
def variant_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> Path:
    from tests.helpers.tiny_variants import make_variant_bundle

    return make_variant_bundle(tmp_path_factory.mktemp("variants") / "bundle", source=tiny_bundle)


@pytest.fixture()
def trace_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "traces"
    folder.mkdir()
    # cellular-like: 100 ms samples of 2 Mbit/s with 0 Mbit/s stalls of 1.5 s every 5 s
    t = np.round(np.arange(0.0, 60.0, 0.1), 1)
    rate = np.where((t % 5.0) < 3.5, 2.0, 0.0)
    (folder / "stalls.log").write_text("".join(f"{a}\t{r}\n" for a, r in zip(t, rate, strict=True)))
    return folder


def test_one_block_per_condition_with_the_bound_below_every_policy(variant_bundle: Path, trace_dir: Path,
                                                                   tmp_path: Path, capsys) -> None:
    out = tmp_path / "rows.json"
    # a device 300x slower than the host (the tiny bundle's variants take microseconds): offloading pays
    assert main(["--bundle", str(variant_bundle), "--traces", str(trace_dir), "--users", "2", "4",
                 "--scenarios", "steady", "--accuracy-levels", "0", "-0.03", "--duration", "10", "--seeds", "1",
                 "--device-slowdown", "300", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [r["users"] for r in rows] == [2, 4]
    assert report["hardware"]["device"]["slowdown"] == 300.0 and len(report["requirements"]["levels"]) == 2
    for row in rows:
        assert row["bound_ms"] > 0
        shown = {k: v for k, v in row["policies"].items() if v is not None}
        assert {"best static mapping", "greedy", "myopic-oracle", "qlearning", "linucb"} <= set(shown)
        for name, policy in shown.items():
            # The bound holds in expectation; compute noise (CV 0.1) moves the realised mean of these
            # short runs by a few per cent (tests/orchestration/test_bound.py checks it exactly, noise-free).
            assert row["bound_ms"] <= 1.03 * policy["mean_response_ms"], name
            assert 0.0 <= policy["requirement_missed"] <= 1.0 and 0.0 <= policy["fallback_share"] <= 1.0
        assert shown["best static mapping"]["requirement_missed"] <= 0.01
        assert row["headroom"] == pytest.approx(1 - row["bound_ms"] / shown["best static mapping"]["mean_response_ms"])
        assert set(row["mapping"]) == {f"{x:g}" for x in report["requirements"]["levels"]}
    printed = capsys.readouterr().out
    assert printed.count("### ") == 2 and printed.count("| bound |") == 2
    assert "| myopic-oracle |" in printed and "headroom 1 - bound / best static mapping" in printed
