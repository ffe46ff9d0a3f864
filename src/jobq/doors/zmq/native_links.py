"""The native door's worker connections: the hub's ``WorkerLink`` for each jobq SDK worker.

A worker is gone the moment its connection closes: the router reports the close (jobq's ZMTP
sees it; with libzmq, the socket monitor), and the door detaches the worker at once, so its
jobs go back to the front of the queue instead of being handed to a dead worker until its
heartbeats are missed. A worker that reconnected under the same worker id before the old
connection's close was seen keeps its new session: only the connection of a worker's latest
``hello`` detaches it (the door keeps which one that is).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

from jobq.core.model import Job, assignment_of
from jobq.doors.zmq.router import Peer, Sender
from jobq.hub.hub import Hub
from jobq.hub.sessions import WorkerDirectory
from jobq.protocol import native

T = TypeVar("T")


class LinkDoor(Protocol):
    """What a link needs of the native door."""

    hub: Hub
    sender: Sender
    #: With --auth a worker's jobs go only to a connection that showed its principal.
    strict: bool
    #: Which worker each connection speaks for, and its link.
    workers: WorkerDirectory[bytes]
    links: dict[bytes, Link]

    def send(self, identity: bytes, message: native.Outbound) -> None: ...

    def forget_worker(self, identity: bytes) -> str | None: ...


class Link:
    """A jobq SDK worker on the ZeroMQ door, as the hub sees it."""

    pushes = True

    def __init__(self, door: LinkDoor, identity: bytes, peer: Peer, principal: str) -> None:
        self.door = door
        self.identity = identity
        #: The connection that said hello, and the principal it said it as.
        self.peer = peer
        self.principal = principal
        #: The worker it speaks for (set by its hello).
        self.worker_id = ""
        #: Its connection closed: nothing goes to it any more.
        self.gone = False
        #: Jobs held back from a connection that has not shown its principal yet (--auth).
        self.pending: list[Job] = []

    def deliver(self, jobs: Sequence[Job]) -> None:
        door = self.door
        if self.gone:
            # Claimed just as its connection closed (the detach is on its way): they go back
            # to the queue unstarted instead of into a closed connection.
            attempts = [(job.id, job.token) for job in jobs]
            door.hub.spawn(door.hub.release(self.worker_id, attempts))
            return
        if door.strict and door.sender.connection(self.identity) is not self.peer:
            # Another connection holds the identity now: the worker reconnecting, or someone
            # who took it over. Nothing goes to it until it shows the worker's principal.
            self.pending.extend(jobs)
            door.send(self.identity, native.Reconnect(reason="a new connection: say hello"))
            return
        door.send(self.identity, native.Assign(jobs=[assignment_of(job) for job in jobs]))

    def confirm(self, peer: Peer) -> None:
        """``peer`` showed the worker's principal: it is the worker's connection now."""
        if peer is not self.peer:
            self.peer = peer
            if self.pending:
                jobs, self.pending = self.pending, []
                self.deliver(jobs)

    def stop(self, job_ids: Sequence[int]) -> None:
        self.door.send(self.identity, native.CancelJobs(ids=list(job_ids)))

    def group_finished(self, group_id: int) -> None:
        """FINISHED: a group this worker ran members of has ended (``hub/groups.py``)."""
        if not self.gone:
            self.door.send(self.identity, native.Finished(group=group_id))

    def disconnect(self, reason: str) -> None:
        self.door.forget_worker(self.identity)
        self.door.send(self.identity, native.Reconnect(reason=reason))


class Departures:
    """Which connection said each worker's latest hello, and what follows a connection's close.

    The close of a worker's connection detaches the worker, once what arrived before the close
    has been handed to the hub (its last results travel in a batch of their own, see
    :meth:`results`), and only if no newer connection said hello for the same worker id since.
    """

    def __init__(self, door: LinkDoor) -> None:
        self.door = door
        #: Worker id → the connection of its latest hello (only that one's close detaches it).
        self.latest: dict[str, bytes] = {}
        #: The links whose hello the hub is attaching now, by connection.
        self.attaching: dict[bytes, Link] = {}
        self._batches: set[asyncio.Future[None]] = set()

    def results(self, handing: Awaitable[None]) -> Coroutine[Any, Any, None]:
        """A batch of results on its way to the hub (counted from now): a close or a ``bye``
        waits for it."""
        batch = asyncio.get_running_loop().create_future()
        self._batches.add(batch)
        return self._hand(handing, batch)

    async def _hand(self, handing: Awaitable[None], batch: asyncio.Future[None]) -> None:
        try:
            await handing
        finally:
            self._batches.discard(batch)
            batch.set_result(None)

    async def settled(self) -> None:
        """Until the results that arrived so far (this turn's too) have been handed over."""
        await asyncio.sleep(0)  # this turn's results are gathered at its end
        if self._batches:
            await asyncio.wait(list(self._batches))

    async def attach(self, identity: bytes, link: Link, attaching: Awaitable[T]) -> T | None:
        """Run the hub's attach of ``link`` (a hello on ``identity``); None when the connection
        closed meanwhile (the worker is then detached again)."""
        worker_id, previous = link.worker_id, self.latest.get(link.worker_id)
        self.latest[worker_id], self.attaching[identity] = identity, link
        try:
            welcome = await attaching
        except BaseException:
            if self.latest.get(worker_id) == identity:  # refused: the earlier hello stands
                self.latest.pop(worker_id)
                if previous is not None:
                    self.latest[worker_id] = previous
            raise
        finally:
            if self.attaching.get(identity) is link:
                del self.attaching[identity]
        if not link.gone:
            return welcome
        if self.latest.get(worker_id, identity) == identity:
            self.latest.pop(worker_id, None)
            await self.door.hub.detach(worker_id, "its connection closed")
        return None

    def forgot(self, identity: bytes, worker_id: str | None) -> None:
        """The door no longer binds ``identity`` to ``worker_id``."""
        if worker_id is not None and self.latest.get(worker_id) == identity:
            del self.latest[worker_id]

    def closed(self, identity: bytes) -> None:
        """The connection behind ``identity`` closed (the router saw it)."""
        link = self.door.links.get(identity)
        for each in (link, self.attaching.get(identity)):
            if each is not None:
                each.gone = True  # nothing more is delivered to it
        if link is not None:
            self.door.hub.spawn(self._depart(identity, link))

    async def _depart(self, identity: bytes, link: Link) -> None:
        await self.settled()  # results that arrived before the close go first
        door = self.door
        if door.links.get(identity) is not link:
            return  # a new connection on the identity said hello since, or the hub dropped it
        worker_id = door.workers.peek(identity)
        latest = worker_id is not None and self.latest.get(worker_id) == identity
        door.forget_worker(identity)
        if worker_id is not None and latest:
            await door.hub.detach(worker_id, "its connection closed")


__all__ = ["Departures", "Link", "LinkDoor"]
