"""The hedge action: server-only raced against the device's own whole network (splitting/actions.py).

Its cost is the earlier of the two answers (the server's only by the deadline), the published baselines
never pick it, a bundle gains it only through its regime, and the live edge runs the same race. The
early-exit hedges (`hedge:exitE`) race the same upload against the head up to exit E.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.cloud_client import CloudAnswer, OffloadError
from edge_agent.split import SplitAgent
from shared.bundle import BundleError
from shared.datasets import load_dataset
from shared.names import AnswerSource, FallbackReason
from shared.traces import Trace
from splitting import profile as P
from splitting.actions import ActionSpace, Placement
from splitting.evaluate import eval_env, run_trace
from splitting.regime import Regime, ServerPayload, add_regime_arguments, regime_overrides
from splitting.segments import head_name
from splitting.setup import ARTIFACT_SPEC, SPEC_JSON, PlannerSpec, SplitSetup, store_artifact


def test_the_space_gains_one_action_that_needs_a_server() -> None:
    grid, hedged = ActionSpace(4), ActionSpace(4, hedge=True)
    assert len(hedged) == len(grid) + 1 and hedged.n_valid == grid.n_valid + 1
    h = hedged.hedged()
    assert hedged.actions[h].label(4) == "hedge" and hedged.actions[h].placement(4) is Placement.HEDGE
    assert hedged.mask()[h] and not hedged.mask(server_available=False)[h] and not hedged.grid_mask()[h]
    # The grid keeps its indices, so a table indexed by grid action still lines up.
    assert hedged.actions[: len(grid)] == grid.actions
    assert hedged.server_only() == grid.server_only() and hedged.device_only(4) == grid.device_only(4)
    with pytest.raises(ValueError, match="hedge"):
        grid.hedged()


def test_early_exit_hedges_come_before_the_whole_networks_and_name_their_exit() -> None:
    grid, space = ActionSpace(4), ActionSpace(4, hedge=True, hedge_exits=(3, 2))
    assert space.hedge_exits == (2, 3) and len(space) == len(grid) + 3
    assert space.actions[: len(grid)] == grid.actions
    assert space.hedged() == len(space) - 1 and space.actions[space.hedged()].exit == 4
    assert [space.actions[i].label(4) for i in space.hedge_indices()] == ["hedge:exit2", "hedge:exit3", "hedge"]
    assert space.actions[space.hedged(3)].exit == 3 and space.hedged(4) == space.hedged()
    for i in space.hedge_indices():
        assert space.valid[i] and not space.grid_mask()[i] and not space.mask(server_available=False)[i]
    with pytest.raises(ValueError, match="hedge exits: \\[2, 3\\]"):
        space.hedged(1)
    with pytest.raises(ValueError, match=r"early exit, 1\.\.3"):
        ActionSpace(4, hedge=True, hedge_exits=(4,))
    with pytest.raises(ValueError, match="needs the hedge"):
        ActionSpace(4, hedge_exits=(2,))


def test_an_early_exit_hedge_answers_by_its_exit_or_with_the_server(profiled_bundle: Path) -> None:
    setup = SplitSetup.load(profiled_bundle, need_spec=False)
    setup = setup.with_regime(setup.regime.override(hedge=True, hedge_exits=(2,)))
    model = setup.cost_model()
    h2, server = setup.space.hedged(2), setup.space.server_only()
    offload = model.cost(server, load=1.0, mbit_s=1e6).device_ms
    local = offload + setup.device.ms(head_name(2))
    assert local < offload + setup.device.ms(head_name(4))  # an earlier exit answers sooner than the whole net
    # A fast link: the server answers before exit 2 (the fixture's profiles are synthetic), as server-only.
    fast = model.cost(h2, load=1.0, mbit_s=100.0, rtt_ms=1.0, deadline_ms=500.0)
    alone = model.cost(server, load=1.0, mbit_s=100.0, rtt_ms=1.0).latency_ms
    assert alone < local and fast.fallback is None and fast.latency_ms == pytest.approx(alone)
    slow = model.cost(h2, load=1.0, mbit_s=0.05, rtt_ms=40.0, deadline_ms=10_000.0)
    assert slow.fallback == setup.space.device_only(2) and slow.latency_ms == pytest.approx(local)
    assert slow.completed  # the upload goes on and is measured
    assert setup.val_accuracy[h2] == setup.val_accuracy[server]
    # The environment credits a won race with the exit's accuracy, not the teacher's.
    trace = Trace(name="slow", times_s=np.arange(0, 30, 0.1), mbit_s=np.full(300, 0.02))
    env = eval_env(setup, [trace])
    env.reset(options={"trace": 0, "start_s": 0.0})
    _, _, _, _, info = env.step(h2)
    assert info["answered"] == setup.space.device_only(2) and info["latency_ms"] == pytest.approx(local)


def test_greedy_races_the_exit_it_would_answer_from(profiled_bundle: Path) -> None:
    # On a link too slow to offload, greedy answers from the device; with a hedge against that exit, it
    # takes the hedge (never later, and the teacher when the link turns out faster).
    setup = SplitSetup.load(profiled_bundle, need_spec=False)
    plain_env = eval_env(setup, [Trace(name="slow", times_s=np.arange(0, 30, 0.1), mbit_s=np.full(300, 0.01))])
    plain = run_trace(plain_env, setup.planner("greedy", plain_env.model), 0)
    exits = sorted({setup.space.actions[a].exit for a in plain.action})
    assert all(setup.space.actions[a].partition == 4 for a in plain.action) and exits
    early = tuple(e for e in exits if e < 4)
    hedged = setup.with_regime(setup.regime.override(hedge=True, hedge_exits=early or (2,)))
    env = eval_env(hedged, [Trace(name="slow", times_s=np.arange(0, 30, 0.1), mbit_s=np.full(300, 0.01))])
    run = run_trace(env, hedged.planner("greedy", env.model), 0)
    assert all(hedged.space.actions[a].hedge for a in run.action)
    assert {hedged.space.actions[a].exit for a in run.action} <= set(exits)


def test_regime_flags_bring_the_whole_networks_hedge_with_the_early_ones() -> None:
    parser = argparse.ArgumentParser()
    add_regime_arguments(parser)
    args = parser.parse_args(["--hedge-exits", "3"])
    assert (args.hedge, regime_overrides(args)["hedge_exits"]) == (True, (3,))
    assert Regime().override(**regime_overrides(args)).hedge_exits == (3,)
    dropped = Regime(hedge=True, hedge_exits=(3,)).override(**regime_overrides(parser.parse_args(["--no-hedge"])))
    assert not dropped.hedge and dropped.hedge_exits == ()
    with pytest.raises(ValueError, match="needs hedge"):
        Regime(hedge_exits=(3,))
    with pytest.raises(ValueError, match="distinct exits"):
        Regime(hedge=True, hedge_exits=(3, 3))


def test_a_hedge_exit_the_network_lacks_is_a_bundle_error(profiled_bundle: Path) -> None:
    setup = SplitSetup.load(profiled_bundle, need_spec=False)
    with pytest.raises(BundleError, match=r"early exit, 1\.\.3"):
        setup.with_regime(setup.regime.override(hedge=True, hedge_exits=(7,)))


def _hedged(setup: SplitSetup) -> SplitSetup:
    return setup.with_regime(setup.regime.override(hedge=True))


def test_a_hedge_costs_the_earlier_answer_and_the_server_only_by_the_deadline(profiled_bundle: Path) -> None:
    setup = _hedged(SplitSetup.load(profiled_bundle, need_spec=False))
    model = setup.cost_model()
    h, server, device = setup.space.hedged(), setup.space.server_only(), setup.space.device_only(4)
    local = model.cost(server, load=1.0, mbit_s=1e6).device_ms + setup.device.ms(head_name(4))
    # A fast link: the server answers first, as server-only would.
    fast = model.cost(h, load=1.0, mbit_s=100.0, rtt_ms=1.0, deadline_ms=500.0)
    assert fast.fallback is None and fast.latency_ms == pytest.approx(
        model.cost(server, load=1.0, mbit_s=100.0, rtt_ms=1.0).latency_ms)
    # A link slower than the device: the device answers, with exit S, and the upload goes on to completion.
    slow = model.cost(h, load=1.0, mbit_s=0.05, rtt_ms=40.0, deadline_ms=10_000.0)
    total = model.cost(server, load=1.0, mbit_s=0.05, rtt_ms=40.0).latency_ms
    assert local < total <= 10_000.0
    assert slow.latency_ms == pytest.approx(local) and slow.fallback == device
    assert slow.completed and slow.measured_at_ms == pytest.approx(total)
    # Past the deadline the upload is abandoned there (an upper-bound sample), never an early exit.
    late = model.cost(h, load=1.0, mbit_s=0.05, rtt_ms=40.0, deadline_ms=local + 1.0)
    assert late.fallback == device and not late.completed and late.measured_at_ms == pytest.approx(local + 1.0)
    # Even when the server would be faster but misses the deadline, the device's answer stands.
    assert model.cost(h, load=5.0, mbit_s=1.0, rtt_ms=40.0, deadline_ms=1.0).fallback == device


def test_on_a_trace_with_stalls_every_hedged_request_takes_the_earlier_of_its_two_paths(
        profiled_bundle: Path) -> None:
    # Brute force: each request replayed alone (links idle) under server-only and under device-only.
    stall = Trace(name="stall", times_s=np.arange(0, 60, 0.1),
                  mbit_s=np.where((np.arange(600) // 50) % 2 == 0, 2.0, 0.0) + 1e-6)
    setup = _hedged(SplitSetup.load(profiled_bundle, need_spec=False))
    setup = setup.with_regime(setup.regime.override(period_s=2.0, deadline_ms=400.0))
    model = setup.cost_model()
    h, server = setup.space.hedged(), setup.space.server_only()
    local = model.cost(server, load=1.0, mbit_s=1e6).device_ms + setup.device.ms(head_name(4))
    won_locally = 0
    for t in np.arange(0.0, 58.0, 2.0):
        hedge = model.cost(h, load=1.0, start_s=t, trace=stall, rtt_ms=10.0, deadline_ms=400.0, sample=0)
        alone = model.cost(server, load=1.0, start_s=t, trace=stall, rtt_ms=10.0, sample=0)
        expected = alone.latency_ms if alone.latency_ms <= min(local, 400.0) else local
        assert hedge.latency_ms == pytest.approx(expected)
        won_locally += hedge.fallback is not None
    assert 0 < won_locally < 29  # the stalls make both paths win somewhere


def test_the_bundle_gains_the_action_through_its_regime_and_baselines_ignore_it(profiled_bundle: Path) -> None:
    plain = SplitSetup.load(profiled_bundle, need_spec=False)
    assert "hedge" not in plain.strategies()
    with pytest.raises(BundleError, match="--hedge"):
        plain.resolve_strategies(["hedge"])
    setup = _hedged(plain)
    assert "hedge" in setup.strategies() and len(setup.val_accuracy) == len(setup.space)
    h, server = setup.space.hedged(), setup.space.server_only()
    assert setup.val_accuracy[h] == setup.val_accuracy[server]
    assert setup.test_correct is not None
    np.testing.assert_array_equal(setup.test_correct[h], setup.test_correct[server])
    # And back: the grid alone again.
    assert len(setup.with_regime(setup.regime.override(hedge=False)).space) == len(plain.space)

    trace = Trace(name="t", times_s=np.arange(0, 30, 0.1), mbit_s=np.full(300, 0.3))
    env = eval_env(setup, [trace])
    for name in ("neurosurgeon", "edgent", "server_only_jpeg", "device_only"):
        run = run_trace(env, setup.planner(name, env.model), 0)
        assert h not in run.action, name
    hedge_run = run_trace(env, setup.planner("hedge", env.model), 0)
    assert set(hedge_run.action) == {h}
    device_run = run_trace(env, setup.planner("device_only", env.model), 0)
    # Never slower than the device on its own, by more than the offload's own client work.
    offload = env.model.cost(server, load=1.0, mbit_s=1e6).device_ms
    assert max(hedge_run.latency_ms) <= max(device_run.latency_ms) + offload + 1e-9


def test_a_spec_records_the_hedge(profiled_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    shutil.copytree(profiled_bundle, out)
    regime = Regime(deadline_ms=500.0, hedge=True, server_payload=ServerPayload.RAW)
    store_artifact(out, ARTIFACT_SPEC, SPEC_JSON, json.dumps(PlannerSpec(regime).to_json()).encode())
    setup = SplitSetup.load(out)
    assert setup.space.hedge and setup.regime.hedge and "hedge" in setup.strategies()


class _Cloud:
    """A next tier that answers label 7 after `delay_s`, or fails with `error`."""

    circuit_open = False

    def __init__(self, delay_s: float = 0.0, error: OffloadError | None = None) -> None:
        self.delay_s, self.error, self.calls = delay_s, error, 0

    async def infer_model(self, model: str, inputs: dict[str, np.ndarray], *, n: int, parameters: Any = None,
                          budget_s: float | None = None) -> CloudAnswer:
        self.calls += 1
        if self.error is not None:
            raise self.error
        await asyncio.sleep(self.delay_s)
        return CloudAnswer(labels=np.full(n, 7, np.int64), logits=None, rtt_s=self.delay_s, tries=1, bytes_sent=1)


@pytest.fixture
def hedge_bundle(profiled_bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(profiled_bundle, out)
    regime = Regime(deadline_ms=5000.0, hedge=True)
    store_artifact(out, ARTIFACT_SPEC, SPEC_JSON, json.dumps(PlannerSpec(regime).to_json()).encode())
    return out


def _ask(agent: SplitAgent, x: np.ndarray, **params: Any) -> Any:
    async def go() -> Any:
        answer = await agent.infer(x, strategy=params.get("strategy", "hedge"), deadline_ms=5000.0,
                                   action=params.get("action"))
        pending = list(agent._background)
        await asyncio.gather(*pending, return_exceptions=True)  # let a hedged upload finish
        return answer
    return asyncio.run(go())


def test_the_live_edge_runs_the_same_race(hedge_bundle: Path) -> None:
    x = load_dataset("digits").test.x[:1]
    # The server is slow: the device answers with its own exit S, and the upload still gets measured.
    agent = SplitAgent(hedge_bundle, cloud=_Cloud(delay_s=0.5))  # type: ignore[arg-type]
    assert "hedge" in agent.planners
    own = _ask(agent, x, action="device:exit4")
    answer = _ask(agent, x)
    assert answer.source is AnswerSource.FALLBACK and answer.reason == FallbackReason.LOCAL_FIRST.value
    assert answer.action == "hedge" and answer.payload_bytes == x.size
    np.testing.assert_array_equal(answer.labels, own.labels)
    assert agent.tracker.samples and list(agent.tracker.abandoned)[-1] is False

    # The device is slow: the server's answer wins.
    agent = SplitAgent(hedge_bundle, cloud=_Cloud(delay_s=0.0))  # type: ignore[arg-type]
    run = agent.device.run
    agent.device.run = lambda *a, **k: (time.sleep(0.5), run(*a, **k))[1]  # type: ignore[method-assign]
    answer = _ask(agent, x)
    assert answer.source is AnswerSource.CLOUD and answer.labels.tolist() == [7]

    # The server is down: the device's own answer, labelled with the reason.
    down = OffloadError(FallbackReason.UNREACHABLE, "down", tried=True)
    agent = SplitAgent(hedge_bundle, cloud=_Cloud(error=down))  # type: ignore[arg-type]
    answer = _ask(agent, x)
    assert answer.source is AnswerSource.FALLBACK and answer.reason == "unreachable"
    np.testing.assert_array_equal(answer.labels, own.labels)


def test_the_live_edge_races_an_early_exit_too(profiled_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "early"
    shutil.copytree(profiled_bundle, out)
    regime = Regime(deadline_ms=5000.0, hedge=True, hedge_exits=(2,))
    store_artifact(out, ARTIFACT_SPEC, SPEC_JSON, json.dumps(PlannerSpec(regime).to_json()).encode())
    x = load_dataset("digits").test.x[:1]
    agent = SplitAgent(out, cloud=_Cloud(delay_s=0.5))  # type: ignore[arg-type]
    own = _ask(agent, x, action="device:exit2")
    answer = _ask(agent, x, action="hedge:exit2")
    assert answer.source is AnswerSource.FALLBACK and answer.reason == FallbackReason.LOCAL_FIRST.value
    assert answer.action == "hedge:exit2"
    np.testing.assert_array_equal(answer.labels, own.labels)
    agent = SplitAgent(out, cloud=_Cloud(delay_s=0.0))  # type: ignore[arg-type]
    run = agent.device.run
    agent.device.run = lambda *a, **k: (time.sleep(0.5), run(*a, **k))[1]  # type: ignore[method-assign]
    assert _ask(agent, x, action="hedge:exit2").labels.tolist() == [7]
    # The server down: exit 2's answer, labelled with the reason.
    down = OffloadError(FallbackReason.UNREACHABLE, "down", tried=True)
    agent = SplitAgent(out, cloud=_Cloud(error=down))  # type: ignore[arg-type]
    answer = _ask(agent, x, action="hedge:exit2")
    assert answer.source is AnswerSource.FALLBACK and answer.reason == "unreachable"
    np.testing.assert_array_equal(answer.labels, own.labels)


def test_a_bundle_without_the_hedge_has_no_live_hedge(profiled_bundle: Path) -> None:
    agent = SplitAgent(profiled_bundle, cloud=None)
    assert "hedge" not in agent.planners and "server_only" in agent.planners


def test_a_live_throughput_sample_leaves_out_the_server_and_the_device_client_work(
        profiled_bundle: Path, tmp_path: Path) -> None:
    # The cost model counts the client's own work for an offload as device time, so a live sample, like
    # the environment's, is the round trip less the server's compute and less that work.
    out = tmp_path / "bundle"
    shutil.copytree(profiled_bundle, out)
    device = SplitSetup.load(out, need_spec=False).device
    P.store(out, replace(device, segments={**device.segments, P.OFFLOAD_SEGMENT: P.SegmentTiming(
        median_ms=20.0, p90_ms=20.0, mean_ms=20.0, runs=1)}))
    agent = SplitAgent(out, cloud=_Cloud(delay_s=0.2))  # type: ignore[arg-type]
    assert agent.model.offload_client_ms == 20.0
    _ask(agent, load_dataset("digits").test.x[:1], action="server")
    server = agent.model.server_ms(agent.space.server_only())
    assert agent.tracker.network_ms[-1] == pytest.approx(200.0 - server - 20.0)
