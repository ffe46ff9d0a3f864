"""Issue 12's fuzz run: random and malformed input at every door of one real hub process while
a normal client works, then thousands of idle connections per door.

Phase 1 (``--seconds``, 90): sessions of random input (``bench/fuzz_inputs.py``) at every door
at once: native and Majordomo frames on the ZeroMQ port (pyzmq DEALERs), raw bytes on the same
port (ZMTP greetings, frames announcing far more than is sent), lines on a plain and a
``/dsjq-compat`` line listener, raw HTTP/1.1 requests (paths, query strings, headers, bodies,
chunked encoding, half-sent bodies), and messages on ``/ws/client``, ``/ws/worker`` and
``/ws/monitor``. Beside them a normal client submits ``--jobs`` jobs (2,000) at an even pace
and waits for each (``Client.run``), and one ``jobq worker`` (echo) runs them. Checks:

- ``hub_alive``: the hub process never died;
- ``no_tracebacks``: no ``Traceback`` in the hub's log (the exception lines are listed);
- ``no_http_5xx``: no 5xx answer to any HTTP request or WebSocket handshake;
- ``no_internal_errors``: no ``internal`` error answered at any door;
- ``normal_jobs_completed``: every job of the normal client completed with its own result;
- ``rss_within_2x``: the hub's RSS after the fuzz (and a settling second) is within 2x of its
  RSS before it (after a warm-up of the normal client).

Phase 2: ``--idle`` connections (2,000) to each of the ZeroMQ, line and HTTP ports, from
other loopback addresses than the normal client's (``--idle-peers`` of them from ``--idle-source``,
127.0.0.2: other users, each within the doors' per-address caps),
half of them silent from the start and half after one exchange (a ZeroMQ DEALER's ping, a line
``STATUS``, an HTTP keep-alive ``GET /health``). While they are open:

- ``idle_p50_within_2x``: the normal client's p50 latency (submit → result, one job at a time)
  is within 2x of its idle figure (the better of the ones just before the connections were
  opened and just after they were closed: other load on the machine drifts);
- ``health_answering``: ``GET /health`` on a new connection answers 200 within
  ``--health-wait`` seconds (10).

The run raises its own soft limit of open files to the hard limit (the hub inherits it) and
reports both. Prints one JSON document; exits 1 when a check fails (``failed_checks``).
``python -m bench.fuzz --help`` for the knobs (``--seconds 20 --jobs 500 --idle 500`` for a
short run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import psutil
import websockets
import zmq
import zmq.asyncio
from tests.helpers import Proc, free_port, jobq_command, start_worker, wait_for_hub

from bench import fuzz_inputs as inputs
from jobq.client.client import Client
from jobq.protocol import native

NORMAL = "fuzz-normal-service"


@dataclass
class Options:
    seconds: float = 90.0
    jobs: int = 2000
    idle: int = 2000
    samples: int = 200
    health_wait: float = 10.0
    lanes: int = 2
    #: Seconds between large messages (at each door in turn); 0: none.
    big_every: float = 2.0
    big_kinds: tuple[str, ...] = ("ws", "native", "http", "zmtp")
    hub_env: tuple[str, ...] = ()
    #: Where the idle connections come from (the normal client is 127.0.0.1).
    idle_source: str = "127.0.0.2"
    idle_peers: int = 40
    #: Seconds between the end of the fuzz and the RSS reading (and phase 2).
    settle: float = 5.0
    seed: int = 12
    hub_args: tuple[str, ...] = ()
    keep: bool = False


class Door:
    """What one door's fuzz sessions saw."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.samples: dict[str, list[str]] = {}

    def note(self, what: str, sample: str | None = None) -> None:
        self.counts[what] += 1
        if sample is not None:
            kept = self.samples.setdefault(what, [])
            if len(kept) < 5:
                kept.append(sample[:400])

    def report(self) -> dict[str, Any]:
        return {"counts": dict(sorted(self.counts.items())), "samples": self.samples}


# ---------------------------------------------------------------------------- the hub


