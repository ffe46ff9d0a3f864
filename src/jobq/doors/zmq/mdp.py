"""The Majordomo door: MDP/0.1 and MDP/0.2 clients and workers on the hub's ZeroMQ socket.

A client REQUEST becomes a job of that service; its REPLY goes back to that client on the exact
service frame it sent, framed as it framed its request (see :mod:`jobq.protocol.mdp`). A worker
READY attaches a worker of that service (one request at a time, a few more queued while its
requests are short: ``mdp_prefetch``); the hub pushes it jobs from any door, and its REPLY
completes the job. ``mmi.*`` and ``titanic.*`` are answered by the hub itself
(:mod:`jobq.doors.zmq.mmi`).

What Majordomo brokers usually lose, the hub keeps: a request is a durable job, a worker that
dies busy has its request re-queued for another worker (found out at once when the hub's next
heartbeat to it cannot be routed, or when its job's lease ends), and the client gets one reply.

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

from jobq.core.model import Completion, Frames, Job, JobEvent, JobSpec
from jobq.core.states import QUEUED, SCHEDULED, TERMINAL, JobState
from jobq.core.views import WorkerHello
from jobq.doors.zmq.mmi import HubServices
from jobq.doors.zmq.router import Sender
from jobq.errors import InvalidRequest, JobqError, LeaseLost
from jobq.hub.hub import Hub
from jobq.hub.sessions import Liveness, WorkerDirectory
from jobq.protocol import mdp

log = logging.getLogger("jobq.doors.zmq.mdp")

#: First frame of the body of an error reply: ``[ERROR, code, message]`` (codes as jobq's).
ERROR = b"jobq.error"
#: Service prefixes the hub answers itself; a worker READY for one gets DISCONNECT.
RESERVED = ("mmi.", "titanic.")


def address_of(job: Job) -> bytes:
    """The client-address frame a worker gets with a job, and echoes in its reply: the job
    and its attempt (the fencing token), so a late reply of a lost attempt is refused."""
    return b"%d.%d" % (job.id, job.attempts)


def attempt_of(address: bytes) -> tuple[int, int] | None:
    job_id, dot, token = address.partition(b".")
    if not dot or not job_id.isdigit() or not token.isdigit():
        return None
    return int(job_id), int(token)


def error_body(code: str, message: str) -> Frames:
    return [ERROR, code.encode(), message.encode()]


@dataclass(frozen=True, slots=True)
class _Peer:
    """A worker connection, known by its identity; its framing is how to answer it."""

    identity: bytes
    framing: mdp.Framing = field(compare=False)


@dataclass(slots=True, eq=False)
class _Request:
    """A client waiting for the reply to one request."""

    identity: bytes
    framing: mdp.Framing
    service: bytes
    since: float
    #: Why the hub gave up on it (it is answered with an error when its job ends cancelled).
    gave_up: str | None = None


@dataclass(slots=True, eq=False)
class _Worker:
    """An MDP worker connection; the hub's :class:`~jobq.hub.sessions.WorkerLink` for it."""

    door: MajordomoDoor
    identity: bytes
    framing: mdp.Framing
    service: str
    slots: int
    worker_id: str = ""
    attached: bool = False
    gone: bool = False
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
        send = self.door.sender.send
        now = time.monotonic()
        for job in jobs:
            self.sent_at[job.id] = now
            if not send(self.identity, mdp.request_frames(self.framing, address_of(job), job.payload)):
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


