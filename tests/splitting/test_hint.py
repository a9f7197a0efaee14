"""Greedy's choice in the planners' state (splitting/hint.py): the environment and the live device append
the same one-hot, training records it in the spec, and a hint over other actions is refused."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.split import SplitAgent
from edgecloud.cli import main
from shared.bundle import BundleError
from shared.datasets import load_dataset
from shared.traces import Trace
from splitting.baselines import Greedy
from splitting.env import EnvConfig, SplitEnv
from splitting.evaluate import evaluate_strategies
from splitting.policy import save_mlp
from splitting.regime import Regime
from splitting.setup import ARTIFACT_SPEC, SPEC_JSON, PlannerSpec, SplitSetup, policy_artifact, store_artifact
from splitting.state import StateConfig
from tests.helpers.trace_folder import trace_folder

# 10 s fast, 10 s stalled, 10 s fast: greedy's choice changes with what the device measured (over a 5 ms
# RTT the fixture's server answers sooner than its device).
TRACE = Trace(name="fast-stall-fast", times_s=np.array([0.0, 10.0, 20.0]), mbit_s=np.array([20.0, 0.005, 20.0]))


def test_the_state_holds_the_one_hot_after_the_rest() -> None:
    plain, hinted = StateConfig(), StateConfig(hint_actions=5)
    assert hinted.dim == plain.dim + 5 and len(hinted.names) == hinted.dim
    assert hinted.names[:plain.dim] == plain.names and hinted.names[plain.dim:] == [f"greedy[{i}]" for i in range(5)]


def _greedy(setup: SplitSetup, env: SplitEnv, acc_weight: float) -> Greedy:
    c = env.cfg
    return Greedy(env.model, setup.val_accuracy, prior_mbit_s=c.state.prior_mbit_s, acc_weight=acc_weight,
                  miss_penalty=c.miss_penalty)


def test_the_environment_appends_greedys_choice_for_this_request(profiled_bundle: Path) -> None:
    setup = SplitSetup.load(profiled_bundle, need_spec=False)
    n = len(setup.space)
    # Greedy in the hint at its own weight (3), the planners' reward at theirs (20).
    state = replace(setup.spec.state, hint_actions=n, hint_acc_weight=3.0)
    # A 30 ms deadline: the device's whole network (40 ms here) misses it, and the weight decides what instead.
    cfg = EnvConfig(deadline_ms=30.0, rtt_ms=5.0, acc_weight=20.0, random_start=False, state=state)
    env = SplitEnv(setup.cost_model(), [TRACE], setup.val_accuracy, cfg=cfg, seed=0)
    assert env.observation_space.shape == (state.dim,)
    greedy, at_20 = _greedy(setup, env, 3.0), _greedy(setup, env, 20.0)
    obs, info = env.reset(options={"trace": 0, "start_s": 0.0})
    hints, differs = [], 0
    for _ in range(100):  # 25 s: through the stall and out of it
        assert obs.shape == (state.dim,) and obs.dtype == np.float32
        hint = obs[-n:]
        assert hint.sum() == 1.0 and set(np.unique(hint)) == {0.0, 1.0}
        # The hint is greedy's choice from the same measurements, at the hint's weight.
        assert int(hint.argmax()) == greedy.choose(obs[:-n], info["action_mask"], env)
        hints.append(int(hint.argmax()))
        differs += hints[-1] != at_20.choose(obs[:-n], info["action_mask"], env)
        obs, _, _, _, info = env.step(hints[-1])
    assert len(set(hints)) > 1  # a fast link and a stall call for different actions
    assert differs  # and the weight is the hint's, not the reward's


def _hinted_bundle(profiled_bundle: Path, out: Path, *, hint_actions: int | None = None) -> Path:
    """A copy whose spec's state holds the hint, with a SAC policy (random weights) that reads it."""
    shutil.copytree(profiled_bundle, out)
    n = len(SplitSetup.load(out, need_spec=False).space)
    spec = PlannerSpec(Regime(deadline_ms=200.0, rtt_ms=5.0), acc_weight=3.0,
                       state=StateConfig(hint_actions=n if hint_actions is None else hint_actions))
    store_artifact(out, ARTIFACT_SPEC, SPEC_JSON, json.dumps(spec.to_json()).encode())
    rng = np.random.default_rng(0)
    layers = [(rng.normal(size=(spec.state.dim, 16)), np.zeros(16)), (rng.normal(size=(16, n)), np.zeros(n))]
    store_artifact(out, policy_artifact("sac"), "split/policy_sac.npz",
                   save_mlp(out.parent / "sac.npz", layers, meta={}).read_bytes())
    return out


class _Cloud:
    circuit_open = False