class Hub:
    def __init__(self, run_dir: Path, extra: tuple[str, ...], env: tuple[str, ...] = ()) -> None:
        self.zmq_port, self.line_port, self.compat_port, self.http_port = (free_port() for _ in range(4))
        self.endpoint = f"tcp://127.0.0.1:{self.zmq_port}"
        args = jobq_command(
            "hub",
            "--store",
            f"sqlite:///{run_dir / 'jobq.db'}",
            "--zmq",
            self.endpoint,
            "--line",
            f"127.0.0.1:{self.line_port}",
            "--line",
            f"127.0.0.1:{self.compat_port}/dsjq-compat",
            "--http",
            f"127.0.0.1:{self.http_port}",
            "--name",
            "hub",
            *extra,
        )
        self.proc = Proc(args, run_dir / "hub.log", env=dict(item.split("=", 1) for item in env))
        wait_for_hub(self.endpoint, self.proc, timeout=60)
        self.ps = psutil.Process(self.proc.pid)

    def rss_mb(self) -> float | None:
        try:
            return round(self.ps.memory_info().rss / 2**20, 1)
        except psutil.Error:
            return None

    def tracebacks(self) -> dict[str, Any]:
        """How many tracebacks the log has, their exception lines (most frequent first), and
        how many lines were logged at level error."""
        text = self.proc.output()
        lines = text.splitlines()
        found: Counter[str] = Counter()
        for i, line in enumerate(lines):
            if "Traceback (most recent call last)" in line:
                last = next((x for x in lines[i + 1 :] if x and not x.startswith((" ", "Traceback"))), "?")
                found[last[:200]] += 1
        errors = sum(1 for line in lines if "level=error" in line or line.startswith("ERROR"))
        return {
            "count": text.count("Traceback (most recent call last)"),
            "exceptions": dict(found.most_common(15)),
            "error_lines": errors,
        }


