"""The HTTP door's limits against a real hub process (issue 12, findings 6 and 7): over-size
WebSocket messages leave no memory behind, partly received bodies and messages share the hub's
budget, idle and slow connections are cut, one client address cannot hold every connection, and
the probes answer when the door is full."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import gc
import os
import select
import socket
import time
import types
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
import websockets
import websockets.sync.client
from litestar import WebSocket
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import ConnectionClosed, PayloadTooBig
from websockets.server import ServerProtocol

from jobq.doors.http.limits import PROBE_HEADER_TIMEOUT, PROBE_ROOM
from tests.helpers import Proc, free_port, running_hub
from tests.http_helpers import HttpHub, start_http_hub

MiB = 1024 * 1024


def rss(proc: Proc) -> int:
    return int(psutil.Process(proc.pid).memory_info().rss)


@contextmanager
def raw(hub: HttpHub | int, source: str = "127.0.0.1") -> Iterator[socket.socket]:
    """A TCP connection to the door from ``source`` (any 127.x address is this machine)."""
    port = hub if isinstance(hub, int) else hub.port
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    try:
        yield sock
    finally:
        sock.close()


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the door sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def request(hub: HttpHub, method: str, path: str, extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{hub.port}\r\n{extra}\r\n".encode()


def deflated_message(port: int, text: bytes) -> tuple[bytes, bytes]:
    """A WebSocket handshake asking for permessage-deflate, then one compressed, masked text
    frame: a few KiB on the wire that decompress to ``len(text)`` bytes."""
    key = base64.b64encode(os.urandom(16)).decode()
    handshake = (
        f"GET /ws/client HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    ).encode()
    compressor = zlib.compressobj(wbits=-12)  # the door offers client_max_window_bits=12
    data = (compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    mask = os.urandom(4)
    key_stream = int.from_bytes((mask * (len(data) // 4 + 1))[: len(data)], "big")
    masked = (int.from_bytes(data, "big") ^ key_stream).to_bytes(len(data), "big")
    head = bytes([0xC1, 0x80 | 127]) + len(data).to_bytes(8, "big")  # FIN, RSV1 (deflated), text
    return handshake, head + mask + masked


def close_code(stream: bytes) -> int | None:
    """The code of the close frame among the frames the door sent after its 101 answer."""
    _, _, frames = stream.partition(b"\r\n\r\n")
    while len(frames) >= 2:
        opcode, length = frames[0] & 0x0F, frames[1] & 0x7F
        start = 2
        if length == 126:
            length, start = int.from_bytes(frames[2:4], "big"), 4
        elif length == 127:
            length, start = int.from_bytes(frames[2:10], "big"), 10
        payload = frames[start : start + length]
        if opcode == 8:
            return int.from_bytes(payload[:2], "big")
        frames = frames[start + length :]
    return None


@functools.cache
def _over_size(port: int, size: int) -> tuple[bytes, bytes]:
    return deflated_message(port, b"x" * size)


def send_over_size(hub: HttpHub | int, size: int = 9 * MiB) -> int | None:
    """One /ws/client connection sending one deflated message of ``size`` bytes (over the
    door's 8 MiB limit once decompressed); the close code the door answered with."""
    handshake, frame = _over_size(hub if isinstance(hub, int) else hub.port, size)
    with raw(hub) as sock:
        sock.sendall(handshake)
        answer = b""
        while b"\r\n\r\n" not in answer:  # the 101 first: what follows the handshake unasked is lost
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 101"), answer
        sock.sendall(frame)
        return close_code(answer + read_all(sock))


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpHub]:
    started = limited_hub(tmp_path_factory.mktemp("limits"), header_timeout=1)
    yield started
    started.proc.close()


@pytest.fixture(scope="module")
def patient_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpHub]:
    """Idle connections live long enough here for a test to fill the door with them."""
    started = limited_hub(tmp_path_factory.mktemp("limits-patient"), header_timeout=10)
    yield started
    started.proc.close()


def limited_hub(tmp_path: Path, header_timeout: float) -> HttpHub:
    return start_http_hub(
        tmp_path,
        [
            "--http-header-timeout",
            str(header_timeout),
            "--http-body-timeout",
            "2",
            "--http-keepalive",
            "1",
            "--http-max-per-peer",
            "8",
            "--http-max-connections",
            "40",
        ],
    )


