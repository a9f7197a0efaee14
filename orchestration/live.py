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

- **links**: with `replay_traces` (the default) each device reaches the edge server and the cloud
  through its **own** pair of delay proxies replaying its uplink trace (testbed/delay_proxy.py
  `--trace`), at the very trace and start offset the simulator gives that user in the same seed
  (`Simulator.requests`), so round r of a live run and seed r of `orchestrate sim` see the same
  links and the same arrival times. Without it, one shared proxy per server at the RTTs alone and
  the loopback's rate (the earlier live runs).

  Each device's radio reads the same trace from the same start (`edge serve --radio-trace`,
  orchestration.links.Radio), so its learner's uplink-rate and stall features are the simulator's.

What it does not emulate: the `change` scenario's bandwidth drop (its users joining are live); the
edge and cloud connections of one device each cross their own replayed link instead of sharing one
radio (they seldom overlap: one request at a time mostly).
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
from orchestration.scenario import SCENARIOS, Scenario
from orchestration.spec import LiveSpec
from shared.names import AnswerSource, FallbackReason, Tier
from shared.oip import decode_response, encode_request
from testbed.services import Service, free_port, start_service, stop_service, wait_ready

log = logging.getLogger(__name__)



REPLAY_LEAD_S = 10.0
"""Seconds kept, after the devices are expected ready, to start every device's two proxies (each a Python
process) before the replayed traces' common start."""
DEVICE_START_S = 15.0
DEVICE_START_PER_USER_S = 3.0
"""The first launch's guess of how long the devices take to be ready; later launches use 1.5x the last."""


class LiveError(RuntimeError):
    """The live run cannot start or a service died; the message names it and its log."""


def _pin(service: Service, cores: set[int]) -> None:
    with contextlib.suppress(OSError):
        os.sched_setaffinity(service.process.pid, cores)


def _spawn_proxy(name: str, *, target_port: int, delay_ms: float, log_dir: Path, port: int | None = None,
                 trace: Path | None = None, trace_start_unix: float | None = None
                 ) -> tuple[subprocess.Popen[bytes], int, Path]:
    """Start a delay proxy (replaying `trace` from `trace_start_unix` if given); (process, port, log)."""
    port = port if port is not None else free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    replay = [] if trace is None else ["--trace", str(trace), "--trace-start-unix", f"{trace_start_unix:.6f}"]
    with log_path.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "testbed.delay_proxy", "--listen", f"127.0.0.1:{port}",
             "--target", f"127.0.0.1:{target_port}", "--delay-ms", f"{delay_ms}", *replay],
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    return process, port, log_path