async def http_get(port: int, path: str, timeout: float = 5.0) -> int | None:
    """The status of ``GET path`` on a new connection; None if no answer."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readline(), timeout)
        match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
        return int(match.group(1)) if match else None
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()


# ---------------------------------------------------------------------------- fuzz sessions


async def _drain(reader: asyncio.StreamReader, seconds: float, limit: int = 1 << 20) -> bytes:
    """What arrives within ``seconds`` (until EOF), up to ``limit`` bytes."""
    out = b""
    deadline = time.monotonic() + seconds
    with contextlib.suppress(TimeoutError, OSError):
        while len(out) < limit and (left := deadline - time.monotonic()) > 0:
            chunk = await asyncio.wait_for(reader.read(65536), left)
            if not chunk:
                break
            out += chunk
    return out


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


async def zmq_session(g: inputs.Gen, ctx: zmq.asyncio.Context, endpoint: str, door: Door) -> None:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        for _ in range(g.r.randrange(1, 10)):
            mdp = g.chance(0.35)
            frames = inputs.mdp_message(g) if mdp else inputs.native_message(g)
            if frames:
                await sock.send_multipart(frames)
                door.note("mdp_sent" if mdp else "native_sent")
        deadline = time.monotonic() + g.r.uniform(0.05, 0.3)
        while (left := deadline - time.monotonic()) > 0 and await sock.poll(int(left * 1000) + 1):
            reply = await sock.recv_multipart()
            door.note("replies")
            if reply[:1] != [inputs.HEADER] and any(b"internal error" in frame for frame in reply):
                door.note("error_internal", repr(reply)[:300])
            if reply and reply[0] == inputs.HEADER and len(reply) == 2:
                try:
                    message = native.decode_outbound(reply[1])
                except msgspec.MsgspecError:
                    door.note("undecodable_replies", repr(reply)[:300])
                    continue
                if isinstance(message, native.Error):
                    door.note(
                        f"error_{message.code}", message.message if message.code == "internal" else None
                    )
    finally:
        sock.close()


async def zmtp_session(g: inputs.Gen, port: int, door: Door) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        door.note(f"connect_{type(exc).__name__}")
        return
    try:
        writer.write(inputs.zmtp_bytes(g))
        await writer.drain()
        await _drain(reader, 0.05)
        door.note("raw_sessions")
    except OSError as exc:
        door.note(f"io_{type(exc).__name__}")
    finally:
        _close(writer)


async def line_session(g: inputs.Gen, port: int, compat: bool, door: Door) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        door.note(f"connect_{type(exc).__name__}")
        return
    try:
        for _ in range(g.r.randrange(1, 4)):
            writer.write(inputs.line_chunk(g))
            door.note("compat_chunks" if compat else "chunks")
        await writer.drain()
        out = await _drain(reader, g.r.uniform(0.05, 0.2))
        for line in out.split(b"\n"):
            if b"internal" in line:
                door.note("error_internal", line.decode(errors="replace"))
        if out:
            door.note("answered_sessions")
    except OSError as exc:
        door.note(f"io_{type(exc).__name__}")
    finally:
        _close(writer)


async def http_session(g: inputs.Gen, port: int, door: Door) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        door.note(f"connect_{type(exc).__name__}")
        return
    try:
        request, complete = inputs.http_request(g, port)
        writer.write(request)
        await writer.drain()
        out = await _drain(reader, 3.0 if complete else 0.2, limit=1 << 16)
        match = re.match(rb"HTTP/1\.[01] (\d{3})", out)
        if match is None:
            if complete:
                head, _, body = request.partition(b"\r\n\r\n")
                door.note("no_answer", f"{head[-300:]!r} + {len(body)} bytes of body {body[:100]!r}")
            else:
                door.note("incomplete_requests")
            return
        status = int(match.group(1))
        door.note(f"status_{status}")
        if status >= 500:
            door.note("http_5xx", f"{request[:300]!r} -> {out[:300]!r}")
        if b'"internal"' in out:
            door.note("error_internal", f"{request[:300]!r} -> {out[:300]!r}")
    except OSError as exc:
        door.note(f"io_{type(exc).__name__}")
    finally:
        _close(writer)


async def ws_session(g: inputs.Gen, port: int, door: Door) -> None:
    stream = g.r.choice(["client", "worker", "monitor"])
    try:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/ws/{stream}",
            open_timeout=5,
            close_timeout=1,
            ping_interval=None,
            max_size=None,
        )
    except websockets.InvalidStatus as exc:
        status = exc.response.status_code
        door.note(f"handshake_{status}")
        if status >= 500:
            door.note("http_5xx", f"/ws/{stream} handshake -> {status}")
        return
    except (OSError, TimeoutError, websockets.WebSocketException) as exc:
        door.note(f"connect_{type(exc).__name__}")
        return
    try:
        for _ in range(g.r.randrange(1, 8)):
            message = inputs.ws_message(g, stream)
            await ws.send(message)
            door.note(f"{stream}_sent")
        deadline = time.monotonic() + g.r.uniform(0.05, 0.2)
        while (left := deadline - time.monotonic()) > 0:
            raw = await asyncio.wait_for(ws.recv(), left)
            door.note("replies")
            with contextlib.suppress(ValueError):
                reply = json.loads(raw)
                if isinstance(reply, dict) and reply.get("type") == "error":
                    code = str(reply.get("error"))
                    door.note(f"error_{code}", str(reply)[:300] if code == "internal" else None)
    except TimeoutError:
        pass
    except websockets.ConnectionClosed as exc:
        close_code = exc.rcvd.code if exc.rcvd else None
        door.note(f"closed_{close_code}")
        if close_code == 1011:  # the server's own error
            door.note("error_internal", f"/ws/{stream} closed 1011: {exc.rcvd.reason if exc.rcvd else ''}")
    except (OSError, websockets.WebSocketException) as exc:
        door.note(f"io_{type(exc).__name__}")
    finally:
        with contextlib.suppress(Exception):
            await ws.close()


async def big_message(kind: str, hub: Hub, ctx: zmq.asyncio.Context, door: Door) -> None:
    """One large message at one door, the kinds issue 12 measured: a native submit over the
    payload limit (20 MiB), a ZMTP frame announcing 61 MiB of which 4 MiB are sent, an HTTP
    body announcing 7 MiB of which half is sent, a 9 MiB WebSocket message (over the 8 MiB
    limit). Each connection is closed once the message is (partly) sent."""
    if kind == "native":
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(hub.endpoint)
        body = msgspec.msgpack.encode(["submit", 1, [{"service": "fuzz", "payload": [b"x" * (20 << 20)]}]])
        await sock.send_multipart([native.HEADER, body])
        if await sock.poll(5000):
            reply = native.decode_outbound((await sock.recv_multipart())[1])
            door.note(f"native_{reply.code if isinstance(reply, native.Error) else type(reply).__name__}")
        sock.close()
        return
    if kind == "ws":
        async with websockets.connect(
            f"ws://127.0.0.1:{hub.http_port}/ws/client", max_size=None, close_timeout=1, ping_interval=None
        ) as ws:
            await ws.send('{"type": "ping", "pad": "' + "z" * (9 << 20) + '"}')
            with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 2)
            door.note(f"ws_closed_{ws.close_code}")
        return
    port = hub.zmq_port if kind == "zmtp" else hub.http_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if kind == "zmtp":
            greeting = inputs.zmtp_bytes(inputs.Gen(random.Random(0)))[:64]
            writer.write(greeting + b"\x02" + (61 << 20).to_bytes(8, "big") + b"y" * (4 << 20))
        else:
            head = (
                f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {7 << 20}\r\n\r\n"
            )
            writer.write(head.encode() + b"[" * (7 << 19))
        await writer.drain()
        answer = await _drain(reader, 0.5, limit=4096)
        door.note(f"{kind}_answered" if answer else f"{kind}_silent")
    except OSError as exc:
        door.note(f"{kind}_{type(exc).__name__}")
    finally:
        _close(writer)


async def big_loop(
    stop: asyncio.Event, every: float, kinds: tuple[str, ...], hub: Hub, ctx: zmq.asyncio.Context, door: Door
) -> None:
    """A large message every ``every`` seconds, of each kind in turn."""
    for n in range(10**9):
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            return
        kind = kinds[n % len(kinds)]
        door.note(f"{kind}_sent")
        try:
            await asyncio.wait_for(big_message(kind, hub, ctx, door), 15)
        except Exception as exc:
            door.note(f"driver_{type(exc).__name__}", repr(exc)[:200])


async def _loop(stop: asyncio.Event, session: Callable[[], Awaitable[None]], door: Door) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(session(), 15)
        except TimeoutError:
            door.note("session_timeouts")
        except Exception as exc:  # the fuzzer's own trouble: counted, never fatal
            door.note(f"driver_{type(exc).__name__}", repr(exc)[:200])
        await asyncio.sleep(0)


# ---------------------------------------------------------------------------- the normal client


async def normal_jobs(endpoint: str, n: int, seconds: float) -> dict[str, Any]:
    """``n`` jobs submitted at an even pace over ``seconds``, each waited for."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    wrong = 0

    async with Client(endpoint, timeout=30) as client:

        async def one(i: int) -> None:
            nonlocal wrong
            payload = f"normal {i}".encode()
            started = time.perf_counter()
            try:
                event = await client.run(NORMAL, payload, wait_timeout=120)
            except Exception as exc:
                errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
                return
            latencies.append(time.perf_counter() - started)
            if event.state != "completed" or b"".join(event.result or []) != payload:
                wrong += 1
                errors[f"{event.state}: {event.error}"[:200]] += 1

        began = time.monotonic()
        tasks = []
        for i in range(n):
            await asyncio.sleep(max(0.0, began + i * seconds / n - time.monotonic()))
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.gather(*tasks)
    latencies.sort()
    return {
        "jobs": n,
        "completed": len(latencies) - wrong,
        "errors": dict(errors.most_common(10)),
        **_percentiles(latencies),
    }


