"""Issue 12, finding 6, on the ZeroMQ and line doors: partly received messages and lines of
every connection together stay within the hub's budget (``max_inflight``), a connection whose
message does not fit is closed with a reason, and nothing a refused or closed connection held
stays behind in a reference cycle (the hub's tuned collector would practically never free it).

The ZeroMQ peers here are raw TCP sockets speaking ZMTP by hand: a frame header announces a
size and the body follows (or not), as a slow or hostile peer would.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import struct
from collections.abc import AsyncIterator, Iterator

import pytest

from jobq.client.client import Client
from jobq.doors.line import LineDoor
from jobq.doors.zmq.router import ZmqRouter
from jobq.protocol import native, zmtp
from tests.helpers import eventually, running_hub

MiB = 1024 * 1024


def _address(server: object) -> tuple[str, int]:
    endpoint = server.door(ZmqRouter).endpoints[0]  # type: ignore[attr-defined]
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    return host, int(port)


def _header(size: int, more: bool = False) -> bytes:
    return bytes([zmtp.LONG | (zmtp.MORE if more else 0)]) + struct.pack(">Q", size)


async def _announce(address: tuple[str, int], size: int, sent: int = 1024) -> ZmtpPeer:
    """A DEALER that starts a message of ``size`` bytes and sends ``sent`` of them."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(zmtp.greeting(as_server=False) + zmtp.ready(b"DEALER") + _header(size) + bytes(sent))
    with contextlib.suppress(ConnectionError):  # refused before it was all sent
        await writer.drain()
    return ZmtpPeer(reader, writer)


class ZmtpPeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def refused(self, timeout: float = 5.0) -> bool:
        """True when the hub closed the connection (after an ERROR saying why, unless the close
        reset it: it was still sending); False if it stays open."""
        data = b""
        try:
            async with asyncio.timeout(timeout):
                while chunk := await self.reader.read(65536):
                    data += chunk
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        assert b"ERROR" in data and b"busy" in data, data
        return True

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
def no_gc() -> Iterator[None]:
    """As the hub runs (src/jobq/process.py): cycles are practically never collected."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _big_cycle_garbage(min_size: int = 256 * 1024) -> list[str]:
    """Large buffers only reachable through reference cycles (what gc.collect() would free)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = []
        for obj in gc.garbage:
            for ref in [obj, *gc.get_referents(obj)]:
                if isinstance(ref, bytes | bytearray | memoryview) and len(ref) >= min_size:
                    found.append(f"{type(ref).__name__} of {len(ref)} bytes in {type(obj).__name__}")
        return found
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.fixture
async def zmq_hub() -> AsyncIterator[object]:
    async with running_hub() as server:
        yield server


async def test_eight_connections_announcing_61_mib_frames_hold_at_most_the_budget() -> None:
    """The issue's reproduction: 8 x 61 MiB announced; the default budget (256 MiB) takes 4."""
    async with running_hub() as server:
        budget = server.hub.inflight
        assert budget.limit == 256 * MiB
        address = _address(server)
        peers = [await _announce(address, 61 * MiB) for _ in range(8)]
        try:
            await eventually(lambda: budget.used >= 4 * 61 * MiB, timeout=5)
            refused = [await peer.refused(timeout=0.5 if i < 4 else 5) for i, peer in enumerate(peers)]
            assert refused == [False] * 4 + [True] * 4
            assert budget.used == 4 * (61 * MiB + 9) <= budget.limit
            async with Client(server.door(ZmqRouter).endpoints[0], timeout=5) as client:
                assert await client.submit("svc", b"small messages still get through") > 0
        finally:
            for peer in peers:
                peer.close()
        await eventually(lambda: budget.used == 0, timeout=5)


async def test_a_message_that_completes_gives_its_bytes_back() -> None:
    async with running_hub(max_inflight=4 * MiB) as server:
        budget = server.hub.inflight
        address = _address(server)
        _, writer = await asyncio.open_connection(*address)
        body = native.encode(native.Ping(rid=7))
        # Two frames: the header frame whole, the body announced and sent in pieces.
        writer.write(zmtp.greeting(as_server=False) + zmtp.ready(b"DEALER"))
        writer.write(bytes([zmtp.MORE, len(native.HEADER)]) + native.HEADER + _header(len(body) + 3 * MiB))
        await writer.drain()
        await eventually(lambda: budget.used > 3 * MiB, timeout=5)
        # A second connection's message does not fit beside it.
        other = await _announce(address, 2 * MiB)
        assert await other.refused()
        other.close()
        assert budget.refused >= 1
        writer.write(bytes(len(body) + 3 * MiB))  # the rest: a malformed ping, answered "invalid"
        await writer.drain()
        await eventually(lambda: budget.used == 0, timeout=5)
        writer.close()


