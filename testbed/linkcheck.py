"""Measure what a link delivers: round-trip time and TCP goodput each way, against its profile.

`serve` runs in the cloud's namespace; `measure` runs in the edge's and connects across the link.
One TCP connection per test, with TCP_NODELAY. RTT is judged by the fastest of 25 small echoes after
a warm-up: the link's delay is a floor that scheduling noise on a busy host only adds to (the median
is reported too). Goodput is payload bits over the transfer's time less that RTT (the request's trip out and the
first byte's trip back are latency, not throughput); it is below the profile's rate because tbf
counts whole Ethernet frames and TCP/IP headers take about 4.4 % of a full one.

`python -m testbed.linkcheck serve --host H --port P`
`python -m testbed.linkcheck measure --host H --port P --rate-mbit R [--json]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from testbed.delay_proxy import raise_priority
from testbed.profiles import LinkProfile

PING_BYTES = 64
CHUNK_BYTES = 64 * 1024
READY_LINE = "linkcheck server listening"
# What `check` accepts. RTT: a link never beats its delay, so the range is lopsided; above, the shim's
# timer granularity (up to 1 ms each way) and scheduling on a busy 2-core host add a few ms.
RTT_LOW_REL, RTT_HIGH_REL, RTT_HIGH_MS = 0.90, 1.15, 4.0
# Goodput: headers cost ~4.4 %, tbf's bucket lets a little more through at the start of a transfer.
RATE_LOW, RATE_HIGH = 0.80, 1.05


@dataclass(frozen=True)
class Measurement:
    rtt_ms: float            # fastest round trip of a 64-byte echo: the link's own delay
    rtt_median_ms: float     # typical round trip, scheduling noise of the host included
    up_mbit: float           # goodput edge -> cloud
    down_mbit: float         # goodput cloud -> edge
    bytes_each_way: int


@dataclass(frozen=True)
class Verdict:
    metric: str
    target: float
    measured: float
    low: float
    high: float

    @property
    def ok(self) -> bool:
        return self.low <= self.measured <= self.high


def judge(profile: LinkProfile, m: Measurement) -> list[Verdict]:
    """Measured against target, with the accepted range, for RTT and both directions' goodput."""
    rtt = profile.rtt_ms
    return [Verdict("rtt_ms", rtt, m.rtt_ms, RTT_LOW_REL * rtt, RTT_HIGH_REL * rtt + RTT_HIGH_MS),
            *(Verdict(name, profile.rate_mbit, value, RATE_LOW * profile.rate_mbit, RATE_HIGH * profile.rate_mbit)
              for name, value in (("up_mbit", m.up_mbit), ("down_mbit", m.down_mbit)))]


def transfer_bytes(rate_mbit: float, seconds: float) -> int:
    """Enough bytes to keep the link busy for SECONDS at its rate (64 KiB to 256 MiB)."""
    return int(min(max(rate_mbit * 1e6 / 8 * seconds, 64 * 1024), 256 * 1024 * 1024))


# ---- server (cloud side) ----

async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        command, _, count = (await reader.readline()).decode().strip().partition(" ")
        n = int(count or 0)
        if command == "PING":
            for _ in range(n):
                writer.write(await reader.readexactly(PING_BYTES))
                await writer.drain()
        elif command == "UP":
            writer.write(b"READY\n")
            await writer.drain()
            remaining = n
            while remaining:
                data = await reader.read(min(CHUNK_BYTES, remaining))
                if not data:
                    return
                remaining -= len(data)
            writer.write(b"OK\n")
            await writer.drain()
        elif command == "DOWN":
            writer.write(b"READY\n")
            await writer.drain()
            await reader.readline()  # b"GO\n": the client starts its clock when it sends it
            block = bytes(CHUNK_BYTES)
            remaining = n
            while remaining:
                writer.write(block[: min(CHUNK_BYTES, remaining)])
                remaining -= min(CHUNK_BYTES, remaining)
                await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        pass  # a client that goes away mid-test only ends its own test
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _serve(host: str, port: int) -> None:
    server = await asyncio.start_server(_handle, host, port)
    async with server:
        print(f"{READY_LINE} on {host}:{port}", flush=True)
        await server.serve_forever()


# ---- client (edge side) ----