def test_the_live_device_appends_the_hint_the_environment_would(profiled_bundle: Path, tmp_path: Path) -> None:
    bundle = _hinted_bundle(profiled_bundle, tmp_path / "hinted")
    agent = SplitAgent(bundle, cloud=_Cloud())  # type: ignore[arg-type]
    n = len(agent.space)
    seen: list[np.ndarray] = []

    class Recording:
        name = "recording"

        def choose(self, obs: np.ndarray, mask: np.ndarray, view: Any) -> int:
            seen.append(obs)
            return agent.space.device_only(1)  # no server needed to answer

    agent.planners["sac"] = Recording()
    setup = SplitSetup.load(bundle)
    env = SplitEnv(setup.cost_model(), [TRACE], setup.val_accuracy, seed=0,
                   cfg=EnvConfig(deadline_ms=200.0, rtt_ms=5.0, acc_weight=setup.spec.acc_weight,
                                 state=setup.spec.state))
    env.reset(options={"trace": 0, "start_s": 0.0})
    x = load_dataset("digits").test.x[:1]
    for mbit_s in (20.0, 0.005):  # the device measured a fast link, then a stalled one
        agent.tracker.record_throughput(mbit_s, now_s=0.0)
        env.tracker.record_throughput(mbit_s, now_s=0.0)
        asyncio.run(agent.infer(x, strategy="sac", deadline_ms=200.0))
        live, simulated = seen[-1][-n:], env.observe()[-n:]
        np.testing.assert_array_equal(live, simulated)
    assert not np.array_equal(seen[0][-n:], seen[1][-n:])
    # The learned planner gets a state of the size it was trained on.
    assert agent.setup.policies["sac"].obs_dim == len(seen[-1])


def test_a_hint_over_other_actions_is_refused_and_goes_with_the_space(profiled_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"greedy's choice over 7 actions.*edgecloud split train"):
        SplitSetup.load(_hinted_bundle(profiled_bundle, tmp_path / "seven", hint_actions=7))
    setup = SplitSetup.load(_hinted_bundle(profiled_bundle, tmp_path / "fits"))
    assert setup.spec.state.hint_actions == len(setup.space) and "sac" in setup.policies
    hedged = setup.with_regime(setup.regime.override(hedge=True))  # one more action: no planner reads this hint
    assert hedged.spec.state.hint_actions == 0 and not hedged.policies
    assert setup.spec.state.hint_actions == len(setup.space)  # the original is untouched
    runs = evaluate_strategies(hedged, [TRACE], ["greedy", "hedge"], duration_s=5.0)
    assert [r.strategy for r in runs] == ["greedy", "hedge"]


def test_split_train_greedy_hint_trains_planners_that_read_it(profiled_bundle: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(profiled_bundle, bundle)
    traces = trace_folder(tmp_path / "up")
    # An earlier training's DQN, for the state without the hint: a SAC-only retrain must not leave it behind.
    n = len(SplitSetup.load(bundle, need_spec=False).space)
    rng = np.random.default_rng(0)
    old = [(rng.normal(size=(StateConfig().dim, 8)), np.zeros(8)), (rng.normal(size=(8, n)), np.zeros(n))]
    store_artifact(bundle, policy_artifact("dqn"), "split/policy_dqn.npz",
                   save_mlp(tmp_path / "dqn.npz", old, meta={}).read_bytes())
    assert main(["split", "train", "--bundle", str(bundle), "--traces", str(traces), "--steps", "64", "--no-dqn",
                 "--greedy-hint", "--deadline-ms", "250", "--no-progress"]) == 0
    setup = SplitSetup.load(bundle)
    assert setup.spec.state.hint_actions == n and setup.policies["sac"].obs_dim == setup.spec.state.dim
    assert "dqn" not in setup.policies and not (bundle / "split/policy_dqn.npz").exists()
    out = tmp_path / "eval"
    assert main(["split", "eval", "--bundle", str(bundle), "--traces", str(traces), "--out", str(out),
                 "--strategies", "sac", "greedy", "--duration-s", "5"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["strategies"]) == {"sac", "greedy"}
    # Greedy's weight in the hint apart from the reward's; without the hint it is refused, naming the flag.
    assert main(["split", "train", "--bundle", str(bundle), "--traces", str(traces), "--steps", "64", "--no-dqn",
                 "--greedy-hint", "--hint-acc-weight", "3.5", "--acc-weight", "4", "--no-progress"]) == 0
    spec = SplitSetup.load(bundle).spec
    assert (spec.state.hint_acc_weight, spec.acc_weight, spec.state.hint_actions) == (3.5, 4.0, n)
    capsys.readouterr()
    assert main(["split", "train", "--bundle", str(bundle), "--traces", str(traces), "--hint-acc-weight", "3.5",
                 "--no-progress"]) == 2
    assert "--greedy-hint" in capsys.readouterr().err
    # Without the flag, a retrain drops the hint.
    assert main(["split", "train", "--bundle", str(bundle), "--traces", str(traces), "--steps", "64", "--no-dqn",
                 "--no-progress"]) == 0
    assert SplitSetup.load(bundle).spec.state.hint_actions == 0
    assert SplitSetup.load(bundle).spec.state.hint_acc_weight is None
    capsys.readouterr()