def _wait_listening(name: str, process: subprocess.Popen[bytes], port: int, log_path: Path,
                    timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LiveError(f"{name} exited: {log_path.read_text()[-500:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise LiveError(f"{name} did not listen on {port} within {timeout_s:g} s")


def _proxy(name: str, *, target_port: int, delay_ms: float, log_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    process, port, log_path = _spawn_proxy(name, target_port=target_port, delay_ms=delay_ms, log_dir=log_dir)
    _wait_listening(name, process, port, log_path)
    return process, port



@contextlib.contextmanager
def servers(spec: LiveSpec, profiles: Profiles, log_dir: Path) -> Iterator[dict[str, Any]]:
    """Cloud and edge server (each pinned; each behind one shared delay proxy unless the devices have their own
    replaying ones, `spec.replay_traces`); stopped on exit."""
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
        if spec.replay_traces:
            yield {"cloud": cloud, "edge": edge}  # each device gets its own proxies (replayed_links)
            return
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


def calibrate_device(bundle: Path, profiles: Profiles, *, gap_s: float, passes: int = 20) -> dict[str, Any]:
    """k of the emulated Pi 4 on this host, now: the reference variant (orchestration.hardware, the one the
    simulator calibrates on) timed here as a device runs it, one pass at a time `gap_s` apart, against
    the published Pi 4 time.

    Why not the profile's k: the emulation holds k times each pass's CPU time measured live, so its
    device is the published one only if k is calibrated on the CPU times the live passes have. Those
    are not the profile's: this host's speed drifts between sessions (docs/results.md measured
    profiles moving by 20%), and a pass after an idle gap takes more CPU time than the back-to-back
    passes a profile times (cold caches: 1.4-1.9x for the int8 student here). Calibrated this way, the
    reference takes the published 17.4 ms live, as it does in the simulator.
    """
    from orchestration.hardware import TierHardware, reference_variant
    from shared.bundle import load_manifest
    from shared.onnx_session import open_session
    from shared.preprocess import ImagePreprocessor
    from testbed.slowdown import PI4_CIFAR10, calibrate

    manifest = load_manifest(bundle, verify=False)
    name = reference_variant(profiles, TierHardware())
    session = open_session(Path(bundle) / manifest.models[name].file, threads=1)
    x = ImagePreprocessor.from_spec(manifest.input).normalize(np.zeros((1, *manifest.input.shape), np.uint8))
    for _ in range(5):
        session.run(["logits"], {"input": x})
    cpu_ms = []
    for _ in range(passes):
        time.sleep(gap_s)
        started = time.thread_time()
        session.run(["logits"], {"input": x})
        cpu_ms.append((time.thread_time() - started) * 1000.0)
    host_ms = float(np.median(cpu_ms))
    k = calibrate(host_ms, PI4_CIFAR10)
    return {"calibrated": True, "reference": name, "reference_host_ms": host_ms,
            "reference_profile_host_ms": profiles.host_ms(name), "gap_s": gap_s, "slowdown": k,
            "cpu_share": 1.0 / k, "emulates": PI4_CIFAR10.device}


@dataclasses.dataclass(frozen=True)
class UserLinks:
    """Where one device reaches the servers: its own proxies' ports, its trace file and start offset."""

    edge_port: int
    cloud_port: int
    trace: Path
    offset_s: float

    @property
    def urls(self) -> dict[str, str]:
        return {"edge_url": f"http://127.0.0.1:{self.edge_port}", "cloud_url": f"http://127.0.0.1:{self.cloud_port}"}


def user_links(spec: LiveSpec, scenario: Scenario, profiles: Profiles, *, seed: int
               ) -> tuple[list[UserLinks], list[np.ndarray]]:
    """Each device's trace and start offset, and every device's arrival times, exactly as the simulator
    draws them for `seed` (Simulator.requests), with a free port for each of its two proxies."""
    from orchestration.simulator import Simulator
    from shared.traces import load_traces

    traces = load_traces(spec.traces)
    sim = Simulator(profiles, dataclasses.replace(scenario, seed=seed), traces, network=spec.network)
    links, requests = sim.requests()
    times = [np.array([t for t, u, _ in requests if u == user]) for user in range(spec.users)]
    return [UserLinks(edge_port=free_port(), cloud_port=free_port(), trace=spec.traces / link.trace.name,
                      offset_s=link.offset_s) for link in links], times


@contextlib.contextmanager
def replayed_links(spec: LiveSpec, urls: dict[str, Any], links: Sequence[UserLinks], start_unix: float,
                   log_dir: Path) -> Iterator[None]:
    """Per device, a proxy to the edge server and one to the cloud, each replaying the device's trace
    so that its trace time `offset_s` falls at `start_unix`; stopped on exit."""
    net = spec.network
    edge_port = int(urls["edge"].url.rsplit(":", 1)[1])
    cloud_port = int(urls["cloud"].url.rsplit(":", 1)[1])
    processes: list[subprocess.Popen[bytes]] = []
    try:
        started = []
        for user, link in enumerate(links):
            # The WAN's own rate (100 Mbit/s by default) is not shaped: at these sizes it adds < 0.1 ms.
            for name, target, port, delay_ms in (("edge", edge_port, link.edge_port, net.access_rtt_ms / 2),
                                                 ("cloud", cloud_port, link.cloud_port,
                                                  (net.access_rtt_ms + net.wan_rtt_ms) / 2)):
                name = f"{name}-proxy-{user}"
                process, port, log_path = _spawn_proxy(name, target_port=target, delay_ms=delay_ms, log_dir=log_dir,
                                                       port=port, trace=link.trace,
                                                       trace_start_unix=start_unix - link.offset_s)
                processes.append(process)
                started.append((name, process, port, log_path))
        for name, process, port, log_path in started:  # all start at once; then each must listen
            _wait_listening(name, process, port, log_path)
        yield  # (run_live records and logs it if they came up after `start_unix`)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            with contextlib.suppress(Exception):
                process.wait(timeout=5)


@contextlib.contextmanager
def devices(spec: LiveSpec, policy: str, urls: dict[str, Any], share: float, log_dir: Path, *,
            seed: int, links: Sequence[UserLinks] | None = None, start_unix: float | None = None
            ) -> Iterator[list[Service]]:
    """N edge agents hosting `orchestrator`, each computing `1 / share` times slower; where `links` gives
    them, each through its own proxies and with its radio reading its own trace from `start_unix`
    (as the simulator's `UserLink` reports it); stopped on exit."""
    agents: list[Service] = []
    try:
        for user in range(spec.users):
            mine = links[user].urls if links is not None else urls
            radio = [] if links is None or start_unix is None else [
                "--radio-trace", str(links[user].trace),
                "--radio-trace-start-unix", f"{start_unix - links[user].offset_s:.6f}"]
            args = ["edge", "serve", "--bundle", str(spec.bundle), "--edge-server-url", mine["edge_url"],
                    "--cloud-url", mine["cloud_url"], "--policy", policy, "--accuracy-req", str(spec.accuracy_req),
                    "--threads", "1", "--orchestrator-seed", str(seed * 1000 + user),
                    "--orchestrator-timeout-ms", "1000", "--device-slowdown", f"{1.0 / share:g}", *radio]
            agent = start_service(f"device-{user}", args, port=free_port(), log_dir=log_dir / policy.replace(":", "_"))
            agents.append(agent)
        for agent in agents:
            wait_ready(agent, timeout_s=300)
        yield agents
    finally:
        for agent in agents:
            stop_service(agent)


async def drive(spec: LiveSpec, scenario: Scenario, agents: Sequence[Service], x: np.ndarray, y: np.ndarray,
                *, times: Sequence[np.ndarray], seed: int, kill: Any = None, client_ms: list[float] | None = None,
                retries: list[int] | None = None, start_unix: float | None = None) -> tuple[list[Answered], int]:
    """Every user's requests at their arrival times (`times`, per user: the simulator's, `user_links`), from
    `start_unix` (default: now), each with a test sample drawn from `seed`; (answered, sent).
    `client_ms` collects the load generator's own round trips (the device's time plus the loopback hop
    to it)."""
    client_ms = client_ms if client_ms is not None else []
    retries = retries if retries is not None else []
    rng = np.random.default_rng(seed)
    answered: list[Answered] = []
    sent = 0
    if start_unix is not None:
        # Trace time 0 of every replayed link is this instant (their proxies were told so).
        await asyncio.sleep(max(0.0, start_unix - time.time()))
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
    device: dict[str, Any] = {"cpu_share": spec.end_cpu_share, "calibrated": False}
    if spec.end_cpu_share is None and spec.calibrate_device:
        # Spaced as the devices' own requests are (at most 0.25 s: by then the caches are as cold as they get).
        device = calibrate_device(spec.bundle, profiles, gap_s=min(0.25, 1.0 / spec.rate_per_user))
        profiles = profiles.with_tier_share(Tier.END, device["cpu_share"])
    elif spec.end_cpu_share is not None:
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
    late: dict[str, list[float]] = {p: [] for p in spec.policies}
    # Seconds from deciding a run's trace start to its devices being ready: the devices' radios are told
    # the start when they are launched, so it is decided before; learnt from each launch.
    startup_s = DEVICE_START_S + DEVICE_START_PER_USER_S * spec.users
    for round_ in range(spec.rounds):
        # Round r has the arrivals of the simulator's seed r (and, replaying, its links), the same for every policy.
        replayed, times = user_links(spec, scenario, profiles, seed=round_)
        links = replayed if spec.replay_traces else None
        for policy in spec.policies:
            where = log_dir / f"round{round_}" / policy.replace(":", "_")
            with servers(spec, profiles, where) as urls:
                launched = time.time()
                start_unix = launched + startup_s + REPLAY_LEAD_S
                with devices(spec, policy, urls, share, log_dir / f"round{round_}", seed=round_, links=links,
                             start_unix=start_unix) as agents:
                    startup_s = 1.5 * (time.time() - launched)
                    kill = None
                    if spec.kill_edge_at_s is not None:
                        async def kill(start: float, edge: Service = urls["edge"]) -> None:
                            await asyncio.sleep(max(0.0, spec.kill_edge_at_s - (time.perf_counter() - start)))
                            edge.process.kill()
                    with (replayed_links(spec, urls, links, start_unix, where) if links is not None
                          else contextlib.nullcontext()):
                        if links is not None and time.time() > start_unix:
                            late[policy].append(time.time() - start_unix)
                            log.warning("%s: the devices and links were ready %.1f s after the trace start: the "
                                        "replay runs that much ahead of the simulator's", policy, late[policy][-1])
                        answered, n = asyncio.run(drive(spec, scenario, agents, x, y, seed=round_, kill=kill,
                                                        client_ms=client[policy], retries=retried[policy],
                                                        times=times,
                                                        start_unix=start_unix if links is not None else None))
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
        policies[name]["replay_late_s"] = late[name]
    report: dict[str, Any] = {
        "mode": "live", "bundle": str(spec.bundle), "users": spec.users, "traces": str(spec.traces),
        "traces_replayed": spec.replay_traces, "accuracy_req": spec.accuracy_req, "scenario": spec.scenario,
        "duration_s": spec.duration_s, "rate_per_user": spec.rate_per_user, "arrivals": spec.arrivals,
        "rounds": spec.rounds, "device_cpu_share": share, "device_slowdown": 1.0 / share, "device": device,
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

