"""The live multi-user run: real processes for every tier, a load generator per user, report.json.

    .venv/bin/edgecloud orchestrate live --bundle B --users 4 --traces DIR --accuracy-req A --out D

Per policy (one round each, repeated `rounds` times, interleaved):

- **cloud**: `edgecloud cloud serve --models <every variant>` pinned to the last core, behind a
  delay proxy holding each direction (access RTT + WAN RTT) / 2 (testbed).
- **edge server**: the same server pinned to the first core, behind a proxy holding access RTT / 2.
- **N end devices**: `edgecloud edge serve --edge-server-url ... --cloud-url ... --policy P`, each
  an edge agent hosting model `orchestrator`, computing its own variants `1 / share` times slower
  than the host (`--device-slowdown`: the compute thread is held that long), as the profile assumed.
  A cgroup CPU quota would not do: it caps throughput, and a sub-millisecond pass runs at full speed
  inside one quota period.
- **users**: one asyncio task per device sending test samples at Poisson (or bursty) times to its
  own device; users join and leave by the scenario's phases, exactly as in the simulator.

What it cannot do yet: replay the bandwidth traces (the shaped rate over time) or drop the rate,
since that needs the testbed's trace replay, which has not landed; the links here have the
network's RTTs and the loopback's rate. `--traces` is recorded in the report for that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from orchestration.policies import LEARNERS
from orchestration.profiles import Profiles, profiles_from_manifest
from orchestration.report import Answered, comparisons, plot_cdf, plot_choices, summarize, write_report
from orchestration.scenario import SCENARIOS, Scenario, arrival_times
from orchestration.spec import LiveSpec
from shared.names import AnswerSource, FallbackReason, Tier
from shared.oip import decode_response, encode_request
from testbed.services import Service, free_port, start_service, stop_service, wait_ready

log = logging.getLogger(__name__)



class LiveError(RuntimeError):
    """The live run cannot start or a service died; the message names it and its log."""


def _pin(service: Service, cores: set[int]) -> None:
    with contextlib.suppress(OSError):
        os.sched_setaffinity(service.process.pid, cores)


def _proxy(name: str, *, target_port: int, delay_ms: float, log_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "testbed.delay_proxy", "--listen", f"127.0.0.1:{port}",
             "--target", f"127.0.0.1:{target_port}", "--delay-ms", f"{delay_ms}"],
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LiveError(f"{name} exited: {log_path.read_text()[-500:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return process, port
        time.sleep(0.1)
    raise LiveError(f"{name} did not listen on {port} within 30 s")



@contextlib.contextmanager
def servers(spec: LiveSpec, profiles: Profiles, log_dir: Path) -> Iterator[dict[str, Any]]:
    """Cloud and edge server (each pinned, each behind its delay proxy); stopped on exit."""
    cores = sorted(os.sched_getaffinity(0))
    models = ",".join(profiles.names)
    common = ["--bundle", str(spec.bundle), "--models", models, "--threads", "1", "--max-queue-delay-ms", "0",
              "--max-batch-size", "8"]
    started: list[Service] = []
    proxies: list[Any] = []
    try:
        cloud = start_service("cloud", ["cloud", "serve", *common], port=free_port(), log_dir=log_dir)
        started.append(cloud)
        edge = start_service("edge-server", ["cloud", "serve", *common], port=free_port(), log_dir=log_dir)
        started.append(edge)
        for service in started:
            wait_ready(service)
        _pin(edge, {cores[0]})
        _pin(cloud, {cores[-1]})
        net = spec.network
        cloud_proxy, cloud_port = _proxy("cloud-proxy", target_port=int(cloud.url.rsplit(":", 1)[1]),
                                         delay_ms=(net.access_rtt_ms + net.wan_rtt_ms) / 2, log_dir=log_dir)
        proxies.append(cloud_proxy)
        edge_proxy, edge_port = _proxy("edge-proxy", target_port=int(edge.url.rsplit(":", 1)[1]),
                                       delay_ms=net.access_rtt_ms / 2, log_dir=log_dir)
        proxies.append(edge_proxy)
        yield {"cloud": cloud, "edge": edge, "cloud_url": f"http://127.0.0.1:{cloud_port}",
               "edge_url": f"http://127.0.0.1:{edge_port}"}
    finally:
        for process in proxies:
            process.terminate()
            with contextlib.suppress(Exception):
                process.wait(timeout=5)
        for service in reversed(started):
            stop_service(service)


@contextlib.contextmanager
def devices(spec: LiveSpec, policy: str, urls: dict[str, Any], share: float, log_dir: Path, *,
            seed: int) -> Iterator[list[Service]]:
    """N edge agents hosting `orchestrator`, each computing `1 / share` times slower; stopped on exit."""
    agents: list[Service] = []
    try:
        for user in range(spec.users):
            args = ["edge", "serve", "--bundle", str(spec.bundle), "--edge-server-url", urls["edge_url"],
                    "--cloud-url", urls["cloud_url"], "--policy", policy, "--accuracy-req", str(spec.accuracy_req),
                    "--threads", "1", "--orchestrator-seed", str(seed * 1000 + user),
                    "--orchestrator-timeout-ms", "1000", "--device-slowdown", f"{1.0 / share:g}"]
            agent = start_service(f"device-{user}", args, port=free_port(), log_dir=log_dir / policy.replace(":", "_"))
            agents.append(agent)
        for agent in agents:
            wait_ready(agent, timeout_s=300)
        yield agents
    finally:
        for agent in agents:
            stop_service(agent)


async def drive(spec: LiveSpec, scenario: Scenario, agents: Sequence[Service], x: np.ndarray, y: np.ndarray,
                *, seed: int, kill: Any = None, client_ms: list[float] | None = None,
                retries: list[int] | None = None) -> tuple[list[Answered], int]:
    """Every user's requests at their arrival times; (answered, sent). `client_ms` collects the
    load generator's own round trips (the device's time plus the loopback hop to it)."""
    client_ms = client_ms if client_ms is not None else []
    retries = retries if retries is not None else []
    rng = np.random.default_rng(seed)
    times = arrival_times(scenario, rng)
    answered: list[Answered] = []
    sent = 0
    start = time.perf_counter()
    limits = httpx.Limits(max_connections=64)

    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits) as client:
        async def one(user: int, at: float) -> None:
            nonlocal sent
            delay = at - (time.perf_counter() - start)
            if delay > 0:
                await asyncio.sleep(delay)
            if user >= scenario.phase_at(at).users:
                return
            sent += 1
            i = int(rng.integers(len(x)))
            body, headers = encode_request({"input": x[i:i + 1]})
            t0 = time.perf_counter()
            response = None
            for attempt in range(2):
                try:
                    response = await client.post(f"{agents[user].url}/v2/models/orchestrator/infer", content=body,
                                                 headers=headers)
                    break
                except (httpx.RemoteProtocolError, httpx.ReadError) as err:
                    # The device closed an idle keep-alive connection just as we reused it (uvicorn's
                    # keep-alive timeout): a race of this load generator's, not of the system under
                    # test. One retry on a fresh connection, counted in the report.
                    log.warning("user %d: %s %s on try %d", user, type(err).__name__, err, attempt + 1)
                    retries.append(user)
                except httpx.HTTPError as err:
                    log.warning("user %d: request failed: %s %s", user, type(err).__name__, err)
                    return
            if response is None:
                return
            ms = (time.perf_counter() - t0) * 1000.0
            if response.status_code != 200:
                log.warning("user %d: %d %s", user, response.status_code, response.text[:200])
                return
            _, out = decode_response(response.content, response.headers)

            def text(name: str) -> str:
                value = out[name].reshape(-1)[0]
                return value.decode() if isinstance(value, bytes) else str(value)

            source = text("source")
            won = text("fallback_reason") == FallbackReason.LOCAL_FIRST.value  # a hedge the device won
            # The device's own measure (decision to answer), as the simulator's: the loopback hop from
            # this load generator to the emulated device is not part of the system under test.
            device_ms = float(out["response_ms"].reshape(-1)[0])
            client_ms.append(ms)
            answered.append(Answered(arrival_s=at, response_ms=device_ms, tier=Tier(text("tier")),
                                     variant=text("variant"),
                                     correct=bool(out["label"].reshape(-1)[0] == y[i]), reward=-device_ms / 100.0,
                                     user=user, fallback=source == AnswerSource.FALLBACK.value and not won,
                                     local_first=won))

        tasks = [asyncio.create_task(one(u, float(t))) for u, ts in enumerate(times) for t in ts]
        if kill is not None:
            tasks.append(asyncio.create_task(kill(start)))
        await asyncio.gather(*tasks)
    return answered, sent


def run_live(spec: LiveSpec, *, progress: Any = None) -> dict[str, Any]:
    """Every policy, `rounds` times, interleaved; report.json and plots under `spec.out`."""
    from shared.bundle import load_manifest
    from shared.datasets import load_dataset, request_inputs

    profiles = profiles_from_manifest(spec.bundle)
    if spec.end_cpu_share is not None:
        profiles = profiles.with_tier_share(Tier.END, spec.end_cpu_share)
    manifest = load_manifest(spec.bundle, verify=False)
    data = load_dataset(manifest.dataset, data_dir=spec.data_dir)
    # Devices send their images as files where the dataset has them (CIFAR-10's JPEGs), as the
    # simulator's request size (`input_bytes`) assumes; an offload forwards the file.
    x, y = request_inputs(data), data.test.y
    log_dir = spec.out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    share = profiles.tiers[Tier.END].cpu_share
    runs: dict[str, list[Answered]] = {p: [] for p in spec.policies}
    sent: dict[str, int] = dict.fromkeys(spec.policies, 0)
    first_round: dict[str, list[Answered]] = {}
    client: dict[str, list[float]] = {p: [] for p in spec.policies}
    retried: dict[str, list[int]] = {p: [] for p in spec.policies}
    scenario = SCENARIOS[spec.scenario](spec.users, duration_s=spec.duration_s, rate_per_user=spec.rate_per_user,
                                        arrivals=spec.arrivals, accuracy_req=spec.accuracy_req)
    for round_ in range(spec.rounds):
        for policy in spec.policies:
            with servers(spec, profiles, log_dir / f"round{round_}" / policy.replace(":", "_")) as urls, \
                    devices(spec, policy, urls, share, log_dir / f"round{round_}", seed=round_) as agents:
                kill = None
                if spec.kill_edge_at_s is not None:
                    async def kill(start: float, edge: Service = urls["edge"]) -> None:
                        await asyncio.sleep(max(0.0, spec.kill_edge_at_s - (time.perf_counter() - start)))
                        edge.process.kill()
                answered, n = asyncio.run(drive(spec, scenario, agents, x, y, seed=round_, kill=kill,
                                                client_ms=client[policy], retries=retried[policy]))
            # Every live device has the one configured requirement; a variant below it missed it.
            answered = [dataclasses.replace(a, accuracy_req=spec.accuracy_req,
                                            missed=profiles.variants[a.variant].accuracy < spec.accuracy_req)
                        for a in answered]
            if round_ == 0:
                first_round[policy] = sorted(answered, key=lambda a: a.arrival_s)
            runs[policy].extend(answered)
            sent[policy] += n
            if progress is not None:
                progress(f"round {round_} {policy}: {len(answered)}/{n} answered")
    policies = {}
    for name in spec.policies:
        policies[name] = summarize(runs[name], sent=sent[name], change_times=scenario.change_times)
        first = summarize(first_round[name], change_times=scenario.change_times)
        policies[name].update({k: first[k] for k in ("converged_after_requests", "reconverged")})
        if client[name]:
            policies[name]["client_mean_response_ms"] = float(np.mean(client[name]))
        policies[name]["load_generator_retries"] = len(retried[name])
    report: dict[str, Any] = {
        "mode": "live", "bundle": str(spec.bundle), "users": spec.users, "traces": str(spec.traces),
        "traces_replayed": False, "accuracy_req": spec.accuracy_req, "scenario": spec.scenario,
        "duration_s": spec.duration_s, "rate_per_user": spec.rate_per_user, "arrivals": spec.arrivals,
        "rounds": spec.rounds, "device_cpu_share": share, "device_slowdown": 1.0 / share,
        "kill_edge_at_s": spec.kill_edge_at_s, "change_times_s": scenario.change_times,
        "network": spec.network.model_dump(), "cores": sorted(os.sched_getaffinity(0)),
        "policies": policies,
        "comparison": comparisons(policies, teacher_accuracy=profiles.variants[profiles.teacher].accuracy),
    }
    write_report(spec.out, report)
    plot_cdf(runs, spec.out / "response_cdf.png", title=f"live: response time, {spec.users} users")
    for name, answered in first_round.items():
        if name in LEARNERS or name == "greedy":
            plot_choices(answered, spec.out / f"choices_{name}.png", title=f"live {name}: tier over time",
                         change_times=scenario.change_times)
    (spec.out / "answers.jsonl").write_text("".join(
        json.dumps({"policy": p, **{k: (v.value if isinstance(v, Tier) else v) for k, v in asdict(a).items()}}) + "\n"
        for p, answered in runs.items() for a in answered))
    return report

