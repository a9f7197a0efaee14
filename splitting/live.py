"""`edgecloud split eval --live`: the strategies through the real services over the link testbed (root).

For each trace and strategy: the link (two namespaces, veth) carries the base RTT with the testbed's
delay emulation, which also replays the trace's rate in each direction (delay_proxy --trace); the
server (teacher and every tail_p) runs in the cloud namespace, the edge agent in the edge namespace
as the emulated device (pinned; every segment held `slowdown` times its CPU time, testbed/slowdown.py,
the k its device profile was measured with; optionally also a cgroup CPU quota, testbed/device.py), and
`splitting.live_client` sends one request every period from trace time 0. The split model is
reloaded for every run (a repository load of `split`) so that no strategy inherits another's
measurements. The environment's prediction for the same trace, strategy, deadline and period is put
beside every live number.

With `kill_at_s`, the server is killed (SIGKILL) that far into each run: every request must still be
answered (by the device, labelled edge-fallback).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from shared.traces import Trace
from splitting.evaluate import evaluate_strategies, summarise
from splitting.setup import SplitSetup
from testbed.bed import testbed
from testbed.device import DeviceEmulation
from testbed.netns import TestbedError, python_argv
from testbed.profiles import LinkProfile
from testbed.services import stop_service

EDGE_PORT, CLOUD_PORT = 8000, 8001
CEILING_MBIT = 100.0
"""tbf rate of the veth: a ceiling well above every trace; the proxy makes the trace's rate."""


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarise_live(records: list[dict[str, Any]], deadline_ms: float) -> dict[str, Any]:
    answered = [r for r in records if "error" not in r]
    lat = np.asarray([r["latency_ms"] for r in answered] or [np.nan])
    return {"mean_latency_ms": float(lat.mean()), "p95_latency_ms": float(np.percentile(lat, 95)),
            "deadline_miss_rate": float(np.mean(lat > deadline_ms)),
            "accuracy": float(np.mean([r["correct"] for r in answered])) if answered else float("nan"),
            "bytes_per_request": float(np.mean([r["payload_bytes"] for r in answered])) if answered else 0.0,
            "fallback_rate": float(np.mean([r["source"] == "edge-fallback" for r in answered])) if answered else 0.0,
            "requests": len(records), "answered": len(answered), "lost": len(records) - len(answered)}