class MajordomoDoor:
    """Majordomo's handler on the router (installed by :mod:`jobq.app`)."""

    def __init__(self, hub: Hub, sender: Sender) -> None:
        self.hub = hub
        self.sender = sender
        self.config = hub.config
        #: Which worker each connection is; a stranger's message gets DISCONNECT.
        self.workers = WorkerDirectory[_Peer](lambda peer: self._refuse(peer.identity, peer.framing))
        self.links: dict[bytes, _Worker] = {}
        #: Job id → the client waiting for it; by service for the no-worker sweep.
        self.requests: dict[int, _Request] = {}
        self.by_service: dict[str, dict[int, _Request]] = {}
        self.unserved_since: dict[str, float] = {}
        self.services = HubServices(hub, self.stats)
        self.counters: dict[str, int] = dict.fromkeys(
            ("requests", "replies", "partials", "errors", "undeliverable", "malformed", "disconnects_sent"), 0
        )
        self._submits: list[tuple[_Request, JobSpec]] = []
        self._timers: list[asyncio.TimerHandle] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._timers = [
            loop.call_later(self.config.mdp_heartbeat, self._heartbeat),
            loop.call_later(self._sweep_every, self._sweep_tick),
        ]

    @property
    def closed(self) -> bool:
        return self.sender.closed

    def end_of_batch(self) -> None:
        """Requests are gathered per event-loop turn instead (see ``_request``)."""

    @property
    def _sweep_every(self) -> float:
        return max(0.02, min(1.0, self.config.mdp_no_worker_timeout / 4))

    # ------------------------------------------------------------------ frames in

    def handle(self, identity: bytes, frames: list[bytes]) -> bool:
        message = mdp.parse(frames)
        if message is None:
            return False
        if isinstance(message, mdp.Request):
            self._request(identity, message)
        elif isinstance(message, mdp.Invalid):
            self.counters["malformed"] += 1
            log.debug("invalid MDP message from %r: %s", identity, message.reason)
            if message.worker:
                self._refuse(identity, message.framing)
        else:
            self._from_worker(identity, message)
        return True

    def _request(self, identity: bytes, message: mdp.Request) -> None:
        self.counters["requests"] += 1
        request = _Request(identity, message.framing, message.service, time.monotonic())
        try:
            service = message.service.decode()
        except UnicodeDecodeError:
            self.answer_error(request, InvalidRequest("the service name must be UTF-8"))
            return
        if service.startswith(RESERVED):
            self.hub.spawn(self._hub_service(request, service, message.body))
            return
        if not self._submits:
            self.hub.spawn(self._submit())
        self._submits.append((request, JobSpec(service=service, payload=message.body)))

    async def _hub_service(self, request: _Request, service: str, body: Frames) -> None:
        self.answer(request, await self.services.answer(service, body))

    def _from_worker(self, identity: bytes, message: mdp.Message) -> None:
        peer = _Peer(identity, message.framing)
        if peer not in self.workers:
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
        worker.inbox.append(message)
        if not worker.draining:
            worker.draining = True
            self.hub.spawn(self._drain(worker))

    def _new_worker(self, peer: _Peer, message: mdp.Ready) -> bool:
        try:
            service = message.service.decode()
        except UnicodeDecodeError:
            service = ""
        if not service or service.startswith(RESERVED):
            self._refuse(peer.identity, peer.framing)
            return False
        # One request at a time until its requests prove short (see _completed).
        worker = _Worker(self, peer.identity, peer.framing, service, 1)
        worker.worker_id = f"mdp-{peer.identity.hex()}"
        self.links[peer.identity] = worker
        self.workers.bind(peer, worker.worker_id)
        return True

    def _late_reply(self, message: mdp.Reply) -> None:
        """A reply from a stranger, sent before the hub restarted or dropped the worker: fenced
        by its token, so it is kept if its attempt still holds the job."""
        attempt = attempt_of(message.address)
        if attempt is not None:
            done = Completion(attempt[0], attempt[1], message.body)
            self.hub.spawn(self.hub.complete("", [done]))

    def _refuse(self, identity: bytes, framing: mdp.Framing) -> None:
        self.counters["disconnects_sent"] += 1
        self.sender.send(identity, mdp.disconnect_frames(framing))

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
            attempt = attempt_of(message.address)
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
            await self.hub.attach(hello, worker, liveness=Liveness(idle=idle, busy=None))
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
            attempt = attempt_of(reply.address)
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

    # ------------------------------------------------------------------ clients

    async def _submit(self) -> None:
        """One hub call for the requests of a turn; a refused one is answered alone."""
        batch, self._submits = self._submits, []
        try:
            outcomes = await self.hub.submit([spec for _, spec in batch])
        except Exception as exc:  # the hub takes no jobs now (shutting down), or a bug
            if not isinstance(exc, JobqError):
                log.exception("submitting %d MDP request(s) failed", len(batch))
            error = exc if isinstance(exc, JobqError) else JobqError(f"internal error: {exc}")
            for request, _ in batch:
                self.answer_error(request, error)
            return
        now = time.monotonic()
        live: list[int] = []
        ended: list[Job] = []
        for (request, _), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, JobqError):
                self.answer_error(request, outcome)
                continue
            job = outcome.job
            request.since = now
            self.requests[job.id] = request
            self.by_service.setdefault(job.service, {})[job.id] = request
            if job.state in TERMINAL:
                ended.append(job)  # only possible if the store hands back ended jobs
            else:
                live.append(job.id)
        self.hub.watch(self, live)
        for job in ended:
            self._answer_end(job.id, job.state, job.result, job.error)

    def push(self, events: list[JobEvent]) -> None:
        """Events of the jobs clients wait for (the door listens to them) → replies."""
        for event in events:
            if event.state in TERMINAL:
                self._answer_end(event.id, event.state, event.result, event.error)
            elif event.partial is not None:
                request = self.requests.get(event.id)
                if request is not None:
                    self.answer(request, event.partial, final=False)

    def _answer_end(self, job_id: int, state: JobState, result: Frames | None, error: str | None) -> None:
        request = self.requests.pop(job_id, None)
        if request is None:
            return
        waiting = self.by_service.get(request.service.decode())
        if waiting is not None:
            waiting.pop(job_id, None)
        if state == "completed":
            self.answer(request, result or [])
        elif request.gave_up is not None:
            self.answer(request, error_body("timeout", request.gave_up), error=True)
        else:
            self.answer(
                request, error_body("job_failed", f"job {job_id} {state}: {error or state}"), error=True
            )

    def answer(self, request: _Request, body: Frames, *, final: bool = True, error: bool = False) -> None:
        frames = mdp.reply_frames(request.framing, request.service, body, final=final)
        if frames is None:
            return  # an MDP/0.1 client has no PARTIAL
        self.counters["partials" if not final else "errors" if error else "replies"] += 1
        if not self.sender.send(request.identity, frames):
            # The client is gone (an mdcliapi that gave up and reconnected, say). The result
            # stays with its job for jobq's other doors; only this copy is lost.
            self.counters["undeliverable"] += 1
            log.debug("reply for a vanished MDP client %r dropped", request.identity)

    def answer_error(self, request: _Request, exc: JobqError) -> None:
        self.answer(request, error_body(exc.code, exc.message), error=True)

    # ------------------------------------------------------------------ no worker

    def _sweep_tick(self) -> None:
        if self.closed:
            return
        self._timers[1] = asyncio.get_running_loop().call_later(self._sweep_every, self._sweep_tick)
        if self.by_service:
            self.hub.spawn(self._sweep())

    async def _sweep(self) -> None:
        """Requests for a service that has had no worker for ``mdp_no_worker_timeout`` get an
        error reply (their jobs are cancelled) rather than silence."""
        limit = self.config.mdp_no_worker_timeout
        served = {name for info in await self.hub.workers() for name in info.services}
        now = time.monotonic()
        for service, waiting in list(self.by_service.items()):
            if not waiting:
                del self.by_service[service]
                self.unserved_since.pop(service, None)
                continue
            if service in served:
                self.unserved_since.pop(service, None)
                continue
            since = self.unserved_since.setdefault(service, now)
            for job_id, request in list(waiting.items()):
                if now - max(request.since, since) < limit:
                    break  # requests are in arrival order: the rest are younger
                await self._give_up(job_id, request, f"no worker served {service} within {limit:g}s")

    async def _give_up(self, job_id: int, request: _Request, why: str) -> None:
        try:
            job = await self.hub.get(job_id)
            if job.state in (QUEUED, SCHEDULED):
                request.gave_up = why
                await self.hub.cancel(job_id)
        except JobqError:
            pass  # it ended or started meanwhile: its own event answers the client

    def stats(self) -> dict[str, int]:
        return {**self.counters, "workers": len(self.links), "waiting": len(self.requests)}
