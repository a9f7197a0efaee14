"""`edgecloud split train`: fit the SAC and DQN planners on the training traces and store them (torch).

    edgecloud split train --bundle B --traces ../shared/data/traces/fcc ../shared/data/traces/norway-hsdpa
    edgecloud split train --bundle B --traces ../shared/data/traces/cellular-up --server-payload jpeg \
        --deadline-ms 300 --rtt-ms 60

Training traces only (shared.traces refuses a test folder here): the uplink folders, and the downlink
ones if given (else each uplink file carries the answers too). The environment randomises what the
deployed planner must cope with around the evaluation point: each episode's deadline in [0.5, 2] x
the regime's, RTT in [0.5, 1.5] x the regime's, and a device load switching between 1, 1.5 and 2.5
(2% chance a request). The actor (SAC) and the Q-network (DQN) go to the bundle as numpy weights
(artifacts split_policy_sac / split_policy_dqn); the spec, with the regime trained for (trace folders
and, unless set, the bandwidth prior: the training uplink traces' mean, filled in), and the learning
curves as split_planner.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from shared.traces import Trace, load_traces
from splitting.dqn import DqnConfig, train_dqn
from splitting.env import EnvConfig, SplitEnv
from splitting.policy import save_mlp
from splitting.sac import SacConfig, mlp_layers, train_sac
from splitting.select import FloorSelector
from splitting.setup import (
    ARTIFACT_SPEC,
    SPEC_JSON,
    PlannerSpec,
    SplitSetup,
    policy_artifact,
    remove_artifact,
    store_artifact,
)

log = logging.getLogger(__name__)


def training_traces(folders: list[Path]) -> list[Trace]:
    traces = []
    for folder in folders:
        traces += load_traces(folder, purpose="train")
    return traces


def regime_for_training(spec: PlannerSpec, folders: list[Path], downlink_folders: list[Path] | None,
                        traces: list[Trace]) -> PlannerSpec:
    """`spec` with the folders it trains on and, unless set, the training uplink traces' mean as the prior."""
    mean = mean_mbit_s(traces)
    regime = spec.regime.override(uplink_traces=tuple(str(f) for f in folders),
                                  downlink_traces=tuple(str(f) for f in downlink_folders or ()))
    if regime.prior_mbit_s is None:
        regime = regime.override(prior_mbit_s=mean)
    spec = spec.with_regime(regime)
    spec.train_mean_mbit_s = mean
    return spec


def mean_mbit_s(traces: list[Trace]) -> float:
    """Time-weighted mean over all traces together."""
    total = sum(t.duration_s for t in traces)
    return float(sum(t.mean_mbit_s() * t.duration_s for t in traces) / total)


def training_env_config(spec: PlannerSpec) -> EnvConfig:
    r = spec.regime
    return EnvConfig.from_regime(r, deadline_range_ms=(0.5 * r.deadline_ms, 2.0 * r.deadline_ms),
                                 rtt_range_ms=(0.5 * r.rtt_ms, 1.5 * r.rtt_ms), load_levels=(1.0, 1.5, 2.5),
                                 load_switch_prob=0.02, acc_weight=spec.acc_weight, miss_penalty=spec.miss_penalty,
                                 random_start=True, state=spec.state)


def make_env(setup: SplitSetup, traces: list[Trace], cfg: EnvConfig, *, seed: int,
             downlink: list[Trace] | None = None) -> SplitEnv:
    return SplitEnv(setup.cost_model(), traces, setup.val_accuracy, downlink=downlink, cfg=cfg,
                    correct=setup.test_correct, seed=seed)