async def test_over_max_message_is_refused_at_its_header() -> None:
    async with running_hub(max_message=MiB) as server:
        peer = await _announce(_address(server), MiB + 1, sent=0)
        try:
            data = await asyncio.wait_for(peer.reader.read(), 5)
            assert b"ERROR" in data and b"larger than" in data
            assert server.hub.inflight.used == 0
        finally:
            peer.close()


async def test_refused_and_closed_zmq_connections_leave_no_cycles(no_gc: None) -> None:
    async with running_hub(max_inflight=24 * MiB) as server:
        budget = server.hub.inflight
        address = _address(server)
        peers = [await _announce(address, 7 * MiB, sent=5 * MiB) for _ in range(5)]
        await eventually(lambda: budget.used >= 3 * 7 * MiB, timeout=10)
        assert [await p.refused(timeout=0.5 if i < 3 else 5) for i, p in enumerate(peers)] == [
            False,
            False,
            False,
            True,
            True,
        ]
        for peer in peers:
            peer.close()
        await eventually(lambda: budget.used == 0, timeout=5)
        await asyncio.sleep(0.1)
        assert _big_cycle_garbage() == []


# ---------------------------------------------------------------- lines


def _line_address(server: object) -> tuple[str, int]:
    host, port, _ = server.door(LineDoor).addresses[0]  # type: ignore[attr-defined]
    return host, port


async def _until_closed(reader: asyncio.StreamReader) -> bytes | None:
    """What the hub sent before it closed the connection; None when the close reset it (it
    closes with our bytes unread, and the kernel may then drop its last reply)."""
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        return None


async def _half_line(
    address: tuple[str, int], size: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(b"JOB " + b"x" * size)  # no newline yet
    await writer.drain()
    return reader, writer


async def test_long_lines_of_every_connection_together_stay_within_the_budget(no_gc: None) -> None:
    async with running_hub(line=["127.0.0.1:0"], line_max_line=MiB, max_inflight=3 * MiB) as server:
        budget = server.hub.inflight
        address = _line_address(server)
        held = [await _half_line(address, 900 * 1024) for _ in range(3)]
        await eventually(lambda: budget.used >= 3 * 900 * 1024, timeout=5)
        # The fourth connection's long line does not fit: refused with a reason, closed.
        reader, writer = await _half_line(address, 900 * 1024)
        reply = await _until_closed(reader)
        assert reply is None or (reply.startswith(b"ERR busy") and reply.endswith(b"\n")), reply
        writer.close()
        assert server.door(LineDoor).refused["busy"] == 1
        assert budget.used <= budget.limit
        # A short line on a fresh connection still works; a held one completes.
        r2, w2 = await asyncio.open_connection(*address)
        w2.write(b"JOB short\n")
        assert (await asyncio.wait_for(r2.readline(), 5)).startswith(b"ID ")
        w2.close()
        r0, w0 = held[0]
        w0.write(b"\n")
        assert (await asyncio.wait_for(r0.readline(), 5)).startswith(b"ID ")
        for _, w in held:
            w.close()
        await eventually(lambda: budget.used == 0, timeout=5)
        await asyncio.sleep(0.1)
        assert _big_cycle_garbage() == []


async def test_over_long_lines_leave_no_cycles(no_gc: None) -> None:
    async with running_hub(line=["127.0.0.1:0"], line_max_line=64 * 1024) as server:
        address = _line_address(server)
        for _ in range(10):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"JOB " + b"y" * 600_000 + b"\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            reply = await _until_closed(reader)
            assert reply is None or reply.startswith(b"ERR line too long"), reply
            writer.close()
        await eventually(lambda: not server.door(LineDoor).connections, timeout=5)
        await asyncio.sleep(0.1)
        assert server.hub.inflight.used == 0
        assert _big_cycle_garbage() == []
