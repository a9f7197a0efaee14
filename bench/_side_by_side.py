"""Our cloud server and a real Triton server on the same core(s), driven by the same closed-loop load.

The logic behind bench/triton_compare.py (see its --help for what is measured and why). Every phase
runs in this order, each round: raw onnxruntime (in this process, on the server cores), then our
server, then Triton, so slow drifts of a shared machine hit all three alike. Both servers stay up for
the whole run, idle while the other is measured; what the idle one costs is measured too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _closed_loop import LoadResult, closed_loop
from _proctree import Placement, placement, tree_cpu_seconds

from cloud_server.settings import CloudSettings
from serving.backends import OnnxBackend, measure_throughput
from shared.bundle import Manifest
from shared.data.base import DatasetError
from shared.datasets import load_dataset
from shared.oip import encode_request
from shared.preprocess import normalize
from testbed.services import Service, free_port, start_service, stop_service, wait_ready

REPO_ROOT = Path(__file__).resolve().parents[1]
TRITON_PYTHON = REPO_ROOT / ".venv-triton" / "bin" / "python"
TRITON_SERVER = Path(__file__).resolve().parent / "_triton_server.py"
SERVED_OVER_RAW_TARGET = 0.85  # issue 10: cloud serving at 1 sample/request reaches 0.85 of raw batched onnxruntime
P99_RATIO_TARGET = 1.0  # issue 10: and its p99 is no worse than Triton's
TOKEN_ENV = "TRITON_COMPARE_TOKEN"  # read by _triton_server.py (which runs under another Python)
TOKEN_HEADER = "triton-access-token"  # pytriton's header for its protected endpoints


class ServerName(StrEnum):
    """The two servers compared; their names in the table and the JSON."""

    OURS = "ours"
    TRITON = "triton"


class CompareError(RuntimeError):
    """The comparison cannot be made (a server did not start, answers disagree); the message says which."""


@dataclass(frozen=True)
class CompareConfig:
    """One side-by-side run; bench/triton_compare.py fills it from its flags."""

    seconds: float = 5.0
    """Counted seconds of each phase (raw, ours, Triton) in each round."""
    warmup_s: float = 1.0
    """Uncounted seconds of load before each server's counted window."""
    rounds: int = 3
    """Rounds of raw, ours, Triton; the table shows the median round and the spread."""
    concurrency: int = 32
    """Closed-loop clients, each with one request in flight."""
    samples_per_request: int = 1
    """Samples in each request body (1: an edge offloading samples one by one)."""
    max_batch_size: int = CloudSettings.model_fields["max_batch_size"].default
    """Most samples per forward pass, for both servers' dynamic batchers and the raw measurement."""
    max_queue_delay_ms: float = CloudSettings.model_fields["max_queue_delay_ms"].default
    """Longest the oldest request waits for a batch to fill, for both servers."""
    threads: int = 1
    """onnxruntime intra-op threads: raw, ours and Triton alike."""
    server_cpus: frozenset[int] = frozenset()
    """Cores of both servers (and of every process they spawn) and of the raw measurement."""
    client_cpus: frozenset[int] = frozenset()
    """Cores of the load generator."""
    check_samples: int = 64
    """Samples whose labels both servers must get right (as onnxruntime in process) before anything is timed."""
    data_dir: Path | None = None
    """Where the bundle's dataset lies, for real check samples (digits needs none); else random pixels."""
    triton_python: Path = TRITON_PYTHON
    """Python of .venv-triton (`make .venv-triton/.installed`)."""
    start_timeout_s: float = 180.0
    """Longest either server may take to become ready."""

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.warmup_s < 0 or self.rounds < 1 or self.concurrency < 1:
            raise ValueError(f"bad load: seconds={self.seconds}, warmup_s={self.warmup_s}, rounds={self.rounds}, "
                             f"concurrency={self.concurrency}")
        if self.samples_per_request < 1 or self.max_batch_size < 1 or self.threads < 1 or self.check_samples < 1:
            raise ValueError(f"bad sizes: samples_per_request={self.samples_per_request}, "
                             f"max_batch_size={self.max_batch_size}, threads={self.threads}, "
                             f"check_samples={self.check_samples}")
        if self.samples_per_request > self.check_samples:
            raise ValueError(f"samples_per_request {self.samples_per_request} exceeds check_samples "
                             f"{self.check_samples}: the load sends checked samples")
        if not self.server_cpus or not self.client_cpus:
            raise ValueError("server_cpus and client_cpus must each name at least one core")