def _percentiles(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50_ms": None, "p99_ms": None}
    ordered = sorted(samples)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 2),
    }


async def latency(endpoint: str, samples: int) -> dict[str, float | None]:
    """The normal client's submit → result time, one job at a time."""
    out = []
    async with Client(endpoint, timeout=30) as client:
        for i in range(samples):
            started = time.perf_counter()
            event = await client.run(NORMAL, f"probe {i}", wait_timeout=60)
            if event.state == "completed":
                out.append(time.perf_counter() - started)
    return _percentiles(out)


async def jobs_in_store(endpoint: str) -> dict[str, int] | None:
    """The store's jobs by state (what the fuzz left in it explains part of the RSS)."""
    try:
        async with Client(endpoint, timeout=10) as client:
            found: dict[str, int] = (await client.stats())["jobs"]["by_state"]
            return found
    except Exception:
        return None


# ---------------------------------------------------------------------------- phase 2


class Idle:
    """Idle connections to one port from ``sources`` (in turn); half of them made one exchange
    first."""

    def __init__(self, kind: str, port: int, sources: list[str]) -> None:
        self.kind = kind
        self.port = port
        self.sources = sources
        self.socks: list[socket.socket] = []
        self.failed: Counter[str] = Counter()
        self.first_answers: Counter[str] = Counter()

    async def open(self, n: int, ctx: zmq.asyncio.Context, dealers: list[zmq.asyncio.Socket]) -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with gate:
                source = self.sources[i % len(self.sources)]
                if self.kind == "zmq" and i % 2:
                    await self._dealer(ctx, dealers, source)
                    return
                sock = socket.socket()
                sock.setblocking(False)
                try:
                    sock.bind((source, 0))
                    await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", self.port)), 10)
                    if i % 2:
                        await self._exchange(loop, sock)
                except (OSError, TimeoutError) as exc:
                    sock.close()
                    self.failed[type(exc).__name__] += 1
                    return
                self.socks.append(sock)

        await asyncio.gather(*(one(i) for i in range(n)))

    async def _exchange(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        if self.kind == "line":
            await loop.sock_sendall(sock, b"STATUS 1\n")
        else:
            request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n"
            await loop.sock_sendall(sock, request.encode())
        answer = await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)
        first = answer.split(b"\r\n" if self.kind == "http" else b"\n", 1)[0]
        self.first_answers[first.decode(errors="replace")[:40] or "(closed)"] += 1

    async def _dealer(self, ctx: zmq.asyncio.Context, dealers: list[zmq.asyncio.Socket], source: str) -> None:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://{source}:0;127.0.0.1:{self.port}")
        await sock.send_multipart([native.HEADER, native.encode(native.Ping(rid=1))])
        if await sock.poll(10_000):
            await sock.recv_multipart()
            dealers.append(sock)
            self.first_answers["pong"] += 1
        else:
            self.failed["no_pong"] += 1
            sock.close()

    def still_open(self) -> int:
        """Connections the hub has not closed (what they received is read and dropped)."""
        count = 0
        for sock in self.socks:
            try:
                while sock.recv(65536):
                    pass
            except BlockingIOError:
                count += 1
            except OSError:
                pass
        return count

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


