"""Server-only as the device holds the image (a JPEG, decoded on the server) beside raw pixels; uplink and
downlink as two serial links with their own traces; the stall features of the state."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.traces import Trace
from splitting.env import EnvConfig, SplitEnv
from splitting.inputs import DEFAULT_JPEG_RATIO, read_input_bytes, write_input_bytes
from splitting.latency import LinkModel
from splitting.profile import DEFAULT_JPEG_DECODE_MS, JPEG_DECODE_SEGMENT, decode_image, measure, measure_jpeg_decode
from splitting.regime import ServerPayload
from splitting.report import write_report
from splitting.setup import SplitSetup
from splitting.state import StateConfig, StateTracker
from tests.conftest import REPO_ROOT

CIFAR_SAMPLE = REPO_ROOT / "data" / "cifar10-sample" / "cifar10-test-1000.tar.gz"


def _trace(rates: list[float], step: float = 0.1, name: str = "t") -> Trace:
    return Trace(name=name, times_s=np.arange(len(rates)) * step, mbit_s=np.asarray(rates, float))


def _grey_jpegs(n: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    files = []
    for _ in range(n):
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), mode="L").save(out, format="JPEG")
        files.append(out.getvalue())
    return files


@pytest.fixture()
def jpeg_bundle(profiled_bundle: Path, tmp_path: Path) -> Path:
    """The profiled bundle with per-test-sample JPEG sizes and a few (greyscale 8x8) files."""
    bundle = tmp_path / "bundle"
    shutil.copytree(profiled_bundle, bundle)
    n_test = SplitSetup.load(bundle, need_spec=False).test_correct.shape[1]
    sizes = 20 + np.arange(n_test) % 7  # made-up but per-sample sizes, smaller than the 64 raw bytes
    write_input_bytes(bundle, sizes.astype(np.int64), source="test: made-up sizes", samples=_grey_jpegs(3))
    return bundle


def test_input_bytes_roundtrip_and_are_checked_against_the_test_split(jpeg_bundle: Path, tmp_path: Path) -> None:
    setup = SplitSetup.load(jpeg_bundle, need_spec=False)
    sizes = setup.input_bytes
    n_test = setup.test_correct.shape[1]
    assert len(sizes.per_sample) == n_test and sizes.source == "test: made-up sizes"
    assert sizes.mean == pytest.approx(float(np.mean(20 + np.arange(n_test) % 7)))
    assert sizes.at(3) == 23 and sizes.at(n_test + 3) == 23 and sizes.at(None) == sizes.mean
    assert sizes.samples == tuple(_grey_jpegs(3))
    with pytest.raises(ValueError, match=f"covers {n_test} test samples, per_sample has 5"):
        write_input_bytes(jpeg_bundle, np.full(5, 100, np.int64), source="wrong")
    with pytest.raises(ValueError, match="positive byte counts"):
        write_input_bytes(jpeg_bundle, np.zeros(n_test, np.int64), source="wrong")


def test_a_bundle_with_sizes_is_held_as_jpeg_files_until_a_regime_says_otherwise(jpeg_bundle: Path) -> None:
    assert SplitSetup.load(jpeg_bundle, need_spec=False).regime.server_payload is ServerPayload.JPEG


def test_a_bundle_without_sizes_gets_the_documented_default(profiled_bundle: Path) -> None:
    setup = SplitSetup.load(profiled_bundle, need_spec=False)
    assert setup.regime.server_payload is ServerPayload.RAW
    assert setup.input_bytes.is_default
    assert setup.input_bytes.mean == pytest.approx(DEFAULT_JPEG_RATIO * 64) and "default" in setup.input_bytes.source
    assert read_input_bytes(profiled_bundle, setup.manifest, raw_shape=(3, 32, 32)).mean == pytest.approx(
        DEFAULT_JPEG_RATIO * 3072)


def test_server_only_jpeg_uploads_the_samples_file_and_pays_the_decode(jpeg_bundle: Path) -> None:
    setup = SplitSetup.load(jpeg_bundle, need_spec=False)
    link = LinkModel(rtt_ms=10.0, request_overhead_bytes=0, response_bytes=0)
    raw = setup.cost_model(link, server_payload=ServerPayload.RAW)
    jpeg = setup.cost_model(link, server_payload=ServerPayload.JPEG)
    server = setup.space.server_only()
    assert raw.payload_bytes(server, sample=3) == 64
    assert jpeg.payload_bytes(server, sample=3) == 23 and jpeg.payload_bytes(server) == round(setup.input_bytes.mean)
    assert setup.server.decode_ms == DEFAULT_JPEG_DECODE_MS  # this server profile did not time it
    a = raw.cost(server, load=1.0, mbit_s=1.0, sample=3)
    b = jpeg.cost(server, load=1.0, mbit_s=1.0, sample=3)
    assert b.server_ms == pytest.approx(a.server_ms + DEFAULT_JPEG_DECODE_MS)
    assert a.latency_ms - b.latency_ms == pytest.approx(8 * (64 - 23) / 1000.0 - DEFAULT_JPEG_DECODE_MS)
    # Only the server-only action changes: a split still sends its feature.
    split = setup.space.valid_indices()[1]
    assert raw.payload_bytes(int(split)) == jpeg.payload_bytes(int(split), sample=3)

    # In the environment, request n carries test sample n: its own file's size.
    env = SplitEnv(jpeg, [_trace([1.0] * 50)], setup.val_accuracy,
                   cfg=EnvConfig(random_start=False, measure_noise=0.0, deadline_ms=1000.0))
    env.reset(options={"trace": 0, "start_s": 0.0})
    sent = [env.step(server)[4]["payload_bytes"] for _ in range(8)]
    assert sent == [20 + n % 7 for n in range(8)]


def test_eval_reports_both_server_only_baselines(jpeg_bundle: Path, tmp_path: Path) -> None:
    setup = SplitSetup.load(jpeg_bundle, need_spec=False)
    traces = [_trace([0.5, 2.0] * 50, step=1.0)]
    report = write_report(setup, traces, setup.resolve_strategies(None), out=tmp_path / "report", duration_s=20.0,
                          traces_dir=tmp_path)
    strategies = report["strategies"]
    assert {"server_only_jpeg", "server_only_raw", "device_only", "neurosurgeon", "edgent", "greedy",
            "oracle"} == set(strategies)
    assert strategies["server_only_raw"]["bytes_per_request"] == 64.0
    assert strategies["server_only_jpeg"]["bytes_per_request"] == pytest.approx(np.mean(20 + np.arange(80) % 7))
    for s in strategies.values():
        for key in ("mean_latency_ms", "p95_latency_ms", "deadline_miss_rate", "accuracy", "bytes_per_request"):
            assert key in s
    assert report["deadline_ms"] == 100.0  # no flag, no trained regime: MNIST's
    assert report["input_bytes"]["source"] == "test: made-up sizes"
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["regime"]["server_payload"] == "jpeg" and saved["server_decode_ms"] == DEFAULT_JPEG_DECODE_MS


def test_decode_is_timed_on_real_cifar10_jpegs() -> None:
    with tarfile.open(CIFAR_SAMPLE) as tar:
        members = [m for m in tar.getmembers() if m.name.endswith(".jpg")][:5]
        files = [tar.extractfile(m).read() for m in members]  # type: ignore[union-attr]
    assert decode_image(files[0], channels=3).shape == (3, 32, 32)
    timing = measure_jpeg_decode(files, channels=3, runs=20, warmup=2)
    assert timing.runs == 20 and 0 < timing.median_ms < 50
    with pytest.raises(ValueError, match="at least one"):
        measure_jpeg_decode([])


def test_server_profile_times_the_decode_on_the_bundles_own_files(jpeg_bundle: Path) -> None:
    profile = measure(jpeg_bundle, "server", where="test", runs=3, warmup=1)
    assert JPEG_DECODE_SEGMENT in profile.segments
    assert profile.decode_ms == profile.segments[JPEG_DECODE_SEGMENT].median_ms != DEFAULT_JPEG_DECODE_MS


def test_the_answer_comes_down_on_the_downlink_trace(profiled_bundle: Path) -> None:
    setup = SplitSetup.load(profiled_bundle, need_spec=False)
    model = setup.cost_model(LinkModel(rtt_ms=10.0, request_overhead_bytes=100, response_bytes=500))
    server = setup.space.server_only()
    up, fast_down, slow_down = _trace([1.0] * 20), _trace([1.0] * 20), _trace([0.1] * 20)
    same = model.cost(server, load=1.0, trace=up)
    slow = model.cost(server, load=1.0, trace=up, downlink=slow_down)
    assert same == model.cost(server, load=1.0, trace=up, downlink=fast_down)
    assert slow.latency_ms - same.latency_ms == pytest.approx(8 * 500 / 100.0 - 8 * 500 / 1000.0)
    # On a trace at a constant rate the model agrees with the constant-rate prediction.
    assert same.latency_ms == pytest.approx(model.cost(server, load=1.0, mbit_s=1.0).latency_ms)


def test_each_direction_is_a_serial_link_and_a_stall_leaves_a_backlog(profiled_bundle: Path) -> None:
    setup = SplitSetup.load(profiled_bundle, need_spec=False)
    server = setup.space.server_only()
    # 0.5 s of stall (0 Mbit/s, floored), then 0.5 Mbit/s; requests every 0.25 s, deadline 100 ms.
    trace = _trace([1e-3] * 5 + [0.5] * 20)
    env = SplitEnv(setup.cost_model(), [trace], setup.val_accuracy,
                   cfg=EnvConfig(random_start=False, measure_noise=0.0, deadline_ms=100.0, rtt_ms=10.0))
    assert env.downlink[0] is env.traces[0]  # no downlink folder: the same file, its own link
    env.reset(options={"trace": 0, "start_s": 0.0})
    _, _, _, _, first = env.step(server)
    assert first["fallback"] and first["latency_ms"] == 100.0
    assert env.uplink_free_s > 0.5  # the abandoned request still occupies the uplink after the stall
    _, _, _, _, second = env.step(server)  # sent at 0.25 s, in the stall, behind the first request's bytes
    assert second["fallback"]
    assert env.t == 0.5  # the third request leaves as the stall ends; its bytes wait for the first two's
    behind = env.cost(server)
    idle = env.model.cost(server, load=1.0, start_s=0.5, trace=trace, rtt_ms=10.0, deadline_ms=100.0)
    assert not idle.fallback and (behind.fallback is not None or behind.latency_ms > idle.latency_ms)
    # Device-only never touches the links.
    free = (env.uplink_free_s, env.downlink_free_s)
    env.step(setup.space.device_only(1))
    assert (env.uplink_free_s, env.downlink_free_s) == free


def test_pairs_downlink_traces_by_name_else_by_order() -> None:
    from shared.traces import pair_traces

    up = [_trace([1.0], name="a"), _trace([1.0], name="b"), _trace([1.0], name="c")]
    named = [_trace([2.0], name="c"), _trace([2.0], name="b"), _trace([2.0], name="a")]
    assert [t.name for t in pair_traces(up, named)] == ["a", "b", "c"]
    other = [_trace([2.0], name="x"), _trace([2.0], name="y")]
    assert [t.name for t in pair_traces(up, other)] == ["x", "y", "x"]
    assert pair_traces(up, None) == up


def test_stall_features_tell_an_abandoned_transfer_from_a_slow_one() -> None:
    tracker = StateTracker()
    cfg = tracker.cfg
    assert cfg.stall and cfg.dim == cfg.history + 6 and len(cfg.names) == cfg.dim
    assert StateConfig(stall=False).dim == cfg.history + 4
    fresh = tracker.observe(now_s=0.0, deadline_ms=100.0)
    assert fresh[-2] == pytest.approx(1.0) and fresh[-1] == 0.0  # nothing completed yet, nothing abandoned
    tracker.record_transfer(wire_bytes=1000, network_ms=48.0, now_s=1.0)
    tracker.record_transfer(wire_bytes=1000, network_ms=88.0, now_s=2.0, completed=False)
    obs = tracker.observe(now_s=2.5, deadline_ms=100.0)
    assert obs[cfg.history] == pytest.approx(0.5 / cfg.max_age_s)  # the newest sample is fresh...
    assert obs[-2] == pytest.approx(1.5 / cfg.max_age_s)  # ...but the last completed transfer is older
    assert obs[-1] == pytest.approx(0.5)  # one of the two transfers was abandoned


def test_the_environment_records_an_abandoned_offload(profiled_bundle: Path) -> None:
    setup = SplitSetup.load(profiled_bundle, need_spec=False)
    env = SplitEnv(setup.cost_model(), [_trace([1e-3] * 50)], setup.val_accuracy,
                   cfg=EnvConfig(random_start=False, measure_noise=0.0, deadline_ms=100.0))
    obs, _ = env.reset(options={"trace": 0, "start_s": 0.0})
    assert obs.shape == (env.cfg.state.dim,)
    obs, _, _, _, info = env.step(setup.space.server_only())
    assert info["fallback"] and info["answered"] == setup.space.device_only(1)
    assert obs[-1] == 1.0 and obs[-2] == pytest.approx(1.0)  # all abandoned; nothing ever completed