@dataclass(frozen=True)
class Spread:
    """A quantity over rounds: its median and its range."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(float(np.median(values)), float(np.min(values)), float(np.max(values)))


@dataclass(frozen=True)
class ServerRound:
    """One server's counted window in one round."""

    samples_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    non_200: int
    server_cpu_ms_per_request: float
    """CPU time of the server's whole process tree over warm-up + window, per request answered then."""
    server_core_use: float
    """That CPU time / wall time: below the server cores' count while saturated, other work took the rest."""
    mean_batch: float
    """Samples per forward pass over warm-up + window, from the server's own counters (NaN if it has none)."""
    generator_cpu: float
    """Load generator's CPU time / wall time (near 1.0: the generator, not the server, may be the limit)."""
    other_idle_cpu: float
    """CPU time / wall time of the *other* server, idle meanwhile on the same cores."""


@dataclass(frozen=True)
class Round:
    raw_samples_per_s: float
    servers: dict[ServerName, ServerRound]


@dataclass
class Report:
    """Everything a run measured; `verdicts` and `summary` are computed from `rounds`."""

    config: dict[str, Any]
    threads: int
    server_cpus: list[int]
    client_cpus: list[int]
    versions: dict[str, str]
    placement: dict[ServerName, dict[str, Any]]
    answer_check: dict[str, Any]
    rounds: list[Round] = field(default_factory=list)

    def spread(self, server: ServerName, metric: str) -> Spread:
        return Spread.of([float(getattr(r.servers[server], metric)) for r in self.rounds])

    def raw(self) -> Spread:
        return Spread.of([r.raw_samples_per_s for r in self.rounds])

    def served_over_raw(self, server: ServerName = ServerName.OURS) -> float:
        """Median served samples/s over median raw samples/s (the issue's 0.85 target is for ours)."""
        return self.spread(server, "samples_per_s").median / self.raw().median

    def p99_ratio(self) -> float:
        """Median p99 of ours over median p99 of Triton (target <= 1.0)."""
        return self.spread(ServerName.OURS, "p99_ms").median / self.spread(ServerName.TRITON, "p99_ms").median

    def to_json(self) -> dict[str, Any]:
        metrics = [f.name for f in ServerRound.__dataclass_fields__.values()]
        served_over_raw, p99_ratio = self.served_over_raw(), self.p99_ratio()
        return {
            "config": self.config,
            "threads": self.threads,
            "server_cpus": self.server_cpus,
            "client_cpus": self.client_cpus,
            "versions": self.versions,
            "placement": {str(k): v for k, v in self.placement.items()},
            "answer_check": self.answer_check,
            "rounds": [{"raw_samples_per_s": r.raw_samples_per_s,
                        **{str(k): asdict(v) for k, v in r.servers.items()}} for r in self.rounds],
            "summary": {"raw_samples_per_s": asdict(self.raw()),
                        **{str(s): {m: asdict(self.spread(s, m)) for m in metrics} for s in ServerName}},
            "verdicts": {
                "served_over_raw": served_over_raw,
                "served_over_raw_target": SERVED_OVER_RAW_TARGET,
                "served_over_raw_met": served_over_raw >= SERVED_OVER_RAW_TARGET,
                "served_over_raw_per_round": [r.servers[ServerName.OURS].samples_per_s / r.raw_samples_per_s
                                              for r in self.rounds],
                "triton_served_over_raw": self.served_over_raw(ServerName.TRITON),
                "p99_ours_over_triton": p99_ratio,
                "p99_ratio_target": P99_RATIO_TARGET,
                "p99_ratio_met": p99_ratio <= P99_RATIO_TARGET,
            },
        }


# ---------------------------------------------------------------------------------------------- servers


def teacher_onnx(bundle: Path, manifest: Manifest) -> Path:
    """The teacher's ONNX graph, which both servers and the raw measurement run."""
    entry = manifest.models[manifest.teacher]
    if entry.file is None:
        raise CompareError(f"{bundle}: teacher {manifest.teacher!r} has no ONNX file; the comparison serves ONNX "
                           "(rebuild the bundle with an exportable teacher)")
    return bundle / entry.file