async def idle_phase(hub: Hub, opts: Options, baseline_p50: float | None) -> dict[str, Any]:
    """``opts.idle`` idle connections per door. The client's p50 with them is compared with its
    idle figure measured around them (the better of just before and just after, so drift in the
    machine's load counts for neither side); ``baseline_p50`` (before the fuzz) is reported."""
    before = await latency(hub.endpoint, opts.samples)
    ctx = zmq.asyncio.Context()
    ctx.set(zmq.MAX_SOCKETS, opts.idle + 1024)
    dealers: list[zmq.asyncio.Socket] = []
    src = opts.idle_source
    # Spread over --idle-peers addresses: each door caps connections per client address (64 on
    # HTTP and line), so one address would mostly measure refusals; many peers fill the door.
    base = src.rsplit(".", 1)
    sources = [f"{base[0]}.{int(base[1]) + k}" for k in range(max(1, opts.idle_peers))]
    doors = [
        Idle("zmq", hub.zmq_port, sources),
        Idle("line", hub.line_port, sources),
        Idle("http", hub.http_port, sources),
    ]
    try:
        started = time.monotonic()
        for door in doors:
            await door.open(opts.idle, ctx, dealers)
        opened_in = time.monotonic() - started
        health: list[int | None] = []
        first_ok = None
        health_started = time.monotonic()
        while time.monotonic() - health_started < opts.health_wait:
            status = await http_get(hub.http_port, "/health", timeout=max(0.5, opts.health_wait / 4))
            health.append(status)
            if status == 200:
                first_ok = round(time.monotonic() - health_started, 3)
                break
            await asyncio.sleep(0.2)
        during = await latency(hub.endpoint, opts.samples)
        health_after = await http_get(hub.http_port, "/health")
        still_open = {d.kind: d.still_open() for d in doors}
        rss = hub.rss_mb()
    finally:
        for door in doors:
            door.close()
        for sock in dealers:
            sock.close()
        ctx.term()
    after = await latency(hub.endpoint, opts.samples)
    p50 = during["p50_ms"]
    idle = min((x for x in (before["p50_ms"], after["p50_ms"]) if x is not None), default=None)
    return {
        "connections_per_door": opts.idle,
        "opened": {d.kind: len(d.socks) + (len(dealers) if d.kind == "zmq" else 0) for d in doors},
        "idle_source": src,
        "idle_peers": len(sources),
        "open_failures": {d.kind: dict(d.failed) for d in doors},
        "first_answers": {d.kind: dict(d.first_answers.most_common(5)) for d in doors},
        "opened_in_s": round(opened_in, 2),
        "still_open_at_end": still_open,
        "p50_ms_before_fuzz": baseline_p50,
        "p50_ms_before": before["p50_ms"],
        "p50_ms_with_connections": p50,
        "p50_ms_after": after["p50_ms"],
        "p99_ms_before": before["p99_ms"],
        "p99_ms_with_connections": during["p99_ms"],
        "p99_ms_after": after["p99_ms"],
        "reference_p50_ms": idle,
        "health_statuses": Counter(str(s) for s in health),
        "health_first_200_s": first_ok,
        "health_after_latency_probe": health_after,
        "hub_rss_mb_with_connections": rss,
        "checks": {
            "idle_p50_within_2x": p50 is not None and idle is not None and p50 <= 2 * idle,
            "health_answering": first_ok is not None,
        },
    }