def train_planners(bundle: Path, folders: list[Path], spec: PlannerSpec, *, sac: SacConfig, dqn: DqnConfig | None,
                   progress: bool = True, downlink_folders: list[Path] | None = None,
                   greedy_hint: bool = False, hint_acc_weight: float | None = None,
                   select_floor_points: float | None = None, select_every: int = 5000) -> PlannerSpec:
    """Train and store; returns the stored spec (with its regime and learning curves). `greedy_hint`: the
    planners' state also holds greedy's choice (splitting/hint.py), at accuracy weight `hint_acc_weight`
    (None: the planners' own). `select_floor_points`: store the SAC checkpoint that is fastest on the
    training traces at expected accuracy >= the teacher's less that many points (splitting/select.py),
    not the last one; checkpoints every `select_every` steps."""
    setup = SplitSetup.load(bundle, need_spec=False)
    traces = training_traces(folders)
    downlink = training_traces(downlink_folders) if downlink_folders else None
    spec = regime_for_training(spec, folders, downlink_folders, traces)
    setup = replace(setup.with_regime(spec.regime), spec=spec)  # the regime sets the actions (hedge)
    spec.state = replace(spec.state, hint_actions=len(setup.space) if greedy_hint else 0,
                         hint_acc_weight=hint_acc_weight if greedy_hint else None)
    cfg = training_env_config(spec)
    selector = None
    if select_floor_points is not None:
        selector = FloorSelector(setup, traces, floor_points=select_floor_points)
    agent, sac_history = train_sac(make_env(setup, traces, cfg, seed=sac.seed, downlink=downlink), sac,
                                   progress=progress, checkpoint=selector, checkpoint_every=select_every)
    layers = mlp_layers(agent.actor) if selector is None or selector.best is None else selector.best[1]
    meta = {"algorithm": "sac", "obs_dim": spec.state.dim, "n_actions": len(setup.space)}
    path = save_mlp(Path(bundle) / "split/policy_sac.npz", layers, meta=meta)
    store_artifact(bundle, policy_artifact("sac"), "split/policy_sac.npz", path.read_bytes())
    training = {"sac": {"config": asdict(sac), "target_entropy": agent.target_entropy, "history": sac_history,
                        **({} if selector is None else {"selection": selector.record()})},
                "env": {k: v for k, v in asdict(cfg).items() if k != "state"}}
    if dqn is not None:
        q, dqn_history = train_dqn(make_env(setup, traces, cfg, seed=dqn.seed, downlink=downlink), dqn,
                                   progress=progress)
        path = save_mlp(Path(bundle) / "split/policy_dqn.npz", mlp_layers(q), meta={**meta, "algorithm": "dqn"})
        store_artifact(bundle, policy_artifact("dqn"), "split/policy_dqn.npz", path.read_bytes())
        training["dqn"] = {"config": asdict(dqn), "history": dqn_history}
    elif remove_artifact(bundle, policy_artifact("dqn")):
        # An earlier training's DQN was trained for that training's state and reward, not this one's.
        log.info("removed the earlier DQN policy: it was trained for another spec; train with DQN to have one")
    spec.training = training
    store_artifact(bundle, ARTIFACT_SPEC, SPEC_JSON, (json.dumps(spec.to_json(), indent=2) + "\n").encode())
    return spec


def tune_target_entropy(bundle: Path, folders: list[Path], spec: PlannerSpec, ratios: list[float], *,
                        sac: SacConfig, tune_traces: list[Trace], duration_s: float,
                        progress: bool = True) -> list[dict[str, Any]]:
    """Train SAC once per target-entropy ratio and score each greedy actor on `tune_traces` (training traces).

    Returns one record per ratio: the final temperature and entropy, and the mean reward, latency,
    miss rate and accuracy of the greedy actor at the evaluation deadline. Nothing is stored.
    """
    from splitting.baselines import Learned
    from splitting.evaluate import eval_env, run_trace, summarise
    from splitting.policy import MlpPolicy

    setup = SplitSetup.load(bundle, need_spec=False)
    traces = training_traces(folders)
    spec = regime_for_training(spec, folders, None, traces)
    setup = replace(setup.with_regime(spec.regime), spec=spec)  # the regime sets the actions (hedge)
    cfg = training_env_config(spec)
    labels = [a.label(setup.space.n_stages) for a in setup.space.actions]
    records = []
    for ratio in ratios:
        agent, history = train_sac(make_env(setup, traces, cfg, seed=sac.seed),
                                   replace(sac, target_entropy_ratio=ratio), progress=progress)
        planner = Learned("sac", MlpPolicy(mlp_layers(agent.actor), {}))
        env = eval_env(setup, tune_traces, deadline_ms=spec.deadline_ms)
        runs = []
        for i in range(len(tune_traces)):
            env.reset(seed=i)
            runs.append(run_trace(env, planner, i, duration_s=duration_s))
        summary = summarise(runs, labels)["sac"]
        last = history[-1] if history else {}
        records.append({"target_entropy_ratio": ratio, "target_entropy": agent.target_entropy,
                        "final_alpha": agent.alpha, "final_entropy": last.get("entropy", float("nan")),
                        "alpha_curve": [h.get("alpha") for h in history],
                        "mean_reward": float(np.mean([r for run in runs for r in run.reward])),
                        **{k: summary[k] for k in ("mean_latency_ms", "p95_latency_ms", "deadline_miss_rate",
                                                   "accuracy", "fallback_rate")},
                        "actions": summary["actions"]})
    return records
