"""The worker SDK heartbeats at the interval the hub's Welcome names, from the Welcome on.

Found with real processes (``--heartbeat 0.2 --liveness 5``: a hub that drops a worker silent
for 1 s): the heartbeat loop slept the 1 s it assumes before any Welcome, so a worker's first
heartbeat came about 1 s after its hello, and the hub sometimes dropped it as silent with the
jobs it had just been given (each then counted lost with its worker).
"""

from __future__ import annotations

import asyncio
import time

from jobq.protocol import native as jqp
from jobq.worker.runtime import Worker


class FakeTransport:
    endpoint = "tcp://fake:1"

    def __init__(self) -> None:
        self.sent: list[tuple[float, jqp.Inbound]] = []

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, message: jqp.Inbound) -> None:
        self.sent.append((time.monotonic(), message))

    def failover(self) -> str:
        return self.endpoint

    def heartbeats(self) -> list[float]:
        return [at for at, message in self.sent if isinstance(message, jqp.Heartbeat)]


async def test_the_welcomes_interval_applies_at_once() -> None:
    worker = Worker("tcp://fake:1")
    transport = FakeTransport()
    worker._conn = transport
    beating = asyncio.ensure_future(worker._heartbeats())
    try:
        started = time.monotonic()
        await asyncio.sleep(0.05)
        worker._on_push(jqp.Welcome(heartbeat=0.1, lease_ttl=2.0, kept=[], hub="h"))
        await asyncio.sleep(0.45)
        beats = transport.heartbeats()
        assert beats, "no heartbeat within 0.5 s of a Welcome naming 0.1 s"
        assert beats[0] - started < 0.4
        assert len(beats) >= 3
    finally:
        beating.cancel()