def probe_triton_python(python: Path) -> dict[str, str]:
    """The lib/ directory of .venv-triton's Python (tritonserver's python backend loads libpython from it)
    and the versions it holds; CompareError says how to make the venv when it is missing or broken."""
    if not python.is_file():
        raise CompareError(f"{python} does not exist; create .venv-triton with `make .venv-triton/.installed`")
    code = ("import sysconfig, onnxruntime, numpy; from importlib.metadata import version; "
            "print(sysconfig.get_config_var('LIBDIR')); print(onnxruntime.__version__); "
            "print(version('nvidia-pytriton'))")
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise CompareError(f"{python} cannot import onnxruntime and nvidia-pytriton; recreate .venv-triton "
                           f"(rm -r .venv-triton && make .venv-triton/.installed):\n{result.stderr[-2000:]}")
    libdir, ort_version, pytriton_version = result.stdout.split()
    return {"libdir": libdir, "onnxruntime": ort_version, "nvidia-pytriton": pytriton_version}


def start_triton(bundle: Path, manifest: Manifest, cfg: CompareConfig, *, libdir: str, token: str,
                 log_dir: Path, exported: Path | None = None) -> Service:
    """bench/_triton_server.py under .venv-triton, in a session of its own, on a free loopback port;
    `token` opens its statistics endpoint. `exported`: serve this graph from `edgecloud export triton`
    (raw pixels in, normalisation inside) instead of the bundle's teacher."""
    port = free_port()
    spec = manifest.input
    graph = ["--onnx", str(exported), "--raw-input"] if exported is not None else [
        "--onnx", str(teacher_onnx(bundle, manifest)), "--mean", ",".join(map(repr, spec.mean)),
        "--std", ",".join(map(repr, spec.std))]
    cmd = [str(cfg.triton_python), str(TRITON_SERVER), *graph,
           "--shape", ",".join(map(str, spec.shape)), "--threads", str(cfg.threads),
           "--max-batch-size", str(cfg.max_batch_size), "--max-queue-delay-ms", str(cfg.max_queue_delay_ms),
           "--model", manifest.teacher, "--http-port", str(port), "--grpc-port", str(free_port()),
           "--metrics-port", str(free_port())]
    # The python backend's stub links against libpython3.12, which a pyenv build keeps in its own lib/.
    library_path = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)
    env = {**os.environ, "LD_LIBRARY_PATH": library_path, TOKEN_ENV: token}
    log_path = log_dir / "triton.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                   cwd=REPO_ROOT)
    return Service("triton", f"http://127.0.0.1:{port}", process, log_path)


def wait_model_ready(service: Service, model: str, *, timeout_s: float) -> None:
    """Poll /v2/models/MODEL/ready: pytriton loads the model only after tritonserver itself is up."""
    try:
        wait_ready(service, timeout_s=timeout_s, path=f"/v2/models/{model}/ready", poll_s=0.3)
    except (RuntimeError, TimeoutError) as err:  # the process died, or the model never came up
        raise CompareError(str(err)) from err


def stop_triton(service: Service, *, grace_s: float = 45.0) -> None:
    """SIGTERM to pytriton's process only (it stops tritonserver and the stubs and cleans its workspace),
    then SIGKILL to the whole session for anything left (a stuck stub, or after `grace_s`)."""
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(service.process.pid, signal.SIGKILL)
    service.process.wait()


@contextlib.contextmanager
def both_servers(bundle: Path, manifest: Manifest, cfg: CompareConfig, *, libdir: str, token: str,
                 log_dir: Path) -> Iterator[dict[ServerName, Service]]:
    """Start ours and Triton on cfg.server_cpus (they inherit this thread's mask); stop both however it ends."""
    os.sched_setaffinity(0, cfg.server_cpus)
    services: dict[ServerName, Service] = {}
    try:
        services[ServerName.OURS] = start_service(
            "cloud", ["cloud", "serve", "--bundle", str(bundle), "--threads", str(cfg.threads),
                      "--max-batch-size", str(cfg.max_batch_size),
                      "--max-queue-delay-ms", str(cfg.max_queue_delay_ms)],
            port=free_port(), log_dir=log_dir)
        services[ServerName.TRITON] = start_triton(bundle, manifest, cfg, libdir=libdir, token=token,
                                                   log_dir=log_dir)
        os.sched_setaffinity(0, cfg.client_cpus)
        try:
            wait_ready(services[ServerName.OURS], timeout_s=cfg.start_timeout_s)
        except (RuntimeError, TimeoutError) as err:
            raise CompareError(str(err)) from None
        wait_model_ready(services[ServerName.TRITON], manifest.teacher, timeout_s=cfg.start_timeout_s)
        yield services
    finally:
        os.sched_setaffinity(0, cfg.client_cpus)
        if ServerName.TRITON in services:
            stop_triton(services[ServerName.TRITON])
        if ServerName.OURS in services:
            stop_service(services[ServerName.OURS])


