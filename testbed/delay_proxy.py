"""EMULATED link delay: a TCP proxy that holds every chunk for a fixed one-way delay, each direction.

This is a stand-in for netem on kernels built without it (CONFIG_NET_SCH_NETEM unset), not netem.
The testbed runs it in the cloud's namespace, listening on the link address and forwarding to the
cloud server on that namespace's loopback, so every byte between edge and cloud crosses the shaped
veth once and waits `delay_ms` each way: RTT/2 up, RTT/2 down. Throughput is unaffected, because
chunks are pipelined (each is released `delay_ms` after it arrived, not after the previous one left).

Where it differs from a real (or netem) link, and so from a report made with netem:
- TCP's handshake and ACKs are answered by the kernel at each hop and are not delayed. The first
  bytes of a connection are held until one extra RTT has passed, so the first request on a new
  connection still pays the handshake, but a sender's congestion window grows as on a short link.
- Delays have the event loop's timer granularity (about 1 ms), so a very short delay is rounded up.
- It relays TCP only (the services speak HTTP/1.1 over TCP).

With `--trace FILE` it also emulates a link whose rate changes over time (trace replay): each
direction is one serial link whose rate at trace time t is the trace's (shared/traces.py), so a
chunk of n bytes occupies it for exactly the time `Trace.transfer_s(n, t)` says, after the chunks
before it, then waits the one-way delay. Trace time 0 is `--trace-start-unix` (wall clock), so a
client that starts its requests then sees the same rates the trace-driven environment assumes; the
trace wraps around past its end. The veth's tbf stays as the ceiling.

`python -m testbed.delay_proxy --listen HOST:PORT --target HOST:PORT --delay-ms MS
 [--trace FILE --trace-start-unix T]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.traces import Trace, read_trace

CHUNK_BYTES = 64 * 1024
QUEUE_CHUNKS = 256          # per direction: bounds memory when the far side reads slower than we do
READY_LINE = "delay proxy (emulation) listening"


@dataclass(frozen=True)
class ProxyConfig:
    listen_host: str
    """address to accept connections on (the link side)."""
    listen_port: int
    """port to accept connections on."""
    target_host: str
    """address of the real server."""
    target_port: int
    """port of the real server."""
    delay_ms: float
    """one-way delay added to every chunk, in each direction (half the emulated RTT)."""
    trace: Trace | None = None
    """rate over time of each direction (None: the veth's shaping only)."""
    trace_start_unix: float = 0.0
    """wall-clock time (time.time()) at which the trace starts."""

    def __post_init__(self) -> None:
        if self.delay_ms < 0:
            raise ValueError(f"delay_ms must be >= 0, got {self.delay_ms}")


@dataclass
class ByteCount:
    """Bytes the proxy relayed so far, each direction (client to server: `up`)."""

    up: int = 0
    down: int = 0


@dataclass
class SerialLink:
    """One direction of a trace-driven link: chunks cross it one after another at the trace's rate."""

    trace: Trace
    start_unix: float
    busy_until: float = field(default=0.0)  # loop time the link is free again

    def finish(self, n_bytes: int, now: float, loop_to_unix: float) -> float:
        """Loop time at which a chunk of `n_bytes` arriving at loop time `now` has crossed the link."""
        start = max(now, self.busy_until)
        trace_t = start + loop_to_unix - self.start_unix
        self.busy_until = start + self.trace.transfer_s(n_bytes, max(trace_t, 0.0))
        return self.busy_until


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delay_s: float,
                not_before: float, link: SerialLink | None = None, tally: Callable[[int], None] | None = None
                ) -> None:
    """Copy READER to WRITER, each chunk (and the final EOF) released DELAY_S after it was read
    (with a `link`: after it crossed the link, then DELAY_S); `tally` is told each chunk's size."""
    loop = asyncio.get_running_loop()
    loop_to_unix = time.time() - loop.time()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=QUEUE_CHUNKS)

    async def take() -> None:
        while True:
            data = await reader.read(CHUNK_BYTES)
            if tally is not None:
                tally(len(data))
            # An empty read is the peer's FIN: it crosses the link too, so it is delayed like data.
            sent = max(loop.time(), not_before)
            if link is not None and data:
                sent = link.finish(len(data), sent, loop_to_unix)
            await queue.put((sent + delay_s, data))
            if not data:
                return

    async def give() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    async with asyncio.TaskGroup() as group:
        group.create_task(take())
        group.create_task(give())


