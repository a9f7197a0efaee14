"""A Ray cluster of several node processes on this machine, for trying and testing the cloud on Ray Serve.

    with LocalRayCluster(nodes=2, cpus_per_node=1, log_dir=Path("logs")) as cluster:
        ...  # edgecloud cloud ray-serve --address {cluster.address} ...

Each node is a `ray start --block` process of its own (the first with --head), as on real machines,
on this host with ports of its own, so that two nodes share a host without sharing a port. Stopping
never uses `ray stop`, which ends every Ray process of the user on the machine, other people's
clusters included: each `ray start --block` gets SIGTERM (it stops the node it started), and whatever
is left of the process trees recorded while the cluster ran (raylet, GCS, workers, replicas) is
killed by PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from testbed.services import free_port

STARTED_LINE = "Ray runtime started"
"""What `ray start` prints once its node is up."""


class RayClusterError(RuntimeError):
    """A node did not start; the message holds the tail of its log."""


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # exited while we looked
            continue
        children.setdefault(parent, []).append(int(entry.name))
    return children


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (not `pid` itself)."""
    children = _children()
    found: set[int] = set()
    todo = list(children.get(pid, []))
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(children.get(current, []))
    return found


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None once it is gone: with the PID, it names
    one process for good, where a PID alone may be reused by another after the first exits."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])  # proc(5) field 22
    except (OSError, IndexError, ValueError):
        return None


def process_title(pid: int) -> str:
    """The process's command line as it shows in `ps` (Ray renames workers: `ray::ServeReplica:...`)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class RayNode:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, n_chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n_chars:] if self.log_path.is_file() else ""


@dataclass
class LocalRayCluster:
    """`nodes` Ray nodes on this host (a head, then workers joining it); a context manager."""

    nodes: int = 2
    """Node processes, the head included."""
    cpus_per_node: float = 1.0
    """Logical CPUs each node offers Ray (they all share this machine's cores)."""
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="edgecloud-ray-logs-")))
    """Where each node's `ray start` output goes (NAME.log)."""
    object_store_bytes: int = 100 * 1024 * 1024
    """Each node's shared-memory object store; Ray's default (30% of RAM) is far more than serving needs."""
    start_timeout_s: float = 180.0
    """Longest a node may take to come up (a loaded machine is slow to start Ray's processes)."""
    start_attempts: int = 3
    """Tries at starting each worker node (Ray's own startup deadline can pass on a loaded machine)."""
    ray: Path = field(default_factory=lambda: Path(sys.executable).with_name("ray"))
    """The `ray` command of this environment: its Python runs the workers, so they import this project."""
    address: str = ""
    """HOST:PORT of the head's GCS, once started."""
    started: list[RayNode] = field(default_factory=list)
    _seen: dict[int, int] = field(default_factory=dict)  # pid -> start time
    _temp_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.cpus_per_node <= 0:
            raise ValueError(f"a cluster needs nodes >= 1 and cpus_per_node > 0, got {self.nodes}, "
                             f"{self.cpus_per_node}")
        if not self.ray.is_file():
            raise RayClusterError(f"{self.ray} not found: install the ray extra (pip install 'edgecloud[ray]')")

    def __enter__(self) -> LocalRayCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _node_args(self) -> list[str]:
        # Every port a node opens, chosen here: Ray's fixed defaults (e.g. the agent's 52365) collide when
        # two nodes share a host. free_port() is racy in principle; a collision fails the start loudly.
        low = 20000 + (os.getpid() * 53) % 30000
        return ["--num-cpus", f"{self.cpus_per_node:g}", "--num-gpus", "0",
                "--object-store-memory", str(self.object_store_bytes), "--disable-usage-stats",
                "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
                "--min-worker-port", str(low + 200 * len(self.started)),
                "--max-worker-port", str(low + 200 * len(self.started) + 199)]

    def _start_node(self, name: str, args: list[str]) -> RayNode:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        with log_path.open("wb") as log:
            process = subprocess.Popen([str(self.ray), "start", "--block", *args, *self._node_args()], stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True, env=env)
        node = RayNode(name, process, log_path)
        self.started.append(node)
        deadline = time.monotonic() + self.start_timeout_s
        while STARTED_LINE not in node.log_tail(1_000_000):
            if process.poll() is not None:
                raise RayClusterError(f"ray node {name} exited with {process.returncode}:\n{node.log_tail()}")
            if time.monotonic() > deadline:
                raise RayClusterError(f"ray node {name} not up after {self.start_timeout_s:.0f} s:\n{node.log_tail()}")
            time.sleep(0.5)
        self.remember()
        return node

    def start(self) -> None:
        port = free_port()
        # A short temp dir: Ray puts Unix sockets under it, and their paths must stay under 108 bytes.
        self._temp_dir = Path(tempfile.mkdtemp(prefix="ecray-", dir="/tmp"))
        # Ray binds each node to this host's routable address, whatever --node-ip-address says: it rewrites
        # 127.0.0.1 (there and in --address) to that address, and its switch that keeps a node on the loopback
        # address (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) refuses to start a worker node. So the nodes use the
        # routable address, as on real machines, and 127.0.0.1:PORT below reaches the head through the same rewrite.
        self._start_node("head", ["--head", "--port", str(port), "--include-dashboard=false",
                                  "--ray-client-server-port", str(free_port()), "--temp-dir", str(self._temp_dir)])
        self.address = f"127.0.0.1:{port}"
        for index in range(1, self.nodes):
            for attempt in range(1, self.start_attempts + 1):
                try:
                    self._start_node(f"worker{index}", ["--address", self.address])
                    break
                except RayClusterError:
                    # Ray gives a joining node's raylet a fixed 30 s to register with the GCS (ray/_private/node.py);
                    # on a loaded machine that can pass. The failed node is cleared away and started again.
                    failed = self.started.pop()
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(failed.process.pid, signal.SIGKILL)  # the node's session: its raylet and agents
                    failed.process.wait()
                    if attempt == self.start_attempts:
                        raise

    def remember(self) -> set[int]:
        """Record (and return) every process now under the nodes, so that stop() can reach them after
        their parents are gone."""
        for node in self.started:
            for pid in descendants(node.process.pid):
                if pid not in self._seen and (started := start_time(pid)) is not None:
                    self._seen[pid] = started
        return set(self._seen)

    def processes(self, title_prefix: str) -> list[int]:
        """Live processes of this cluster whose title starts with `title_prefix` (e.g. `ray::ServeReplica`)."""
        self.remember()
        return sorted(pid for pid in self._seen if process_title(pid).startswith(title_prefix))

    def stop(self, *, grace_s: float = 20.0) -> None:
        self.remember()
        for node in reversed(self.started):  # workers first, the head last
            if node.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for node in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for pid, started in sorted(self._seen.items()):
            if start_time(pid) == started:  # still the process we saw, not a new one under a reused PID
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        for node in self.started:
            if node.process.poll() is None:
                node.process.kill()
        for node in self.started:
            node.process.wait()
        self.started.clear()
        self._seen.clear()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