def check_placement(services: dict[ServerName, Service], allowed: frozenset[int]) -> dict[ServerName, Placement]:
    """Every thread of every process of both servers may run on the server cores only."""
    found = {name: placement(service.process.pid) for name, service in services.items()}
    for name, where in found.items():
        if not where.within(set(allowed)):
            raise CompareError(f"{name} runs {where.threads} thread(s) in {where.processes} process(es) on cores "
                               f"{sorted(where.cores)}, not only on the server cores {sorted(allowed)}")
    return found


# ------------------------------------------------------------------------------------------ measuring

_OUR_BATCH_SERIES = re.compile(r"^\w*batch_size_(sum|count)(?:\{[^}]*\})? ([0-9.eE+-]+)$", re.MULTILINE)


def batch_counters(name: ServerName, service: Service, model: str, *, token: str) -> tuple[float, float]:
    """(samples computed, forward passes) so far, from the server's own counters; (nan, nan) if it has none.

    Ours: the Prometheus batch-size histogram (summed over its series). Triton: the model's statistics,
    inference_count (samples) and execution_count (batches).
    """
    try:
        if name is ServerName.OURS:
            text = httpx.get(f"{service.url}/metrics", timeout=10.0).text
            totals = {"sum": 0.0, "count": 0.0}
            for kind, value in _OUR_BATCH_SERIES.findall(text):
                totals[kind] += float(value)
            return (totals["sum"], totals["count"]) if totals["count"] else (float("nan"), float("nan"))
        stats = httpx.get(f"{service.url}/v2/models/{model}/stats", headers={TOKEN_HEADER: token},
                          timeout=10.0).json()["model_stats"][0]
        return float(stats["inference_count"]), float(stats["execution_count"])
    except (httpx.HTTPError, KeyError, IndexError, ValueError):
        return float("nan"), float("nan")


def check_samples(manifest: Manifest, cfg: CompareConfig) -> tuple[np.ndarray, str]:
    """(N, C, H, W) uint8 samples for the answer check and the load, and where they came from."""
    try:
        x = load_dataset(manifest.dataset, data_dir=cfg.data_dir).test.x
    except (DatasetError, ValueError, OSError):
        x = None
    if x is not None and list(x.shape[1:]) == list(manifest.input.shape) and len(x) >= cfg.check_samples:
        return np.ascontiguousarray(x[:cfg.check_samples]), f"{manifest.dataset} test split"
    rng = np.random.default_rng(0)
    shape = (cfg.check_samples, *manifest.input.shape)
    return rng.integers(0, 256, size=shape, dtype=np.uint8), "random pixels (pass --data-dir for real samples)"


def check_answers(services: dict[ServerName, Service], model: str, x: np.ndarray, expected_logits: np.ndarray
                  ) -> dict[str, dict[str, Any]]:
    """Send `x` to each server as a real OIP binary request (tritonclient) and compare with onnxruntime."""
    import tritonclient.http as triton_http

    expected = expected_logits.argmax(axis=1)
    found: dict[str, dict[str, Any]] = {}
    for name, service in services.items():
        client = triton_http.InferenceServerClient(service.url.removeprefix("http://"), network_timeout=60.0)
        try:
            tensor = triton_http.InferInput("input", list(x.shape), "UINT8")
            tensor.set_data_from_numpy(x, binary_data=True)
            answer = client.infer(model, [tensor], outputs=[triton_http.InferRequestedOutput(n, binary_data=True)
                                                             for n in ("logits", "label")])
        finally:
            client.close()
        labels = np.asarray(answer.as_numpy("label")).reshape(-1)  # Triton answers [N, 1], ours [N]
        logits = np.asarray(answer.as_numpy("logits"))
        found[str(name)] = {
            "labels_agree": bool(labels.shape == expected.shape and np.array_equal(labels, expected)),
            "label_mismatches": int(np.sum(labels != expected)) if labels.shape == expected.shape else len(x),
            "max_abs_logit_diff": float(np.max(np.abs(logits - expected_logits))),
        }
    return found


