"""Run planners through the trace-driven environment, trace by trace, and summarise (numpy only).

Every strategy sees the same requests: each trace from t = 0 for `duration_s` (or all of it), one
request every `period_s`, at the evaluation deadline, RTT and load; request n carries test sample
n (cycling), so accuracy is measured, not assumed, and a server-only JPEG upload is that sample's
own file. The answers come down on `downlink` (default: the same trace files). The two server-only
strategies upload the JPEG file and the raw pixels whatever the regime says; every other strategy's
server-only action uploads the regime's payload. `summarise` gives, per strategy and per trace, what
`edgecloud split eval` writes to report.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.traces import Trace
from splitting.baselines import Planner
from splitting.env import EnvConfig, SplitEnv
from splitting.regime import ServerPayload
from splitting.setup import SplitSetup


@dataclass
class Run:
    """One strategy over one trace: one entry per request."""

    strategy: str
    trace: str
    t_s: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    miss: list[bool] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    payload_bytes: list[int] = field(default_factory=list)
    wire_bytes: list[int] = field(default_factory=list)
    action: list[int] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)  # the action that answered (a fallback's device exit)
    mbit_s: list[float] = field(default_factory=list)
    fallback: list[bool] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)


def run_trace(env: SplitEnv, planner: Planner, trace_index: int, *, duration_s: float | None = None) -> Run:
    """Replay trace `trace_index` from its start with `planner` choosing every action."""
    trace = env.traces[trace_index]
    span = trace.duration_s if duration_s is None else min(duration_s, trace.duration_s)
    steps = max(1, math.floor(span / env.cfg.period_s))
    obs, info = env.reset(options={"trace": trace_index, "start_s": 0.0})
    env.sample_index = 0
    run = Run(strategy=planner.name, trace=trace.name)
    for _ in range(steps):
        action = planner.choose(obs, info["action_mask"], env)
        t = env.t
        obs, reward, _, _, info = env.step(action)
        run.reward.append(float(reward))
        run.t_s.append(t)
        run.latency_ms.append(info["latency_ms"])
        run.miss.append(bool(info["miss"]))
        run.correct.append(bool(info.get("correct", False)))
        run.payload_bytes.append(int(info["payload_bytes"]))
        run.wire_bytes.append(int(info["wire_bytes"]))
        run.action.append(int(action))
        run.answered.append(int(info["answered"]))
        run.mbit_s.append(float(info["mbit_s"]))
        run.fallback.append(bool(info["fallback"]))
    return run


def metrics(latency_ms: list[float], miss: list[bool], correct: list[bool], payload: list[int],
            wire: list[int], fallback: list[bool]) -> dict[str, float]:
    lat = np.asarray(latency_ms, dtype=np.float64)
    return {"mean_latency_ms": float(lat.mean()), "p95_latency_ms": float(np.percentile(lat, 95)),
            "deadline_miss_rate": float(np.mean(miss)), "accuracy": float(np.mean(correct)),
            "bytes_per_request": float(np.mean(payload)), "wire_bytes_per_request": float(np.mean(wire)),
            "fallback_rate": float(np.mean(fallback)), "requests": len(lat)}


def summarise(runs: list[Run], labels: list[str]) -> dict[str, Any]:
    """{strategy: {metrics over all its requests, "per_trace": {trace: metrics}, "actions": {label: share}}}."""
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r.strategy for r in runs):
        mine = [r for r in runs if r.strategy == name]

        def cat(attr: str, runs: list[Run] = mine) -> list[Any]:
            return [v for r in runs for v in getattr(r, attr)]

        summary = metrics(cat("latency_ms"), cat("miss"), cat("correct"), cat("payload_bytes"), cat("wire_bytes"),
                          cat("fallback"))
        actions = np.bincount(cat("action"), minlength=len(labels)) / max(1, len(cat("action")))
        summary["actions"] = {labels[i]: float(v) for i, v in enumerate(actions) if v > 0}
        summary["per_trace"] = {r.trace: metrics(r.latency_ms, r.miss, r.correct, r.payload_bytes, r.wire_bytes,
                                              r.fallback)
                                for r in mine}
        out[name] = summary
    return out


def eval_env(setup: SplitSetup, traces: list[Trace], *, deadline_ms: float | None = None,
             downlink: list[Trace] | None = None, server_payload: ServerPayload | None = None) -> SplitEnv:
    """The environment at the evaluation conditions: fixed deadline (default: the regime's), the regime's
    period and RTT, load 1, no randomness but the throughput estimator's noise (seeded)."""
    spec = setup.spec
    cfg = EnvConfig.from_regime(spec.regime.override(deadline_ms=deadline_ms), acc_weight=spec.acc_weight,
                                miss_penalty=spec.miss_penalty, random_start=False, state=spec.state)
    return SplitEnv(setup.cost_model(server_payload=server_payload), traces, setup.val_accuracy, downlink=downlink,
                    cfg=cfg, correct=setup.test_correct, seed=0)


def evaluate_strategies(setup: SplitSetup, traces: list[Trace], names: list[str], *, deadline_ms: float | None = None,
                        duration_s: float | None = None, downlink: list[Trace] | None = None) -> list[Run]:
    """Every strategy in `names` over every trace, each from the trace's start."""
    envs: dict[ServerPayload, SplitEnv] = {}
    runs = []
    for name in names:
        payload = setup.payload_of(name)
        if payload not in envs:
            envs[payload] = eval_env(setup, traces, deadline_ms=deadline_ms, downlink=downlink, server_payload=payload)
        env = envs[payload]
        planner = setup.planner(name, env.model)
        for i in range(len(traces)):
            env.reset(seed=i)  # the same estimator noise for every strategy on trace i
            runs.append(run_trace(env, planner, i, duration_s=duration_s))
    return runs
