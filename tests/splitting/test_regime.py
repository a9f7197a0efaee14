"""The regime: one typed place, recorded in the bundle by training, read back by eval, overridden by flags;
planner specs and policies written before it still load (or are refused with what to re-run)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from shared.bundle import BundleError
from shared.traces import load_traces
from splitting.env import EnvConfig
from splitting.evaluate import eval_env
from splitting.latency import LinkModel
from splitting.policy import save_mlp
from splitting.regime import MNIST, Regime, ServerPayload, add_regime_arguments, regime_overrides
from splitting.setup import (
    ARTIFACT_SPEC,
    SPEC_JSON,
    STRATEGIES,
    PlannerSpec,
    SplitSetup,
    SplitStrategy,
    canonical_strategy,
    policy_artifact,
    store_artifact,
)
from splitting.state import StateConfig
from splitting.train_planners import mean_mbit_s, regime_for_training, training_env_config


def test_the_mnist_constants_are_the_defaults_only_here() -> None:
    assert (MNIST.period_s, MNIST.deadline_ms, MNIST.rtt_ms) == (0.25, 100.0, 40.0)
    assert (MNIST.request_overhead_bytes, MNIST.response_bytes, MNIST.bandwidth_prior) == (420, 360, 1.0)
    # Everything else takes its defaults from the regime, not from its own copy of the numbers.
    assert LinkModel() == LinkModel.from_regime(MNIST)
    cfg = EnvConfig()
    assert (cfg.period_s, cfg.deadline_ms, cfg.rtt_ms) == (MNIST.period_s, MNIST.deadline_ms, MNIST.rtt_ms)
    assert PlannerSpec().state.prior_mbit_s == MNIST.bandwidth_prior


def test_regime_validates_overrides_and_roundtrips() -> None:
    regime = Regime(period_s=0.1, deadline_ms=300.0, rtt_ms=60.0, prior_mbit_s=1.3, uplink_traces=("up",),
                    server_payload="jpeg")
    assert regime.server_payload is ServerPayload.JPEG
    assert Regime.from_json(json.loads(json.dumps(regime.to_json()))) == regime
    changed = regime.override(deadline_ms=150.0, rtt_ms=None)
    assert (changed.deadline_ms, changed.rtt_ms) == (150.0, 60.0)  # None keeps the bundle's value
    with pytest.raises(ValueError, match="deadline_ms must be > 0"):
        Regime(deadline_ms=0.0)
    with pytest.raises(ValueError, match="no field 'deadline'"):
        regime.override(deadline=1.0)
    with pytest.raises(ValueError, match="'gif'"):
        Regime(server_payload="gif")


def test_flags_override_only_what_they_set() -> None:
    parser = argparse.ArgumentParser()
    add_regime_arguments(parser)
    bundle = Regime(deadline_ms=300.0, rtt_ms=60.0, server_payload=ServerPayload.JPEG)
    args = parser.parse_args(["--rtt-ms", "20", "--server-payload", "raw", "--downlink-traces", "down"])
    regime = bundle.override(**regime_overrides(args))
    assert (regime.deadline_ms, regime.rtt_ms, regime.server_payload) == (300.0, 20.0, ServerPayload.RAW)
    assert regime.downlink_traces == ("down",)
    assert bundle.override(**regime_overrides(parser.parse_args([]))) == bundle


def test_version_1_specs_load_as_mnist_with_the_old_state() -> None:
    v1 = {"link": {"rtt_ms": 25.0, "request_overhead_bytes": 420, "response_bytes": 360}, "deadline_ms": 80.0,
          "period_s": 0.25, "acc_weight": 20.0, "miss_penalty": 2.0,
          "state": {"history": 4, "prior_mbit_s": 1.0, "max_age_s": 10.0, "rtt_window": 20, "rtt_scale_ms": 100.0,
                    "deadline_scale_ms": 100.0, "load_alpha": 0.3},
          "train_mean_mbit_s": 1.4, "train_traces": ["fcc"], "training": {"sac": {}}}
    spec = PlannerSpec.from_json(v1)
    assert spec.regime == Regime(deadline_ms=80.0, rtt_ms=25.0, prior_mbit_s=1.0, uplink_traces=("fcc",))
    assert spec.regime.server_payload is ServerPayload.RAW
    assert spec.state.dim == 8 and not spec.state.stall  # what its policies were trained on
    assert (spec.link.rtt_ms, spec.deadline_ms, spec.train_traces) == (25.0, 80.0, ["fcc"])
    assert PlannerSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


def test_version_2_specs_roundtrip_and_the_old_keywords_still_build_one() -> None:
    spec = PlannerSpec(Regime(deadline_ms=300.0, prior_mbit_s=1.3, server_payload=ServerPayload.JPEG),
                       train_mean_mbit_s=1.3)
    assert spec.state.prior_mbit_s == 1.3 and spec.state.stall
    assert PlannerSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    old = PlannerSpec(link=LinkModel(rtt_ms=25.0), deadline_ms=80.0, period_s=0.5)
    assert old.regime == Regime(period_s=0.5, deadline_ms=80.0, rtt_ms=25.0)
    with pytest.raises(BundleError, match="version 9"):
        PlannerSpec.from_json({"version": 9})


def test_training_records_the_regime_and_eval_reads_it_back(profiled_bundle: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(profiled_bundle, bundle)
    folder = tmp_path / "up"
    folder.mkdir()
    (folder / "a").write_text("".join(f"{t / 10}\t{0.0 if t % 10 < 2 else 2.0}\n" for t in range(100)))
    traces = load_traces(folder, purpose="train")
    requested = PlannerSpec(Regime(period_s=0.1, deadline_ms=300.0, rtt_ms=60.0, server_payload=ServerPayload.JPEG))
    spec = regime_for_training(requested, [folder], None, traces)
    # No prior given: the training uplink traces' mean becomes the regime's (and the state's) prior.
    assert spec.regime.prior_mbit_s == pytest.approx(mean_mbit_s(traces)) == spec.train_mean_mbit_s
    assert spec.state.prior_mbit_s == spec.regime.prior_mbit_s
    assert spec.regime.uplink_traces == (str(folder),) and spec.regime.downlink_traces == ()
    cfg = training_env_config(spec)
    assert cfg.deadline_range_ms == (150.0, 600.0) and cfg.period_s == 0.1
    store_artifact(bundle, ARTIFACT_SPEC, SPEC_JSON, json.dumps(spec.to_json()).encode())

    setup = SplitSetup.load(bundle)
    assert setup.regime == spec.regime
    env = eval_env(setup, traces)
    assert (env.cfg.period_s, env.deadline_ms, env.rtt_ms) == (0.1, 300.0, 60.0)
    assert env.model.server_payload is ServerPayload.JPEG
    assert eval_env(setup, traces, deadline_ms=120.0).deadline_ms == 120.0  # a flag overrides the bundle
    assert setup.with_regime(setup.regime.override(rtt_ms=5.0)).cost_model().link.rtt_ms == 5.0


def test_policies_that_do_not_fit_the_state_are_refused_with_the_command(profiled_bundle: Path,
                                                                         tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(profiled_bundle, bundle)
    rng = np.random.default_rng(0)
    store_artifact(bundle, ARTIFACT_SPEC, SPEC_JSON, json.dumps(PlannerSpec().to_json()).encode())

    def policy(obs_dim: int) -> bytes:
        layers = [(rng.normal(size=(obs_dim, 8)), np.zeros(8)), (rng.normal(size=(8, 60)), np.zeros(60))]
        return save_mlp(tmp_path / "p.npz", layers, meta={}).read_bytes()

    store_artifact(bundle, policy_artifact("sac"), "split/policy_sac.npz", policy(8))  # the pre-stall layout
    with pytest.raises(BundleError, match=r"takes 8 state values.*has 10.*edgecloud split train --bundle"):
        SplitSetup.load(bundle)
    store_artifact(bundle, policy_artifact("sac"), "split/policy_sac.npz", policy(StateConfig().dim))
    setup = SplitSetup.load(bundle)
    assert setup.strategies()[0] == "sac" and "dqn" not in setup.strategies()


def test_strategies_are_checked_and_old_names_mapped(profiled_bundle: Path) -> None:
    setup = SplitSetup.load(profiled_bundle, need_spec=False)
    assert canonical_strategy("server_only") is SplitStrategy.SERVER_ONLY_RAW
    assert setup.resolve_strategies(None) == [s for s in SplitStrategy if s not in ("sac", "dqn", "hedge")]
    assert setup.resolve_strategies(["server_only", "oracle", "oracle"]) == ["server_only", "oracle"]
    with pytest.raises(ValueError, match="unknown strategy 'magic'"):
        setup.resolve_strategies(["magic"])
    with pytest.raises(BundleError, match="no trained sac policy; run `edgecloud split train"):
        setup.resolve_strategies(["sac"])
    # The old name is the raw-pixel upload, reported under the name it was asked by.
    assert setup.planner("server_only").name == "server_only" and setup.payload_of("server_only") == "raw"
    assert "server_only" in STRATEGIES and "server_only" not in setup.strategies()
