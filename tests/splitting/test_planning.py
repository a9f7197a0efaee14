"""Cost model, environment, baselines, the numpy policy and the SAC/DQN learners."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared.traces import Trace
from splitting.actions import Action
from splitting.baselines import DeviceOnly, Edgent, Greedy, Neurosurgeon, Oracle
from splitting.env import EnvConfig, SplitEnv
from splitting.evaluate import run_trace, summarise
from splitting.latency import LinkModel
from splitting.policy import MlpPolicy, PolicyError, save_mlp
from splitting.setup import PlannerSpec, SplitSetup
from splitting.state import StateTracker


def _trace(rates: list[float], step: float = 1.0) -> Trace:
    return Trace(name="t", times_s=np.arange(len(rates)) * step, mbit_s=np.asarray(rates, float))


@pytest.fixture(scope="module")
def setup(profiled_bundle: Path) -> SplitSetup:
    return SplitSetup.load(profiled_bundle, need_spec=False)


def test_cost_adds_device_link_and_server(setup: SplitSetup) -> None:
    model = setup.cost_model(LinkModel(rtt_ms=40.0, request_overhead_bytes=100, response_bytes=100))
    split = setup.space.index(Action(4, 2, 4))
    cost = model.cost(split, load=2.0, mbit_s=1.0)
    up_ms = 8 * (model.payload_bytes(split) + 100) / 1000.0
    assert cost.device_ms == pytest.approx(2.0 * (20.0 + 0.05))
    assert cost.latency_ms == pytest.approx(cost.device_ms + up_ms + 40.0 + 0.8 + 1.0)
    device = model.cost(setup.space.device_only(4), load=1.0, mbit_s=1.0)
    assert device.latency_ms == 40.0 and device.wire_bytes == 0


def test_transfer_follows_the_trace(setup: SplitSetup) -> None:
    model = setup.cost_model(LinkModel(rtt_ms=0.0, request_overhead_bytes=0, response_bytes=0))
    server = setup.space.server_only()
    slow = model.cost(server, load=1.0, trace=_trace([0.01, 10.0]), start_s=0.0)
    fast = model.cost(server, load=1.0, trace=_trace([0.01, 10.0]), start_s=1.0)
    assert slow.network_ms > 40 * fast.network_ms


def test_tracker_estimates_bandwidth_from_its_transfers() -> None:
    tracker = StateTracker()
    tracker.record_transfer(wire_bytes=1000, network_ms=48.0, now_s=0.0)  # first one sets the base RTT
    sample = tracker.record_transfer(wire_bytes=1000, network_ms=56.0, now_s=1.0)  # 8 ms on the link
    assert sample == pytest.approx(1.0)
    obs = tracker.observe(now_s=3.0, deadline_ms=100.0)
    assert obs[0] == pytest.approx(0.0)  # log10(1 Mbit/s), newest first
    assert obs[tracker.cfg.history] == pytest.approx(2.0 / tracker.cfg.max_age_s)


def test_the_base_rtt_never_exceeds_the_configured_one() -> None:
    # A device's transfers all carry bytes: the fastest one's network time is the RTT plus its own time on
    # the link, so it must not become the base (its sample would be the 0.2 ms floor: 40 Mbit/s here).
    tracker = StateTracker(initial_rtt_ms=40.0)
    first = tracker.record_transfer(wire_bytes=1000, network_ms=48.0, now_s=0.0)
    assert tracker.rtt_ms == 40.0 and first == pytest.approx(1.0)  # 8 ms on the link: 1 Mbit/s
    tracker.record_transfer(wire_bytes=1000, network_ms=30.0, now_s=1.0)  # a shorter path than configured
    assert tracker.rtt_ms == 30.0


def _env(setup: SplitSetup, rates: list[float], *, link: LinkModel | None = None, **kw: object) -> SplitEnv:
    cfg = EnvConfig(random_start=False, measure_noise=0.0, **kw)  # type: ignore[arg-type]
    return SplitEnv(setup.cost_model(link), [_trace(rates)], setup.val_accuracy, cfg=cfg,
                    correct=setup.test_correct)


def test_env_rejects_invalid_actions_and_reports_costs(setup: SplitSetup) -> None:
    env = _env(setup, [1.0] * 10)
    env.reset()
    invalid = int(np.flatnonzero(~setup.space.valid)[0])
    with pytest.raises(ValueError, match="not a valid"):
        env.step(invalid)
    _, reward, _, _, info = env.step(setup.space.server_only())
    assert info["wire_bytes"] > 0 and info["latency_ms"] > 40.0
    assert env.tracker.last_mbit_s == pytest.approx(1.0, rel=1e-6)  # measured exactly without noise
    assert reward < 20.0


def test_oracle_beats_every_fixed_strategy_in_reward(setup: SplitSetup) -> None:
    env = _env(setup, [0.05, 5.0] * 30, deadline_ms=60.0)
    totals = {}
    for planner in (Oracle(), DeviceOnly(env.model), Neurosurgeon(env.model, mean_mbit_s=1.0, rtt_ms=40.0)):
        obs, info = env.reset(options={"trace": 0, "start_s": 0.0})
        total = 0.0
        for _ in range(40):
            obs, r, _, _, info = env.step(planner.choose(obs, info["action_mask"], env))
            total += r
        totals[planner.name] = total
    assert totals["oracle"] >= max(totals["device_only"], totals["neurosurgeon"])


def test_edgent_offloads_only_when_the_estimate_allows(setup: SplitSetup) -> None:
    # RTT 10 ms, deadline 35 ms: the full net on the device (40 ms) is too slow, the server is not.
    env = _env(setup, [1.0] * 20, deadline_ms=35.0, rtt_ms=10.0)
    edgent = Edgent(env.model, setup.val_accuracy, prior_mbit_s=1.0)
    obs, info = env.reset()
    env.tracker.record_throughput(100.0, now_s=0.0)
    fast = setup.space.actions[edgent.choose(obs, info["action_mask"], env)]
    env.tracker.record_throughput(0.001, now_s=0.0)
    slow = setup.space.actions[edgent.choose(obs, info["action_mask"], env)]
    assert fast.partition < 4  # offloading fits the deadline at 100 Mbit/s
    assert slow.partition == 4  # at 1 kbit/s only the device can answer in time


def test_policy_roundtrip_and_masking(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    layers = [(rng.normal(size=(8, 16)), rng.normal(size=16)), (rng.normal(size=(16, 5)), rng.normal(size=5))]
    policy = MlpPolicy.load(save_mlp(tmp_path / "p.npz", layers, meta={"algorithm": "test"}))
    obs = rng.normal(size=8).astype(np.float32)
    scores = np.maximum(obs @ layers[0][0] + layers[0][1], 0) @ layers[1][0] + layers[1][1]
    assert np.allclose(policy.scores(obs), scores, atol=1e-4)
    mask = np.zeros(5, bool)
    mask[int(np.argmin(scores))] = True
    assert policy.act(obs, mask) == int(np.argmin(scores))
    with pytest.raises(PolicyError, match="state of 8 values"):
        policy.scores(np.zeros(3))
    assert policy.meta == {"algorithm": "test"}


def test_summary_has_the_fields_the_issue_names(setup: SplitSetup) -> None:
    env = _env(setup, [1.0] * 30)
    run = run_trace(env, DeviceOnly(env.model), 0, duration_s=5.0)
    summary = summarise([run], [a.label(4) for a in setup.space.actions])
    s = summary["device_only"]
    for key in ("mean_latency_ms", "p95_latency_ms", "deadline_miss_rate", "accuracy", "bytes_per_request"):
        assert key in s and key in s["per_trace"]["t"]
    assert s["requests"] == 20 and s["bytes_per_request"] == 0.0


def test_planner_spec_roundtrips() -> None:
    spec = PlannerSpec(link=LinkModel(rtt_ms=25.0), deadline_ms=80.0)
    assert PlannerSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


def test_live_summary_counts_lost_and_fallback_requests() -> None:
    from splitting.live import summarise_live

    records = [{"latency_ms": 50.0, "correct": True, "payload_bytes": 49, "source": "cloud"},
               {"latency_ms": 150.0, "correct": False, "payload_bytes": 49, "source": "edge-fallback"},
               {"latency_ms": 3.0, "error": "ConnectError"}]
    s = summarise_live(records, deadline_ms=100.0)
    assert s["requests"] == 3 and s["answered"] == 2 and s["lost"] == 1
    assert s["mean_latency_ms"] == 100.0 and s["deadline_miss_rate"] == 0.5
    assert s["accuracy"] == 0.5 and s["fallback_rate"] == 0.5 and s["bytes_per_request"] == 49.0


@pytest.mark.parametrize("hedge", [False, True])
@pytest.mark.parametrize("mbit_s", [0.03, 0.3])  # the device answers; the server does
def test_greedy_is_the_oracle_where_the_last_transfer_predicts_the_next(setup: SplitSetup, hedge: bool,
                                                                         mbit_s: float) -> None:
    # A constant link measured without noise: the cost model's prediction from the last transfer is the
    # real cost, so maximising the predicted reward is maximising the real one, request by request.
    s = setup.with_regime(setup.regime.override(hedge=hedge))
    env = SplitEnv(s.cost_model(), [_trace([mbit_s] * 60)], s.val_accuracy,
                   cfg=EnvConfig(random_start=False, measure_noise=0.0, deadline_ms=60.0, rtt_ms=10.0,
                                 acc_weight=3.0))
    greedy = Greedy(env.model, s.val_accuracy, prior_mbit_s=mbit_s, acc_weight=3.0, miss_penalty=2.0)
    chosen: set[int] = set()
    obs, info = env.reset(options={"trace": 0, "start_s": 0.0})
    for _ in range(30):
        best = max(env.reward(int(i), env.cost(int(i))) for i in np.flatnonzero(info["action_mask"]))
        index = greedy.choose(obs, info["action_mask"], env)
        chosen.add(index)
        obs, r, _, _, info = env.step(index)
        assert r == pytest.approx(best)
    assert len(chosen) == 1  # nothing changes, so neither does the choice


def test_greedy_trades_accuracy_for_latency_by_the_planners_weight(setup: SplitSetup) -> None:
    # At 1 kbit/s nothing offloads in time; the device's exits trade accuracy for time, and the weight
    # decides: a large one buys the final exit, a tiny one the fastest exit.
    env = _env(setup, [0.001] * 20, deadline_ms=100.0, rtt_ms=10.0)
    obs, info = env.reset()
    picks = {}
    for weight in (100.0, 1e-4):
        greedy = Greedy(env.model, setup.val_accuracy, prior_mbit_s=0.001, acc_weight=weight, miss_penalty=2.0)
        picks[weight] = setup.space.actions[greedy.choose(obs, info["action_mask"], env)]
    assert picks[100.0].partition == 4 and picks[100.0].exit == 4
    assert picks[1e-4].partition == 4 and picks[1e-4].exit == 1


def test_greedy_is_a_strategy_of_every_bundle_with_the_planners_weights(setup: SplitSetup) -> None:
    assert "greedy" in setup.strategies()
    planner = setup.planner("greedy")
    assert isinstance(planner, Greedy)
    assert (planner.acc_weight, planner.miss_penalty) == (setup.spec.acc_weight, setup.spec.miss_penalty)


def test_greedy_insures_a_final_exit_answer_with_the_hedge(setup: SplitSetup) -> None:
    # A fast link: the point estimate picks server-only; a dead one: the device's final exit. Both answer
    # with the final exit, so a space with the hedge hedges instead (the real link may disagree).
    hedged = setup.with_regime(setup.regime.override(hedge=True))
    for mbit_s in (100.0, 0.001):
        env = _env(hedged, [mbit_s] * 20, deadline_ms=100.0, rtt_ms=10.0)
        obs, info = env.reset()
        greedy = Greedy(env.model, hedged.val_accuracy, prior_mbit_s=mbit_s, acc_weight=100.0, miss_penalty=2.0)
        assert greedy.choose(obs, info["action_mask"], env) == hedged.space.hedged()
        plain = Greedy(_env(setup, [mbit_s] * 20).model, setup.val_accuracy, prior_mbit_s=mbit_s, acc_weight=100.0,
                       miss_penalty=2.0)
        expected = setup.space.server_only() if mbit_s > 1 else setup.space.device_only(4)
        assert plain.choose(obs, setup.space.mask(), env) == expected