# ---------------------------------------------------------------------------- the run


def raise_fd_limit() -> dict[str, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return {"soft_before": soft, "soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "hard": hard}


async def run(opts: Options, tmp: Path) -> dict[str, Any]:
    fds = raise_fd_limit()
    rng = random.Random(opts.seed)
    hub = Hub(tmp, opts.hub_args, opts.hub_env)
    worker: Proc | None = None
    doors = {name: Door() for name in ("zmq", "zmtp_raw", "line", "http", "ws", "big")}
    result: dict[str, Any] = {"seconds": opts.seconds, "fd_limit": fds}
    try:
        worker = start_worker(
            tmp, hub.endpoint, service=NORMAL, handler="echo", concurrency=4, name="normal-worker"
        )
        async with Client(hub.endpoint, timeout=30) as client:
            deadline = time.monotonic() + 30
            while not await client.workers():
                if time.monotonic() > deadline:
                    raise RuntimeError("the normal worker did not connect")
                await asyncio.sleep(0.05)
        idle_before = await latency(hub.endpoint, opts.samples)  # also the warm-up
        rss_start = hub.rss_mb()
        rss_samples: list[float] = []
        stop = asyncio.Event()
        ctx = zmq.asyncio.Context()
        ctx.set(zmq.MAX_SOCKETS, 4096)
        seeds = iter(range(10**6))

        def gen() -> inputs.Gen:
            return inputs.Gen(random.Random(rng.random() + next(seeds)))

        loops = []
        for _ in range(opts.lanes):
            loops += [
                _loop(stop, partial(zmq_session, gen(), ctx, hub.endpoint, doors["zmq"]), doors["zmq"]),
                _loop(stop, partial(line_session, gen(), hub.line_port, False, doors["line"]), doors["line"]),
                _loop(
                    stop, partial(line_session, gen(), hub.compat_port, True, doors["line"]), doors["line"]
                ),
                _loop(stop, partial(http_session, gen(), hub.http_port, doors["http"]), doors["http"]),
                _loop(stop, partial(ws_session, gen(), hub.http_port, doors["ws"]), doors["ws"]),
            ]
        raw = doors["zmtp_raw"]
        if opts.lanes > 0:
            loops.append(_loop(stop, partial(zmtp_session, gen(), hub.zmq_port, raw), raw))

        async def sample_rss() -> None:
            while not stop.is_set():
                if (rss := hub.rss_mb()) is not None:
                    rss_samples.append(rss)
                await asyncio.sleep(1)

        if opts.big_every > 0:
            loops.append(big_loop(stop, opts.big_every, opts.big_kinds, hub, ctx, doors["big"]))
        fuzzers = [asyncio.ensure_future(x) for x in (*loops, sample_rss())]
        started = time.monotonic()
        try:
            normal = await normal_jobs(hub.endpoint, opts.jobs, opts.seconds)
            await asyncio.sleep(max(0.0, opts.seconds - (time.monotonic() - started)))
        finally:
            stop.set()
            await asyncio.gather(*fuzzers, return_exceptions=True)
            ctx.term()
        fuzz_wall = time.monotonic() - started
        await asyncio.sleep(opts.settle)
        rss_end = hub.rss_mb()
        alive_after_fuzz = hub.proc.alive()
        stored = await jobs_in_store(hub.endpoint) if alive_after_fuzz else None
        tracebacks = hub.tracebacks()
        internal = sum(d.counts.get("error_internal", 0) for d in doors.values())
        http_5xx = doors["http"].counts.get("http_5xx", 0) + doors["ws"].counts.get("http_5xx", 0)
        result["phase1"] = {
            "wall_s": round(fuzz_wall, 1),
            "normal_client": normal,
            "normal_p50_ms_idle_before": idle_before["p50_ms"],
            "doors": {name: d.report() for name, d in doors.items()},
            "http_5xx": http_5xx,
            "internal_errors": internal,
            "hub_rss_mb": {"start": rss_start, "end": rss_end, "peak": max(rss_samples, default=None)},
            "jobs_in_store": stored,
            "hub_tracebacks": tracebacks,
            "hub_alive": alive_after_fuzz,
        }
        checks = {
            "hub_alive": alive_after_fuzz,
            "no_tracebacks": tracebacks["count"] == 0,
            "no_http_5xx": http_5xx == 0,
            "no_internal_errors": internal == 0,
            "normal_jobs_completed": normal["completed"] == opts.jobs,
            "rss_within_2x": rss_start is not None and rss_end is not None and rss_end <= 2 * rss_start,
        }
        if alive_after_fuzz and opts.idle > 0:
            phase2 = await idle_phase(hub, opts, idle_before["p50_ms"])
            result["phase2"] = phase2
            checks.update(phase2.pop("checks"))
            checks["hub_alive"] = checks["hub_alive"] and hub.proc.alive()
            after = hub.tracebacks()
            checks["no_tracebacks"] = after["count"] == 0
            result["phase2"]["hub_tracebacks"] = after["count"] - tracebacks["count"]
        result["checks"] = checks
        result["failed_checks"] = [name for name, ok in checks.items() if not ok]
        return result
    finally:
        if worker is not None:
            worker.close()
        hub.proc.terminate(10)
        hub.proc.close()


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fuzz", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    d = Options()
    parser.add_argument("--seconds", type=float, default=d.seconds, help="length of the fuzz phase")
    parser.add_argument("--jobs", type=int, default=d.jobs, help="the normal client's jobs during it")
    parser.add_argument(
        "--idle", type=int, default=d.idle, help="idle connections per door in phase 2 (0: skip)"
    )
    parser.add_argument(
        "--idle-source",
        default=d.idle_source,
        help="first source address of the idle connections (127.0.0.1: the client's)",
    )
    parser.add_argument(
        "--idle-peers",
        type=int,
        default=d.idle_peers,
        help="addresses the idle connections come from, from --idle-source up (1: one peer)",
    )
    parser.add_argument("--samples", type=int, default=d.samples, help="jobs per latency figure")
    parser.add_argument(
        "--health-wait", type=float, default=d.health_wait, help="seconds /health may take to answer 200"
    )
    parser.add_argument("--lanes", type=int, default=d.lanes, help="concurrent fuzz sessions per door")
    parser.add_argument(
        "--big-every", type=float, default=d.big_every, help="seconds between large messages (0: none)"
    )
    parser.add_argument(
        "--big-kinds", default=",".join(d.big_kinds), help="which large messages (ws,native,http,zmtp)"
    )
    parser.add_argument(
        "--hub-env", action="append", default=[], help="KEY=VALUE in the hub's environment (repeatable)"
    )
    parser.add_argument(
        "--settle", type=float, default=d.settle, help="seconds after the fuzz before RSS is read and phase 2"
    )
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--hub-arg", action="append", default=[], help="extra argument for the hub (repeatable)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directory (hub log, database)")
    a = parser.parse_args(argv)
    return Options(
        seconds=a.seconds,
        jobs=a.jobs,
        idle=a.idle,
        samples=a.samples,
        idle_source=a.idle_source,
        idle_peers=a.idle_peers,
        health_wait=a.health_wait,
        lanes=a.lanes,
        big_every=a.big_every,
        big_kinds=tuple(k for k in a.big_kinds.split(",") if k),
        hub_env=tuple(a.hub_env),
        settle=a.settle,
        seed=a.seed,
        hub_args=tuple(a.hub_arg),
        keep=a.keep,
    )


async def main() -> int:
    opts = parse()
    tmp = Path(tempfile.mkdtemp(prefix="jobq-fuzz-"))
    try:
        result = await run(opts, tmp)
    finally:
        if not opts.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    report = {
        "benchmark": "fuzz",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        **result,
        "ok": not result["failed_checks"],
    }
    if opts.keep:
        report["kept"] = str(tmp)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    try:
        import uvloop

        code = uvloop.run(main())
    except ImportError:
        code = asyncio.run(main())
    sys.exit(code)