def settled(hub: HttpHub) -> str:
    """The hub's metrics once no partly received byte is held (earlier tests' connections gone)."""
    deadline = time.monotonic() + 10
    while "jobq_inflight_bytes 0.0" not in (metrics := httpx.get(hub.url + "/metrics").text):
        assert time.monotonic() < deadline, [line for line in metrics.splitlines() if "inflight" in line]
        time.sleep(0.05)
    return metrics


# ------------------------------------------------------------------ finding 6: memory


def test_over_size_websocket_messages_leave_no_memory_behind(tmp_path: Path, procs: list[Proc]) -> None:
    """Each refused 9 MiB message was decompressed up to the 8 MiB limit, and the exception
    that refused it kept that buffer in a reference cycle: ~8 MB more per message."""
    hub = start_http_hub(tmp_path)
    procs.append(hub.proc)
    for _ in range(3):  # warm up the allocator
        assert send_over_size(hub) == 1009
    before = rss(hub.proc)
    for _ in range(20):
        assert send_over_size(hub) == 1009
    time.sleep(0.3)
    grown = rss(hub.proc) - before
    assert grown < 40 * MiB, f"hub RSS grew by {grown / MiB:.0f} MiB over 20 refused messages"


def requests_and_a_stream(port: int) -> None:
    """A REST request, a refused one, a body its client gives up half-way, and a WebSocket
    stream that ends normally."""
    with raw(port) as sock:
        sock.sendall(
            f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {2 * MiB}\r\n\r\n".encode()
            + b'{"type": "echo", "payload": "'
            + b"z" * MiB
        )
        time.sleep(0.2)
    for path in ("/api/stats", "/api/jobs/9223372036854775808"):
        with raw(port) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
            )
            assert read_all(sock).startswith(b"HTTP/1.1 ")
    for stream in ("/ws/client", "/ws/worker"):
        with websockets.sync.client.connect(f"ws://127.0.0.1:{port}{stream}") as ws:
            ws.recv()
            for bad in ("{", "[" * 5000, '{"type": "cancel_job", "job_id": 77}', '{"type": "ping", "id": [1'):
                ws.send(bad)
                assert '"error"' in ws.recv()
            ws.send('{"type": "ping"}')
            ws.recv()


#: What a connection makes on the hub's side, which must never wait for the cycle collector.
SERVER_SIDE = (HttpToolsProtocol, WebSocketsSansIOProtocol, ServerProtocol, WebSocket, PayloadTooBig)
_PACKAGES = ("/uvicorn/", "/websockets/", "/litestar/", "/jobq/")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Litestar's, building the app in-process
async def test_closed_connections_leave_nothing_to_the_cycle_collector() -> None:
    """With the collector off, what closed connections made on the hub's side (protocols,
    websockets' parser, Litestar's socket, an exception with the frames that raised it) is
    all freed by reference counting: ``gc.collect()`` finds none of it."""
    port = free_port()
    async with running_hub(http=f"127.0.0.1:{port}"):
        await asyncio.to_thread(requests_and_a_stream, port)  # warm up (imports, caches)
        gc.collect()
        gc.disable()
        try:
            for _ in range(3):
                assert await asyncio.to_thread(send_over_size, port) == 1009
            await asyncio.to_thread(requests_and_a_stream, port)
            await asyncio.sleep(0.3)  # the connections' connection_lost
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            left = [
                f"{o.f_code.co_name}@{o.f_code.co_filename}:{o.f_lineno}"
                if isinstance(o, types.FrameType)
                else type(o).__name__
                for o in gc.garbage
                if isinstance(o, SERVER_SIDE)
                or (isinstance(o, types.FrameType) and any(p in o.f_code.co_filename for p in _PACKAGES))
            ]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert left == [], "\n".join(left)


# ------------------------------------------------------------------ finding 6: the budget