def live_eval(setup: SplitSetup, traces: list[Trace], names: list[str], *, trace_dir: Path, deadline_ms: float,
              duration_s: float, out: Path, device: DeviceEmulation, cloud_cpus: frozenset[int] | None,
              data_dir: Path | None, kill_at_s: float | None = None, tag: str | None = None,
              slowdown: float = 1.0, calibration: dict[str, Any] | None = None) -> dict[str, Any]:
    """`calibration`: how `slowdown` was derived (splitting.profile.live_slowdown), kept in the report."""
    out = Path(out).resolve()
    bundle = setup.bundle.resolve()
    spec = setup.spec
    profile = LinkProfile("trace", rate_mbit=CEILING_MBIT, rtt_ms=spec.link.rtt_ms)
    predicted = summarise(evaluate_strategies(setup, traces, names, deadline_ms=deadline_ms, duration_s=duration_s),
                          [a.label(setup.space.n_stages) for a in setup.space.actions])
    tails = ",".join([setup.manifest.teacher, *[f"tail_{p}" for p in range(1, setup.plan.n_stages)]])
    results: dict[str, Any] = {}
    cpus: dict[str, frozenset[int]] = {"edge": frozenset(device.cpus)}  # pinned from birth, every thread
    if cloud_cpus:
        cpus["cloud"] = cloud_cpus
    quota = device.cpu_fraction is not None
    with (device.cgroup() if quota else contextlib.nullcontext()) as group, \
            testbed(profile, log_dir=out / "logs", tag=tag, delay="shim", cpus=cpus) as bed:
        cloud_args = ["cloud", "serve", "--bundle", str(bundle), "--models", tails]
        cloud = bed.start_edgecloud("cloud", "cloud", cloud_args, host="127.0.0.1", port=CLOUD_PORT + 10_000)
        cloud_url = f"http://{bed.link.cloud_ip}:{CLOUD_PORT}"
        edge = bed.start_edgecloud("edge", "edge", ["edge", "serve", "--bundle", str(bundle), "--cloud-url",
                                                    cloud_url, "--retries", "0", "--device-slowdown", f"{slowdown:g}"],
                                   host="127.0.0.1", port=EDGE_PORT)
        if group is not None:
            group.enter(edge.process.pid)  # the edge is the emulated device: its cores, and now its quota
        for trace in traces:
            for name in names:
                if cloud.process.poll() is not None:  # killed in the previous run: bring it back
                    bed.services.remove(cloud)
                    cloud = bed.start_edgecloud("cloud", "cloud", cloud_args, host="127.0.0.1",
                                                port=CLOUD_PORT + 10_000)
                run_dir = out / "runs" / trace.name / name
                run_dir.mkdir(parents=True, exist_ok=True)
                start = time.time() + 30.0  # room to reload the split model (and start the server) under load
                proxy = bed.spawn("cloud", f"proxy-{trace.name}-{name}", python_argv(
                    "testbed.delay_proxy", "--listen", f"{bed.link.cloud_ip}:{CLOUD_PORT}",
                    "--target", f"127.0.0.1:{CLOUD_PORT + 10_000}", "--delay-ms", str(profile.one_way_delay_ms),
                    "--trace", str(trace_dir / trace.name), "--trace-start-unix", f"{start:.3f}"))
                args = ["--edge-url", f"http://127.0.0.1:{EDGE_PORT}", "--cloud-url", cloud_url, "--reload",
                        "--deadline-ms", str(deadline_ms), "--period-s", str(spec.period_s),
                        "--duration-s", str(duration_s), "--start-unix", f"{start:.3f}", "--bundle", str(bundle),
                        "--out", str(run_dir / "requests.jsonl")]
                if name == "oracle":
                    plan = _oracle_plan(setup, trace, deadline_ms=deadline_ms, duration_s=duration_s)
                    (run_dir / "oracle_actions.json").write_text(json.dumps(plan))
                    args += ["--actions", str(run_dir / "oracle_actions.json")]
                else:
                    args += ["--strategy", name]
                if data_dir is not None:
                    args += ["--data-dir", str(Path(data_dir).resolve())]
                client = bed.link.spawn("edge", f"client-{trace.name}-{name}",
                                        python_argv("splitting.live_client", *args), log_dir=out / "logs")
                if kill_at_s is not None:
                    time.sleep(max(0.0, start + kill_at_s - time.time()))
                    os.killpg(cloud.process.pid, signal.SIGKILL)
                code = client.wait()
                stop_service(proxy)
                bed.services.remove(proxy)
                if code != 0:
                    raise TestbedError(f"live client for {trace.name}/{name} exited {code}; logs in {out / 'logs'}")
                live = summarise_live(_records(run_dir / "requests.jsonl"), deadline_ms)
                env = predicted[name]["per_trace"][trace.name]
                results.setdefault(name, {})[trace.name] = {
                    "live": live, "environment": env,
                    "live_over_environment_mean_latency": live["mean_latency_ms"] / env["mean_latency_ms"]}
        delay_label = bed.delay_label
    report = {"bundle": str(bundle), "deadline_ms": deadline_ms, "duration_s": duration_s,
              "period_s": spec.period_s, "link": {"rtt_ms": spec.link.rtt_ms, "delay": delay_label,
                                                  "rate": "trace replay in the delay proxy, each direction",
                                                  "ceiling_mbit": CEILING_MBIT},
              "device": (device.describe() if quota else f"cores {sorted(device.cpus)}")
              + (f", every segment held {slowdown:g}x its CPU time" if slowdown > 1.0 else ""),
              "device_slowdown": slowdown, "device_calibration": calibration,
              "cloud_cpus": sorted(cloud_cpus or []), "kill_at_s": kill_at_s,
              "strategies": results}
    (out / "report_live.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _oracle_plan(setup: SplitSetup, trace: Trace, *, deadline_ms: float, duration_s: float) -> list[str]:
    """The hindsight oracle's actions on this trace in the environment, to replay live."""
    runs = evaluate_strategies(setup, [trace], ["oracle"], deadline_ms=deadline_ms, duration_s=duration_s)
    return [setup.space.actions[a].label(setup.space.n_stages) for a in runs[0].action]