async def _relay(cfg: ProxyConfig, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                 links: tuple[SerialLink, SerialLink] | None = None, counts: ByteCount | None = None) -> None:
    loop = asyncio.get_running_loop()
    delay_s = cfg.delay_ms / 1e3
    # On a real link the client's first bytes leave only after the handshake's round trip.
    first_bytes_at = loop.time() + 2 * delay_s
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(cfg.target_host, cfg.target_port)
    except OSError:
        client_writer.close()  # the server is down: the client sees its connection closed
        return
    try:
        async with asyncio.TaskGroup() as group:
            up, down = links if links is not None else (None, None)
            up_tally = down_tally = None
            if counts is not None:
                def up_tally(n: int) -> None:
                    counts.up += n

                def down_tally(n: int) -> None:
                    counts.down += n
            group.create_task(_pump(client_reader, upstream_writer, delay_s=delay_s, not_before=first_bytes_at,
                                    link=up, tally=up_tally))
            group.create_task(_pump(upstream_reader, client_writer, delay_s=delay_s, not_before=0.0, link=down,
                                    tally=down_tally))
    except* (ConnectionError, OSError):
        pass  # one side reset the connection; closing both below is all a proxy can do
    finally:
        for writer in (upstream_writer, client_writer):
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def serve(cfg: ProxyConfig, *, ready: asyncio.Event | None = None, counts: ByteCount | None = None) -> None:
    """Accept and relay until cancelled; with `counts`, add every relayed byte to it."""
    # One serial link per direction, shared by every connection: they compete for it as on a real link.
    links = None
    if cfg.trace is not None:
        links = (SerialLink(cfg.trace, cfg.trace_start_unix), SerialLink(cfg.trace, cfg.trace_start_unix))
    server = await asyncio.start_server(lambda r, w: _relay(cfg, r, w, links, counts), cfg.listen_host,
                                        cfg.listen_port)
    async with server:
        if ready is not None:
            ready.set()
        await server.serve_forever()


def raise_priority(niceness: int = -10) -> bool:
    """Best effort: run ahead of ordinary processes (needs root). True if it worked.

    netem delays packets in the kernel, where the host's CPU load does not reach; a user-space
    emulation waits its turn for a CPU like any process, and on a busy host that wait would end up in
    the emulated RTT. A raised priority keeps most of it out (the testbed runs as root anyway).
    """
    try:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    except OSError:
        return False
    return True


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="delay_proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=_host_port, required=True, help="HOST:PORT to accept on")
    parser.add_argument("--target", type=_host_port, required=True, help="HOST:PORT of the real server")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay per direction (RTT/2)")
    parser.add_argument("--trace", type=Path, default=None, help="bandwidth trace replayed in each direction")
    parser.add_argument("--trace-start-unix", type=float, default=None,
                        help="wall-clock time of trace time 0 (default: when the proxy starts)")
    args = parser.parse_args(argv)
    trace = read_trace(args.trace) if args.trace is not None else None
    start = args.trace_start_unix if args.trace_start_unix is not None else time.time()
    cfg = ProxyConfig(*args.listen, *args.target, delay_ms=args.delay_ms, trace=trace, trace_start_unix=start)
    raise_priority()

    async def run() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(serve(cfg, ready=ready))
        await ready.wait()
        replay = f", replaying trace {cfg.trace.name}" if cfg.trace is not None else ""
        print(f"{READY_LINE} on {cfg.listen_host}:{cfg.listen_port} -> {cfg.target_host}:{cfg.target_port}, "
              f"{cfg.delay_ms:g} ms each way{replay}", flush=True)
        await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