def test_partly_received_bodies_share_the_hubs_budget(hub: HttpHub) -> None:
    """Declared bodies reserve their length at once: 36 bodies of 7 MiB (252 MiB) fit the
    256 MiB budget, the 37th is refused 503 busy with Retry-After, and once some are gone (the
    client vanishes, or its body is cut for being slow) there is room again."""
    settled(hub)
    body_head = request(
        hub, "POST", "/api/jobs", f"Content-Type: application/json\r\nContent-Length: {7 * MiB}\r\n"
    )
    held: list[socket.socket] = []
    try:
        for i in range(36):
            source = f"127.0.1.{i // 8 + 1}"  # 8 per client address at most here
            sock = socket.create_connection(("127.0.0.1", hub.port), timeout=10, source_address=(source, 0))
            sock.sendall(body_head + b'{"type": "echo", "payload": "')
            held.append(sock)
        time.sleep(0.3)
        with raw(hub, "127.0.2.1") as sock:
            sock.sendall(body_head + b"{")
            answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b"busy: too much partly received data" in answer and b"retry-after: 1" in answer.lower()
        metrics = httpx.get(hub.url + "/metrics").text
        assert "jobq_http_busy_refusals_total 0.0" not in metrics
    finally:
        for sock in held:
            sock.close()
    settled(hub)  # every reservation given back
    submitted = httpx.post(hub.url + "/api/jobs", json={"type": "echo", "payload": "x" * MiB})
    assert submitted.status_code == 201


async def test_a_partly_received_websocket_message_that_does_not_fit_is_refused_1013(hub: HttpHub) -> None:
    """With the budget nearly spent by declared bodies, a WebSocket message that grows past what
    is left closes its stream with 1013 (try again later); the bodies' bytes come back."""
    settled(hub)
    body_head = request(
        hub, "POST", "/api/jobs", f"Content-Type: application/json\r\nContent-Length: {7 * MiB}\r\n"
    )
    held = []
    try:
        for i in range(36):  # 252 of 256 MiB
            sock = socket.create_connection(
                ("127.0.0.1", hub.port), timeout=10, source_address=(f"127.0.3.{i // 8 + 1}", 0)
            )
            sock.sendall(body_head)
            held.append(sock)
        await asyncio.sleep(0.3)
        async with websockets.connect(hub.ws + "/ws/client", max_size=None, compression=None) as ws:
            await ws.recv()

            async def send_then_read() -> None:  # the door may close it while we still send
                await ws.send("y" * (6 * MiB))  # under the 8 MiB limit, over what is left
                await ws.recv()

            with pytest.raises(ConnectionClosed) as closed:
                await send_then_read()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        assert "busy" in closed.value.rcvd.reason
    finally:
        for sock in held:
            sock.close()
    settled(hub)


# ------------------------------------------------------------------ finding 7: timeouts


def test_an_idle_connection_is_cut_after_the_header_timeout(hub: HttpHub) -> None:
    with raw(hub) as sock:
        started = time.monotonic()
        answer = read_all(sock)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"no request line and headers within 1s" in answer
    assert 0.8 < waited < 4