def _serve_round(name: ServerName, service: Service, other: Service, model: str, body: bytes,
                 headers: dict[str, str], cfg: CompareConfig, *, token: str) -> ServerRound:
    samples0, batches0 = batch_counters(name, service, model, token=token)
    cpu0, other0 = tree_cpu_seconds(service.process.pid), tree_cpu_seconds(other.process.pid)
    gen0, wall0 = time.process_time(), time.perf_counter()
    result: LoadResult = asyncio.run(closed_loop(
        f"{service.url}/v2/models/{model}/infer", body, headers, concurrency=cfg.concurrency, seconds=cfg.seconds,
        warmup_s=cfg.warmup_s, samples_per_request=cfg.samples_per_request))
    wall = time.perf_counter() - wall0
    gen = time.process_time() - gen0
    cpu = tree_cpu_seconds(service.process.pid) - cpu0
    other_cpu = tree_cpu_seconds(other.process.pid) - other0
    samples1, batches1 = batch_counters(name, service, model, token=token)
    mean_batch = (samples1 - samples0) / (batches1 - batches0) if batches1 > batches0 else float("nan")
    return ServerRound(
        samples_per_s=result.samples_per_s, p50_ms=result.latency_ms(50), p95_ms=result.latency_ms(95),
        p99_ms=result.latency_ms(99), non_200=result.failed,
        server_cpu_ms_per_request=1000.0 * cpu / max(result.answered_total, 1), server_core_use=cpu / wall,
        mean_batch=mean_batch,
        generator_cpu=gen / wall, other_idle_cpu=other_cpu / wall)


def run_rounds(services: dict[ServerName, Service], model: str, backend: OnnxBackend, x: np.ndarray,
               cfg: CompareConfig, *, token: str, progress: Callable[[str], None]) -> list[Round]:
    """cfg.rounds rounds of raw, ours, Triton, each server serving `model`."""
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((cfg.max_batch_size, *x.shape[1:])).astype(np.float32)  # (B, C, H, W)
    body, headers = encode_request({"input": x[:cfg.samples_per_request]}, outputs=("logits", "label"))
    order = (ServerName.OURS, ServerName.TRITON)
    rounds = []
    for index in range(cfg.rounds):
        progress(f"round {index + 1}/{cfg.rounds}: raw onnxruntime")
        os.sched_setaffinity(0, cfg.server_cpus)  # raw computes on the servers' cores, in this thread
        try:
            raw = measure_throughput(backend, batch, seconds=cfg.seconds)
        finally:
            os.sched_setaffinity(0, cfg.client_cpus)
        servers = {}
        for name in order:
            progress(f"round {index + 1}/{cfg.rounds}: {name}")
            other = services[order[1] if name == order[0] else order[0]]
            servers[name] = _serve_round(name, services[name], other, model, body, headers, cfg, token=token)
        rounds.append(Round(raw_samples_per_s=raw, servers=servers))
    return rounds


def compare(bundle: Path, manifest: Manifest, cfg: CompareConfig, *, log_dir: Path,
            progress: Callable[[str], None]) -> Report:
    """Start both servers, check their answers, measure cfg.rounds rounds, stop both."""
    import onnxruntime

    triton_env = probe_triton_python(cfg.triton_python)
    os.sched_setaffinity(0, cfg.server_cpus)  # onnxruntime's pool threads keep the mask they are born with
    try:
        backend = OnnxBackend(teacher_onnx(bundle, manifest), threads=cfg.threads)
    finally:
        os.sched_setaffinity(0, cfg.client_cpus)
    x, source = check_samples(manifest, cfg)
    expected = backend.infer(normalize(x, manifest.input.mean, manifest.input.std))
    progress("starting both servers")
    token = secrets.token_urlsafe(16)
    with both_servers(bundle, manifest, cfg, libdir=triton_env["libdir"], token=token,
                      log_dir=log_dir) as services:
        where = check_placement(services, cfg.server_cpus)
        answers = check_answers(services, manifest.teacher, x, expected)
        if not all(a["labels_agree"] for a in answers.values()):
            raise CompareError(f"the servers' labels differ from onnxruntime's on {len(x)} samples ({source}): "
                               f"{answers}")
        report = Report(
            config={k: (sorted(v) if isinstance(v, frozenset) else str(v) if isinstance(v, Path) else v)
                    for k, v in asdict(cfg).items()} | {"bundle": str(bundle)},
            threads=cfg.threads, server_cpus=sorted(cfg.server_cpus), client_cpus=sorted(cfg.client_cpus),
            versions={"python": sys.version.split()[0], "onnxruntime": onnxruntime.__version__,
                      "triton_onnxruntime": triton_env["onnxruntime"],
                      "nvidia-pytriton": triton_env["nvidia-pytriton"]},
            placement={name: {"processes": p.processes, "threads": p.threads, "cores": sorted(p.cores)}
                       for name, p in where.items()},
            answer_check={"samples": len(x), "source": source, **answers},
        )
        report.rounds = run_rounds(services, manifest.teacher, backend, x, cfg, token=token, progress=progress)
    return report


