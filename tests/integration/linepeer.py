"""A raw TCP peer of a line listener, as the DSJQ and work-queue programs are: bytes out,
lines back. Nothing here knows the protocol beyond "a reply is one line"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from jobq.app import HubServer
from jobq.doors.line import LineDoor
from tests.helpers import running_hub

TIMEOUT = 10.0


class Peer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, address: tuple[str, int]) -> Peer:
        reader, writer = await asyncio.open_connection(*address)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        assert raw.endswith(b"\n"), f"connection closed instead of a reply (got {raw!r})"
        return raw[:-1].decode()

    async def lines(self, n: int) -> list[str]:
        return [await self.line() for _ in range(n)]

    async def ask(self, command: str) -> str:
        await self.send(command.encode() + b"\n")
        return await self.line()

    async def rest(self) -> bytes:
        """Everything until the hub closes the connection."""
        return await asyncio.wait_for(self.reader.read(), TIMEOUT)

    async def close(self) -> None:
        if self.writer.is_closing():
            return
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


async def once(address: tuple[str, int], command: str) -> str:
    """One command on its own connection, as the work-queue client sends them."""
    peer = await Peer.open(address)
    try:
        return await peer.ask(command)
    finally:
        await peer.close()


class LineHub:
    """An in-process hub with a document listener and a dsjq-compat listener on free ports."""

    def __init__(self, server: HubServer) -> None:
        self.server = server
        self.hub = server.hub
        self.door = server.door(LineDoor)
        host, port, _ = self.door.addresses[0]
        self.plain = (host, port)
        host, port, _ = self.door.addresses[1]
        self.compat = (host, port)
        self.peers: list[Peer] = []

    async def peer(self, compat: bool = False) -> Peer:
        """A connection, closed at the end of the test if the test did not."""
        peer = await Peer.open(self.compat if compat else self.plain)
        self.peers.append(peer)
        return peer

    async def state(self, job_id: int) -> str:
        return (await self.hub.get(job_id)).state.value


@asynccontextmanager
async def line_hub(**config: Any) -> AsyncIterator[LineHub]:
    async with running_hub(line=["127.0.0.1:0", "127.0.0.1:0/dsjq-compat"], **config) as server:
        lh = LineHub(server)
        try:
            yield lh
        finally:
            for peer in lh.peers:
                await peer.close()