def trickle(sock: socket.socket, piece: bytes, limit: float = 8.0) -> tuple[float, bytes]:
    """Send ``piece`` every 0.1 s until the door answers or closes: how long that took, and
    what it sent."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if select.select([sock], [], [], 0.1)[0]:
            break
        try:
            sock.sendall(piece)
        except OSError:
            break
    return time.monotonic() - started, read_all(sock)


def test_headers_that_trickle_are_cut(hub: HttpHub) -> None:
    with raw(hub) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        took, answer = trickle(sock, b"X-Slow: 1\r\n")
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert took < 4


def test_a_body_that_trickles_is_cut_and_its_budget_given_back(hub: HttpHub) -> None:
    with raw(hub) as sock:
        sock.sendall(
            request(hub, "POST", "/api/jobs", "Content-Type: application/json\r\nContent-Length: 1000\r\n")
        )
        took, answer = trickle(sock, b" ")
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"the request body did not arrive within 2s" in answer
    assert 1.5 < took < 5
    metrics = settled(hub)
    assert "jobq_http_timeouts_total 0.0" not in metrics


def test_a_websocket_message_that_trickles_is_cut_1008(hub: HttpHub) -> None:
    """A message of 100 kB whose first kilobyte came, then nothing: closed with 1008 after the
    body timeout (2 s here), and the bytes it held go back to the budget."""
    handshake, _ = deflated_message(hub.port, b"")
    with raw(hub) as sock:
        sock.sendall(
            handshake.replace(
                b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n", b""
            )
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 101"), answer
        mask = os.urandom(4)
        sock.sendall(bytes([0x81, 0x80 | 127]) + (100_000).to_bytes(8, "big") + mask + b"\0" * 1000)
        time.sleep(0.3)
        assert "jobq_inflight_bytes 0.0" not in httpx.get(hub.url + "/metrics").text
        started = time.monotonic()
        code = close_code(answer + read_all(sock))
    assert code == 1008
    assert 1 < time.monotonic() - started < 5
    settled(hub)


def test_an_idle_kept_alive_connection_is_closed(hub: HttpHub) -> None:
    with raw(hub) as sock:
        sock.sendall(request(hub, "GET", "/health"))
        started = time.monotonic()
        answer = read_all(sock)  # the answer, then the close after the keep-alive time
        assert answer.startswith(b"HTTP/1.1 200") and b'"status":"ok"' in answer
        assert time.monotonic() - started < 4


# ------------------------------------------------------------------ finding 7: who holds connections


def test_one_peer_cannot_hold_every_connection(patient_hub: HttpHub) -> None:
    """8 idle connections from one address are its share: its 9th is answered 503 and closed,
    while another address is served, /health included."""
    hub = patient_hub
    held = []
    try:
        for _ in range(8):
            sock = socket.create_connection(
                ("127.0.0.1", hub.port), timeout=10, source_address=("127.0.0.2", 0)
            )
            held.append(sock)
        time.sleep(0.2)
        with raw(hub, "127.0.0.2") as sock:
            answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"too many connections from 127.0.0.2" in answer
        assert httpx.get(hub.url + "/health").status_code == 200
        assert httpx.get(hub.url + "/api/stats").status_code == 200
    finally:
        for sock in held:
            sock.close()


def test_probes_answer_when_the_door_is_full(patient_hub: HttpHub) -> None:
    """Past --http-max-connections (40 here) every request gets 503 but /health and /ready
    (/ready says the door is full)."""
    hub = patient_hub
    held = []
    try:
        for i in range(41):
            held.append(
                socket.create_connection(
                    ("127.0.0.1", hub.port), timeout=10, source_address=(f"127.0.4.{i // 8 + 1}", 0)
                )
            )
        time.sleep(0.2)
        with httpx.Client(base_url=hub.url) as client:
            assert client.get("/api/stats").status_code == 503
            assert client.get("/health").status_code == 200
            ready = client.get("/ready")
            assert ready.status_code == 503 and "more than 40 connections" in ready.json()["reason"]
    finally:
        for sock in held:
            sock.close()
    # once they are gone, the door takes work again
    deadline = time.monotonic() + 5
    while httpx.get(hub.url + "/ready").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_idle_connections_cannot_fill_the_probe_room(patient_hub: HttpHub) -> None:
    """Idle connections past --http-max-connections and its probe room too: those let into the
    room are cut within a second, so /health answers 200 at once however many wait."""
    hub = patient_hub
    held = []
    try:
        for i in range(40 + PROBE_ROOM + 20):
            with contextlib.suppress(OSError):
                held.append(
                    socket.create_connection(
                        ("127.0.0.1", hub.port), timeout=10, source_address=(f"127.0.5.{i // 8 + 1}", 0)
                    )
                )
        time.sleep(PROBE_HEADER_TIMEOUT + 0.5)  # the idle ones in the probe room are cut
        with httpx.Client(base_url=hub.url) as client:
            health = client.get("/health")
            assert health.status_code == 200
            assert health.headers.get("connection") == "close"  # one probe per room place
    finally:
        for sock in held:
            sock.close()


def test_idle_connections_cannot_lock_the_door(hub: HttpHub) -> None:
    """Idle connections from many addresses fill the door, and are cut after the header
    timeout: the door answers again by itself."""
    held = []
    try:
        for i in range(48):
            held.append(
                socket.create_connection(
                    ("127.0.0.1", hub.port), timeout=10, source_address=(f"127.0.5.{i // 8 + 1}", 0)
                )
            )
        time.sleep(2)
        assert httpx.get(hub.url + "/api/stats").status_code == 200
    finally:
        for sock in held:
            sock.close()