def _connect(host: str, port: int, *, timeout_s: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv_exactly(sock: socket.socket, n: int) -> None:
    remaining = n
    while remaining:
        data = sock.recv(min(CHUNK_BYTES, remaining))
        if not data:
            raise ConnectionError(f"the server closed the connection with {remaining} of {n} bytes unread")
        remaining -= len(data)


def measure_rtt(host: str, port: int, *, pings: int = 25, warmup: int = 5, timeout_s: float = 10.0
                ) -> list[float]:
    """Round trips of 64-byte echoes on one connection, in seconds, after WARMUP untimed ones."""
    payload = bytes(range(PING_BYTES))
    with _connect(host, port, timeout_s=timeout_s) as sock:
        sock.sendall(f"PING {warmup + pings}\n".encode())
        times = []
        for i in range(warmup + pings):
            started = time.perf_counter()
            sock.sendall(payload)
            _recv_exactly(sock, PING_BYTES)
            if i >= warmup:
                times.append(time.perf_counter() - started)
    return times


def measure_goodput(host: str, port: int, *, direction: str, n_bytes: int, rtt_s: float,
                    timeout_s: float = 120.0) -> float:
    """Payload bit/s of one N_BYTES transfer UP (edge to cloud) or DOWN, one RTT of latency removed."""
    if direction not in ("UP", "DOWN"):
        raise ValueError(f"direction must be UP or DOWN, got {direction!r}")
    with _connect(host, port, timeout_s=timeout_s) as sock:
        # A READY first, so that neither the TCP handshake nor the delay shim's emulation of it is timed.
        sock.sendall(f"{direction} {n_bytes}\n".encode())
        _recv_exactly(sock, len(b"READY\n"))
        started = time.perf_counter()
        if direction == "UP":
            block = bytes(CHUNK_BYTES)
            remaining = n_bytes
            while remaining:
                sock.sendall(block[: min(CHUNK_BYTES, remaining)])
                remaining -= min(CHUNK_BYTES, remaining)
            _recv_exactly(sock, 3)  # b"OK\n", sent once the last byte arrived
        else:
            sock.sendall(b"GO\n")
            _recv_exactly(sock, n_bytes)
        elapsed = time.perf_counter() - started
    return n_bytes * 8 / max(elapsed - rtt_s, 1e-9)


def wait_for_server(host: str, port: int, *, timeout_s: float) -> None:
    """Retry a one-echo exchange until it works (the server, or the proxy's upstream, may be starting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            measure_rtt(host, port, pings=1, warmup=0, timeout_s=5.0)
            return
        except OSError as err:  # ConnectionError included
            if time.monotonic() > deadline:
                raise TimeoutError(f"no linkcheck server at {host}:{port} after {timeout_s:.0f} s: {err}") from err
            time.sleep(0.2)


def measure(host: str, port: int, *, rate_mbit: float, seconds: float = 1.5,
            connect_timeout_s: float = 30.0) -> Measurement:
    wait_for_server(host, port, timeout_s=connect_timeout_s)
    rtts = measure_rtt(host, port)
    rtt_s = min(rtts)
    n = transfer_bytes(rate_mbit, seconds)
    up = measure_goodput(host, port, direction="UP", n_bytes=n, rtt_s=rtt_s)
    down = measure_goodput(host, port, direction="DOWN", n_bytes=n, rtt_s=rtt_s)
    return Measurement(rtt_ms=rtt_s * 1e3, rtt_median_ms=statistics.median(rtts) * 1e3, up_mbit=up / 1e6,
                       down_mbit=down / 1e6, bytes_each_way=n)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="linkcheck", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    serve = sub.add_parser("serve", help="echo/sink/source server (cloud side)")
    serve.add_argument("--host", required=True)
    serve.add_argument("--port", type=int, required=True)
    client = sub.add_parser("measure", help="measure RTT and goodput to a server (edge side)")
    client.add_argument("--host", required=True)
    client.add_argument("--port", type=int, required=True)
    client.add_argument("--rate-mbit", type=float, required=True, help="expected rate; sizes the transfers")
    client.add_argument("--seconds", type=float, default=1.5, help="target length of each transfer")
    args = parser.parse_args(argv)
    raise_priority()  # the measuring ends, like the emulated link, should not wait behind the host's load
    if args.mode == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args.host, args.port))
        return 0
    result = measure(args.host, args.port, rate_mbit=args.rate_mbit, seconds=args.seconds)
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
