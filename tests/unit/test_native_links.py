"""The native door's worker connections without sockets: a closed connection detaches its
worker at once, but never a newer session of the same worker id (issue 12, finding 1)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from jobq.config import HubConfig
from jobq.core.model import JobSpec
from jobq.doors.zmq.native import NativeDoor
from jobq.doors.zmq.router import Peer
from jobq.hub.hub import Hub
from jobq.listeners import Listener
from jobq.protocol import native
from jobq.store.base import open_store


class FakeSender:
    """The router as a protocol sees it: one connection per route, closed on demand."""

    closed = False

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, native.Outbound]] = []
        self.peers: dict[bytes, Peer] = {}
        self.callbacks: list[Callable[[bytes], None]] = []

    def send(self, identity: bytes, frames: Sequence[bytes]) -> bool:
        if identity not in self.peers:
            return False
        self.sent.append((identity, native.decode_outbound(frames[1])))
        return True

    def peer(self, identity: bytes) -> Peer:
        return self.peers.setdefault(identity, Peer(Listener(address="tcp://127.0.0.1:1")))

    def connection(self, identity: bytes) -> Peer | None:
        return self.peers.get(identity)

    def on_disconnect(self, callback: Callable[[bytes], None]) -> None:
        self.callbacks.append(callback)

    def close(self, identity: bytes) -> None:
        del self.peers[identity]
        for callback in self.callbacks:
            callback(identity)

    def received(self, identity: bytes, kind: type) -> list[native.Outbound]:
        return [m for i, m in self.sent if i == identity and isinstance(m, kind)]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
async def rig() -> tuple[Hub, NativeDoor, FakeSender]:
    hub = Hub(open_store("memory://"), HubConfig(line=[], http=""))
    await hub.start()
    sender = FakeSender()
    door = NativeDoor(hub, sender)
    return hub, door, sender


def hello(door: NativeDoor, sender: FakeSender, identity: bytes, worker_id: str = "w1") -> None:
    sender.peer(identity)
    body = native.encode(native.Hello(worker_id=worker_id, services=["svc"], slots=2))
    assert door.handle(identity, [native.HEADER, body])


async def test_a_closed_connection_detaches_its_worker_at_once(
    rig: tuple[Hub, NativeDoor, FakeSender],
) -> None:
    hub, door, sender = rig
    hello(door, sender, b"A")
    await settle()
    assert hub.connected() == ["w1"]
    sender.close(b"A")
    await settle()
    assert hub.connected() == []
    assert not door.links and not door.departures.latest and len(door.workers) == 0


async def test_the_old_connection_closing_while_the_new_one_attaches_keeps_the_new_session(
    rig: tuple[Hub, NativeDoor, FakeSender], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, door, sender = rig
    hello(door, sender, b"A")
    await settle()
    gate = asyncio.Event()
    store = hub._store
    attach_worker = store.attach_worker

    async def slow_attach_worker(*args: object) -> None:
        await attach_worker(*args)  # type: ignore[arg-type]
        await gate.wait()  # the rest of the attach waits, as a shared store's round trip would

    monkeypatch.setattr(store, "attach_worker", slow_attach_worker)
    hello(door, sender, b"B")
    await settle()
    sender.close(b"A")  # seen while B's hello is being attached
    await settle()
    gate.set()
    await settle()
    assert hub.connected() == ["w1"]
    assert door.workers.peek(b"B") == "w1" and door.departures.latest == {"w1": b"B"}
    assert sender.received(b"B", native.Welcome)
    job = (await hub.submit_one(JobSpec(service="svc"))).job
    await settle()
    [assign] = sender.received(b"B", native.Assign)
    assert isinstance(assign, native.Assign) and assign.jobs[0].id == job.id
    # B's own close detaches it.
    sender.close(b"B")
    await settle()
    assert hub.connected() == []


async def test_a_connection_closing_while_its_hello_is_attached_is_detached(
    rig: tuple[Hub, NativeDoor, FakeSender], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, door, sender = rig
    gate = asyncio.Event()
    attach = hub.attach

    async def slow_attach(*args: object, **kwargs: object) -> object:
        await gate.wait()
        return await attach(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hub, "attach", slow_attach)
    hello(door, sender, b"A")
    await settle()
    sender.close(b"A")
    gate.set()
    await settle()
    assert hub.connected() == []
    assert not door.links and not door.departures.latest and not door.departures.attaching


async def test_jobs_claimed_for_a_closed_connection_go_back_unstarted(
    rig: tuple[Hub, NativeDoor, FakeSender],
) -> None:
    hub, door, sender = rig
    hello(door, sender, b"A")
    await settle()
    link = door.links[b"A"]
    link.gone = True  # closed, its detach not run yet: the dispatcher may still claim for it
    job = (await hub.submit_one(JobSpec(service="svc"))).job
    await settle()
    assert not sender.received(b"A", native.Assign)
    assert (await hub.get(job.id)).state == "queued"
