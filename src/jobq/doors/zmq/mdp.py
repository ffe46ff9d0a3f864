"""The Majordomo door: MDP/0.1 and MDP/0.2 clients and workers on the hub's ZeroMQ socket.

A client REQUEST becomes a job of that service; its REPLY goes back to that client on the exact
service frame it sent, framed as it framed its request (see :mod:`jobq.protocol.mdp`). A worker
READY attaches a worker of that service (one request at a time, a few more queued while its
requests are short: ``mdp_prefetch``); the hub pushes it jobs from any door, and its REPLY
completes the job. ``mmi.*`` and ``titanic.*`` are answered by the hub itself
(:mod:`jobq.doors.zmq.mmi`); a worker's READY for one of those is *parked*: kept and
heartbeaten, never given a request, instead of told DISCONNECT (which a Majordomo worker answers
with READY at once: zguide's titanic.py made a storm of them).

Majordomo peers cannot send a token. Their caller is the listener's (``?trusted=ROLE...``), or
the connection's CURVE key (``?curve``), or the local admin while the hub runs without
``--auth``; with ``--auth``, a client elsewhere gets an error reply and a worker DISCONNECT (and
the audit log a record). A trusted worker attaches as its listener's principal, and a REPLY
counts only from the worker that holds the request, for an address the hub gave it
(:class:`~jobq.doors.zmq.mdp_requests.Addresses`). The client half is
:mod:`jobq.doors.zmq.mdp_requests`.

What Majordomo brokers usually lose, the hub keeps: a request is a durable job, a worker that
dies has its request re-queued for another worker (found out the moment its connection closes,
or when the hub's next heartbeat to it cannot be routed, or when its job's lease ends), and the
client gets one reply.

The door holds no job rules. It keeps the routes: which client waits for which job, and how
each peer frames its messages. Routes live in memory: after a hub restart the jobs still run
(Titanic is the durable way to ask and fetch later).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from jobq.core.auth import LOCAL_CALLER, Caller
from jobq.core.model import Completion, Job
from jobq.core.validate import MAX_NAME
from jobq.core.views import WorkerHello
from jobq.doors.zmq.identity import Callers
from jobq.doors.zmq.mdp_requests import RESERVED, Addresses, MdpRequests
from jobq.doors.zmq.router import Peer, Sender
from jobq.errors import JobqError, LeaseLost
from jobq.hub.hub import Hub
from jobq.hub.sessions import Liveness, WorkerDirectory
from jobq.protocol import mdp

log = logging.getLogger("jobq.doors.zmq.mdp")

#: Workers parked at most (READY for a service the hub answers itself); past it, DISCONNECT.
MAX_PARKED = 1024


@dataclass(frozen=True, slots=True)
class _Peer:
    """A worker connection, known by its identity; its framing is how to answer it."""

    identity: bytes
    framing: mdp.Framing = field(compare=False)


@dataclass(slots=True, eq=False)
class _Worker:
    """An MDP worker connection; the hub's :class:`~jobq.hub.sessions.WorkerLink` for it."""

    door: MajordomoDoor
    identity: bytes
    framing: mdp.Framing
    service: str
    slots: int
    #: Who it attaches as (its listener's principal, or its CURVE key's), over which connection.
    caller: Caller = LOCAL_CALLER
    peer: Peer | None = None
    worker_id: str = ""
    attached: bool = False
    gone: bool = False
    #: Its connection closed; it is dropped once the messages it sent before are handled.
    closed: bool = False
    #: Messages from the worker, handled in order by one task at a time.
    inbox: list[mdp.Message] = field(default_factory=list)
    draining: bool = False
    #: Attempts the hub told it to stop; it is given no new work until it has answered them.
    stopped: set[int] = field(default_factory=set)
    pushes: bool = True
    #: When each request in its hands was sent, and how long its requests take (moving average).
    sent_at: dict[int, float] = field(default_factory=dict)
    service_time: float | None = None
    last_done: float = 0.0

    def deliver(self, jobs: Sequence[Job]) -> None:
        door = self.door
        if self.closed:  # claimed as its connection closed: back to the queue unstarted
            door.hub.spawn(door.hub.release(self.worker_id, [(job.id, job.token) for job in jobs]))
            return
        if door.strict and not door.adopt(self, door.sender.connection(self.identity)):
            door.lost(self, "its identity was taken over by another principal")
            return
        send = self.door.sender.send
        now = time.monotonic()
        for job in jobs:
            self.sent_at[job.id] = now
            address = self.door.addresses.of(job)
            if not send(self.identity, mdp.request_frames(self.framing, address, job.payload)):
                self.door.lost(self, "cannot be reached")
                return

    def stop(self, job_ids: Sequence[int]) -> None:
        # MDP has no way to stop a request: the worker finishes it and its reply is refused.
        # Until then it is busy, so it is offered nothing new.
        self.stopped.update(job_ids)
        self.door.hub.spawn(self.door.hub.set_slots(self.worker_id, 0))

    def disconnect(self, reason: str) -> None:
        self.door.send_worker(self, mdp.disconnect_frames(self.framing))
        self.door.forget(self)