# ------------------------------------------------------------------------------------------ reporting

_COLUMNS: tuple[tuple[str, str, str], ...] = (  # (ServerRound field, header, format)
    ("samples_per_s", "samples/s", "{:.0f}"),
    ("p50_ms", "p50 ms", "{:.2f}"),
    ("p95_ms", "p95 ms", "{:.2f}"),
    ("p99_ms", "p99 ms", "{:.2f}"),
    ("non_200", "non-200", "{:.0f}"),
    ("server_cpu_ms_per_request", "server CPU ms/req", "{:.3f}"),
    ("server_core_use", "server cores used", "{:.2f}"),
    ("mean_batch", "mean batch", "{:.1f}"),
    ("generator_cpu", "generator CPU", "{:.2f}"),
    ("other_idle_cpu", "idle neighbour CPU", "{:.3f}"),
)
_LABELS = {ServerName.OURS: "ours (edgecloud cloud serve)", ServerName.TRITON: "Triton (pytriton, python backend)"}


def _cell(spread: Spread, fmt: str) -> str:
    return f"{fmt.format(spread.median)} [{fmt.format(spread.low)}-{fmt.format(spread.high)}]"


def format_report(report: Report) -> str:
    """The table (median round [lowest-highest]) and the two verdict lines, as printed."""
    cfg = report.config
    raw = report.raw()
    lines = [
        f"cores     : servers + raw {report.server_cpus}, load generator {report.client_cpus}",
        f"threads   : {report.threads} onnxruntime intra-op thread(s) in raw, ours and Triton "
        f"(onnxruntime {report.versions['onnxruntime']} here, {report.versions['triton_onnxruntime']} in Triton)",
        "pinned    : " + "; ".join(f"{name} {p['processes']} process(es), {p['threads']} threads on {p['cores']}"
                                   for name, p in report.placement.items()),
        f"answers   : {report.answer_check['samples']} samples ({report.answer_check['source']}): " + "; ".join(
            f"{name} labels {'agree' if report.answer_check[name]['labels_agree'] else 'DIFFER'}, max |dlogit| "
            f"{report.answer_check[name]['max_abs_logit_diff']:.2g}" for name in map(str, ServerName)),
        f"load      : {cfg['concurrency']} clients x {cfg['samples_per_request']} sample(s) per request, "
        f"{len(report.rounds)} rounds of {cfg['seconds']:g} s after {cfg['warmup_s']:g} s warm-up; dynamic "
        f"batching max {cfg['max_batch_size']}, max queue delay {cfg['max_queue_delay_ms']:g} ms",
        f"raw       : {_cell(raw, '{:.0f}')} samples/s (onnxruntime in process, batch {cfg['max_batch_size']})",
        "",
        "| server | " + " | ".join(header for _, header, _ in _COLUMNS) + " |",
        "|---|" + "---:|" * len(_COLUMNS),
    ]
    for name in ServerName:
        lines.append(f"| {_LABELS[name]} | "
                     + " | ".join(_cell(report.spread(name, f), fmt) for f, _, fmt in _COLUMNS) + " |")
    served, p99 = report.served_over_raw(), report.p99_ratio()
    per_round = " ".join(f"{r.servers[ServerName.OURS].samples_per_s / r.raw_samples_per_s:.3f}"
                         for r in report.rounds)
    ours_rate = report.spread(ServerName.OURS, "samples_per_s").median
    ours_p99 = report.spread(ServerName.OURS, "p99_ms").median
    triton_p99 = report.spread(ServerName.TRITON, "p99_ms").median
    lines += [
        "",
        f"served / raw (ours)  : {served:.3f} = {ours_rate:.0f} / {raw.median:.0f}  (per round: {per_round}; "
        f"target >= {SERVED_OVER_RAW_TARGET}: {'met' if served >= SERVED_OVER_RAW_TARGET else 'NOT met'})",
        f"p99 ours / p99 Triton: {p99:.3f} = {ours_p99:.2f} / {triton_p99:.2f} ms  "
        f"(target <= {P99_RATIO_TARGET}: {'met' if p99 <= P99_RATIO_TARGET else 'NOT met'})",
        f"served / raw (Triton): {report.served_over_raw(ServerName.TRITON):.3f}  (for reference)",
    ]
    return "\n".join(lines)