@dataclass(slots=True)
class _Parked:
    """A worker that said READY for ``mmi.*`` or ``titanic.*``: heartbeaten, given nothing."""

    framing: mdp.Framing
    service: str
    last_seen: float


class MajordomoDoor:
    """Majordomo's handler on the router (installed by :mod:`jobq.app`)."""

    def __init__(self, hub: Hub, sender: Sender) -> None:
        self.hub = hub
        self.sender = sender
        self.config = hub.config
        self.callers = Callers(hub, sender, "mdp")
        #: With --auth, a worker's requests go only to a connection of its own principal.
        self.strict = hub.guard.enabled
        self.addresses = Addresses()
        #: Which worker each connection is; a stranger's message gets DISCONNECT.
        self.workers = WorkerDirectory[_Peer](lambda peer: self._refuse(peer.identity, peer.framing))
        self.links: dict[bytes, _Worker] = {}
        #: Workers for the hub's own services, by identity (see ``_park``).
        self.parked: dict[bytes, _Parked] = {}
        self.counters: dict[str, int] = dict.fromkeys(
            ("requests", "replies", "partials", "errors", "undeliverable", "malformed", "disconnects_sent"), 0
        )
        self.clients = MdpRequests(hub, sender, self.counters, self.stats)
        self._timers: list[asyncio.TimerHandle] = []
        sender.on_disconnect(self._disconnected)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._timers = [
            loop.call_later(self.config.mdp_heartbeat, self._heartbeat),
            loop.call_later(self.clients.sweep_every, self._sweep_tick),
        ]

    @property
    def closed(self) -> bool:
        return self.sender.closed

    def end_of_batch(self) -> None:
        """Requests are gathered per event-loop turn instead (see ``MdpRequests.take``)."""

    # ------------------------------------------------------------------ frames in

    def handle(self, identity: bytes, frames: list[bytes]) -> bool:
        message = mdp.parse(frames)
        if message is None:
            return False
        if isinstance(message, mdp.Request):
            self.clients.take(identity, message, self._caller(identity))
        elif isinstance(message, mdp.Invalid):
            self.counters["malformed"] += 1
            log.debug("invalid MDP message from %r: %s", identity, message.reason)
            if message.worker:
                self._refuse(identity, message.framing)
        else:
            self._from_worker(identity, message)
        return True

    def _caller(self, identity: bytes) -> Caller | JobqError:
        """Who the peer is (its listener's, its CURVE key's), or why it may not be served."""
        try:
            return self.callers.caller(identity)
        except JobqError as exc:
            return exc

    def _from_worker(self, identity: bytes, message: mdp.Message) -> None:
        peer = _Peer(identity, message.framing)
        if peer not in self.workers:
            parked = self.parked.get(identity)
            if parked is not None:
                self._parked_message(identity, parked, message)
                return
            if isinstance(message, mdp.Ready):
                if not self._new_worker(peer, message):
                    return
            elif isinstance(message, mdp.Disconnect):
                return  # a stranger leaving: nothing to answer
            elif isinstance(message, mdp.Reply) and message.final:
                self._late_reply(message)
        if self.workers.worker_of(peer) is None:
            return  # a connection that never said READY (or was forgotten): told DISCONNECT
        worker = self.links[identity]
        if self.strict and not self.adopt(worker, self.sender.peer(identity)):
            self._taken_over(worker, message.framing)
            return
        worker.inbox.append(message)
        if not worker.draining:
            worker.draining = True
            self.hub.spawn(self._drain(worker))

    def _new_worker(self, peer: _Peer, message: mdp.Ready) -> bool:
        try:
            service = message.service.decode()
        except UnicodeDecodeError:
            service = ""
        caller = self._caller(peer.identity)
        if not service or len(message.service) > MAX_NAME or isinstance(caller, JobqError):
            self._refuse(peer.identity, peer.framing)
            return False
        if service.startswith(RESERVED):
            self._park(peer, service)
            return False
        # One request at a time until its requests prove short (see _completed).
        worker = _Worker(
            self, peer.identity, peer.framing, service, 1, caller, self.sender.peer(peer.identity)
        )
        worker.worker_id = f"mdp-{peer.identity.hex()}"
        self.links[peer.identity] = worker
        self.workers.bind(peer, worker.worker_id)
        return True

    def _late_reply(self, message: mdp.Reply) -> None:
        """A reply from a stranger, sent before the hub dropped the worker: fenced by its token,
        so it is kept if its attempt still holds the job. Only for an address this hub gave out,
        and only without --auth (with it, results count only from the worker's own session)."""
        attempt = self.addresses.attempt(message.address)
        if attempt is not None and not self.hub.guard.enabled:
            done = Completion(attempt[0], attempt[1], message.body)
            self.hub.spawn(self.hub.complete("", [done]))

    def adopt(self, worker: _Worker, current: Peer | None) -> bool:
        """With --auth, whether ``current`` is the worker's connection: the one that said READY,
        or a later one on its identity with the same principal (the worker reconnecting)."""
        if current is worker.peer:
            return True
        if current is None or self.callers.principal_of(current) != worker.caller.principal.name:
            return False
        worker.peer = current
        return True

    def _taken_over(self, worker: _Worker, framing: mdp.Framing) -> None:
        """Another principal's connection holds the worker's identity: its message is refused."""
        caller = self._caller(worker.identity)
        reason = f"worker {worker.worker_id} was attached by another principal"
        who = caller if isinstance(caller, Caller) else None
        address = self.sender.peer(worker.identity).address
        self.hub.guard.audit.write("refused", who, "work", worker.worker_id, reason, door="mdp", peer=address)
        self._refuse(worker.identity, framing)

    def _refuse(self, identity: bytes, framing: mdp.Framing) -> None:
        self.counters["disconnects_sent"] += 1
        self.sender.send(identity, mdp.disconnect_frames(framing))

    # ------------------------------------------------------------------ parked workers

    def _park(self, peer: _Peer, service: str) -> None:
        """READY for a service the hub answers itself (``titanic.*``: zguide's titanic.py runs
        such workers). DISCONNECT would bring the same READY back at once, as Majordomo asks of
        a worker, so it is kept instead: heartbeaten, never given a request."""
        if len(self.parked) >= MAX_PARKED:
            self._refuse(peer.identity, peer.framing)
            return
        self.parked[peer.identity] = _Parked(peer.framing, service, time.monotonic())
        log.info("MDP worker for %s parked: the hub answers %s itself", service, service)

    def _parked_message(self, identity: bytes, parked: _Parked, message: mdp.Message) -> None:
        """A sign of life; a DISCONNECT lets it go. Anything else changes nothing."""
        parked.last_seen = time.monotonic()
        if isinstance(message, mdp.Disconnect):
            del self.parked[identity]

    def _beat_parked(self) -> None:
        """Heartbeat the parked workers; a silent or unreachable one is forgotten quietly."""
        limit = time.monotonic() - self.config.mdp_heartbeat * self.config.mdp_liveness
        for identity, parked in list(self.parked.items()):
            beat = mdp.heartbeat_frames(parked.framing)
            if parked.last_seen < limit or not self.sender.send(identity, beat):
                del self.parked[identity]

    def _disconnected(self, identity: bytes) -> None:
        """The connection closed: its worker is gone now, and its requests go back to the queue
        at once (not at the next heartbeat, handing it more requests meanwhile)."""
        self.parked.pop(identity, None)
        worker = self.links.get(identity)
        if worker is None:
            return
        worker.closed = True
        if not worker.draining:  # else once the messages it sent before the close are handled
            self.lost(worker, "its connection closed")

    # ------------------------------------------------------------------ workers

    async def _drain(self, worker: _Worker) -> None:
        """Handle the worker's messages in order; consecutive replies complete together."""
        try:
            while worker.inbox and not worker.gone:
                batch, worker.inbox = worker.inbox, []
                replies: list[mdp.Reply] = []
                for message in batch:
                    if isinstance(message, mdp.Reply) and message.final:
                        replies.append(message)
                        continue
                    if replies:
                        await self._completed(worker, replies)
                        replies = []
                    if worker.gone:
                        break
                    await self._worker_message(worker, message)
                if replies and not worker.gone:
                    await self._completed(worker, replies)
        finally:
            worker.draining = False
            if worker.closed and not worker.gone:
                self.lost(worker, "its connection closed")

    async def _worker_message(self, worker: _Worker, message: mdp.Message) -> None:
        if isinstance(message, mdp.Ready):
            if worker.attached:
                self.unexpected(worker, "a second READY")
            else:
                await self._attach(worker)
        elif not worker.attached:
            self.unexpected(worker, "a message before READY")
        elif isinstance(message, mdp.Heartbeat):
            if not await self.hub.heartbeat(worker.worker_id):
                self.unexpected(worker, "a heartbeat after the hub dropped it")
        elif isinstance(message, mdp.Reply):  # a PARTIAL
            attempt = self.addresses.attempt(message.address)
            if attempt is None:
                self.unexpected(worker, "a reply to an address it was never given")
                return
            try:
                await self.hub.progress(
                    worker.worker_id, attempt[0], attempt[1], None, None, data=message.body
                )
            except LeaseLost:
                pass
        elif isinstance(message, mdp.Disconnect):
            self.forget(worker)
            await self.hub.detach(worker.worker_id, "said DISCONNECT")

    async def _attach(self, worker: _Worker) -> None:
        hello = WorkerHello(
            id=worker.worker_id,
            services=[worker.service],
            slots=worker.slots,
            name=f"{worker.framing.label} worker",
            door="mdp",
        )
        idle = self.config.mdp_heartbeat * self.config.mdp_liveness
        try:
            liveness = Liveness(idle=idle, busy=None)
            await self.hub.attach(hello, worker, liveness=liveness, caller=worker.caller)
        except JobqError as exc:
            log.info("MDP worker for %s refused: %s", worker.service, exc.message)
            self.unexpected(worker, exc.message)
            return
        if worker.gone:  # dropped while attaching (the hub is stopping, say)
            await self.hub.detach(worker.worker_id, "gone while attaching")
            return
        worker.attached = True

    async def _completed(self, worker: _Worker, replies: list[mdp.Reply]) -> None:
        results: list[Completion] = []
        for reply in replies:
            attempt = self.addresses.attempt(reply.address)
            if attempt is None:
                self.unexpected(worker, "a reply to an address it was never given")
                return
            results.append(Completion(attempt[0], attempt[1], reply.body, worker.worker_id))
        await self.hub.complete(worker.worker_id, results)
        slots = self._slots_for(worker, results)
        if worker.stopped:
            worker.stopped.difference_update(r.job_id for r in results)
            if not worker.stopped and not worker.gone:
                worker.slots = slots
                await self.hub.set_slots(worker.worker_id, worker.slots)
        elif slots != worker.slots and not worker.gone:
            worker.slots = slots
            await self.hub.set_slots(worker.worker_id, slots)

    def _slots_for(self, worker: _Worker, results: list[Completion]) -> int:
        """Majordomo hands a worker one request at a time. While a worker's requests are short,
        the hub queues a few more at it (``mdp_prefetch``), so it never waits a round trip
        between them; when they are long, nothing waits behind a busy worker."""
        now = time.monotonic()
        for result in results:
            sent = worker.sent_at.pop(result.job_id, None)
            if sent is not None:
                # A worker runs its requests one after the other: a queued request's time
                # starts when the one before it ended.
                took = now - max(sent, worker.last_done)
                average = worker.service_time
                worker.service_time = took if average is None else 0.8 * average + 0.2 * took
        worker.last_done = now
        fast = worker.service_time is not None and worker.service_time < self.config.mdp_prefetch_below
        return 1 + (max(0, self.config.mdp_prefetch) if fast else 0)

    def unexpected(self, worker: _Worker, why: str) -> None:
        """A valid command at the wrong time: DISCONNECT, and its jobs go back to the queue."""
        log.info("MDP worker %s: %s; disconnecting it", worker.worker_id, why)
        self.counters["disconnects_sent"] += 1
        self.send_worker(worker, mdp.disconnect_frames(worker.framing))
        self.lost(worker, why)

    def lost(self, worker: _Worker, why: str) -> None:
        attached = worker.attached
        self.forget(worker)
        if attached:
            self.hub.spawn(self.hub.detach(worker.worker_id, why))

    def forget(self, worker: _Worker) -> None:
        worker.gone = True
        worker.attached = False
        if self.links.get(worker.identity) is worker:
            del self.links[worker.identity]
            self.workers.forget(_Peer(worker.identity, worker.framing))

    def send_worker(self, worker: _Worker, frames: list[bytes]) -> bool:
        return self.sender.send(worker.identity, frames)

    def _heartbeat(self) -> None:
        """Heartbeat every worker, busy ones too: a zguide worker reads them when it is done,
        and one that cannot be routed any more has died, so its request is re-queued now."""
        if self.closed:
            return
        self._timers[0] = asyncio.get_running_loop().call_later(self.config.mdp_heartbeat, self._heartbeat)
        for worker in list(self.links.values()):
            if worker.attached and not self.send_worker(worker, mdp.heartbeat_frames(worker.framing)):
                self.lost(worker, "cannot be reached")
        if self.parked:
            self._beat_parked()

    # ------------------------------------------------------------------ no worker

    def _sweep_tick(self) -> None:
        if self.closed:
            return
        self._timers[1] = asyncio.get_running_loop().call_later(self.clients.sweep_every, self._sweep_tick)
        if self.clients.by_service:
            self.hub.spawn(self.clients.sweep())

    def stats(self) -> dict[str, int]:
        return {
            **self.counters,
            "workers": len(self.links),
            "waiting": len(self.clients.requests),
            "parked": len(self.parked),
        }
