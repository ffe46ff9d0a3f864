"""The native protocol on the ZeroMQ door: decode, establish the caller, call the hub, encode.

Every message names its caller (``doors/zmq/identity.py``: its token, else the connection's
CURVE key or trusted listener, else the local admin while the hub runs without ``--auth``), and
every hub call is made as that caller; a refused call is answered with ``error``
(``unauthorized`` / ``forbidden``) and changes nothing.

Workers: ``hello`` binds the connection to its worker and to the principal that said it. Later
worker messages on that connection act as that worker, and only with that principal. With
``--auth``, jobs are pushed only to the connection that said hello (or a later connection on the
same identity once it has shown the same principal: the worker reconnecting), never to whoever
took its identity over. Without ``--auth``, results, failures and progress are accepted from any
connection that presents a valid fencing token, known session or not: after a hub restart a
worker's queued results still land, and the worker is told to say ``hello`` again. A worker is
gone the moment its connection closes (``native_links.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from jobq.core.auth import Caller
from jobq.core.model import Completion, Job, JobEvent, Submitted
from jobq.core.views import WorkerHello
from jobq.doors.zmq.identity import Callers
from jobq.doors.zmq.native_groups import group_handlers
from jobq.doors.zmq.native_history import history_handler
from jobq.doors.zmq.native_links import Departures, Link
from jobq.doors.zmq.native_schedules import schedule_handler
from jobq.doors.zmq.router import Peer, Sender
from jobq.errors import Forbidden, InvalidRequest, JobqError
from jobq.hub.hub import Hub, SubmitOutcome
from jobq.hub.sessions import WorkerDirectory
from jobq.protocol import native

log = logging.getLogger("jobq.doors.zmq.native")

_Handler = Callable[[bytes, Any, Caller], Awaitable[None]]
#: A message waiting for the end of its batch: who sent it, as whom, and over which connection.
_Queued = tuple[bytes, Any, Caller, Peer]


class _Subscriber:
    """A client that listens for events; forgotten when silent for ``subscriber_ttl``."""

    def __init__(self, door: NativeDoor, identity: bytes) -> None:
        self.door = door
        self.identity = identity
        self.last_seen = time.monotonic()
        #: Who subscribed (its subscriptions end when its token is revoked).
        self.principal = ""

    def __hash__(self) -> int:
        return hash(self.identity)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Subscriber) and other.identity == self.identity

    def push(self, events: list[JobEvent]) -> None:
        self.door.send(self.identity, native.Events(events=events))


def _strip(job: Job | None, payload: bool, timeline: bool = True) -> Job | None:
    """The job without its payload (unless asked for) and, in listings, without its timeline
    (up to 64 events a job: ``get`` and ``wait`` of the job have it)."""
    if job is None or ((payload or not job.payload) and (timeline or not job.timeline)):
        return job
    return msgspec.structs.replace(
        job, payload=job.payload if payload else [], timeline=job.timeline if timeline else []
    )


class NativeDoor:
    """The native protocol's handler on the router (installed by :mod:`jobq.app`)."""

    def __init__(self, hub: Hub, sender: Sender) -> None:
        self.hub = hub
        self.sender = sender
        self.callers = Callers(hub, sender, "zmq")
        #: With --auth a worker's jobs go only to a connection that showed its principal.
        self.strict = hub.guard.enabled
        self.workers = WorkerDirectory[bytes](self._unknown_worker)
        #: One link per connection, so a repeated hello is recognised as the same connection.
        self.links: dict[bytes, Link] = {}
        #: A closed connection detaches its worker (``native_links.py``).
        self.departures = Departures(self)
        self.subscribers: dict[bytes, _Subscriber] = {}
        self.malformed = 0
        self._submits: list[_Queued] = []
        self._dones: list[_Queued] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self._handlers: dict[type[Any], _Handler] = {
            native.Get: self._get,
            native.Wait: self._wait,
            native.Cancel: self._cancel,
            native.Retry: self._retry,
            native.ListJobs: self._list,
            native.Subscribe: self._subscribe,
            native.Unsubscribe: self._unsubscribe,
            native.Info: self._info,
            native.Ping: self._ping,
            native.WorkerCommand: self._worker_command,
            native.ServiceCommand: self._service_command,  # pause, resume: hub/queue_control.py
            native.BulkJobs: self._bulk,
            native.ScheduleCommand: schedule_handler(hub, self.send),  # zmq/native_schedules.py
            native.HistoryQuery: history_handler(hub, self.send),  # zmq/native_history.py
            **group_handlers(hub, self.send, self._subscriber),  # submit_group, group...: native_groups.py
            native.Heartbeat: self._heartbeat,
            native.SetSlots: self._set_slots,
            native.Fail: self._fail,
            native.Progress: self._progress,
            native.Release: self._release,
            native.Bye: self._bye,
        }
        hub.on_revoke(self._revoked)
        sender.on_disconnect(self.departures.closed)

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().call_later(5.0, self._sweep)

    # ------------------------------------------------------------------ plumbing

    def send(self, identity: bytes, message: native.Outbound) -> None:
        self.sender.send(identity, (native.HEADER, native.encode(message)))

    def handle(self, identity: bytes, frames: list[bytes]) -> bool:
        if frames[0] != native.HEADER:
            return False
        if len(frames) != 2:
            self._reject(identity, 0, InvalidRequest("JQ1 messages have exactly one body frame"))
            return True
        try:
            message = native.decode_inbound(frames[1])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._reject(identity, 0, InvalidRequest(f"malformed JQ1 message: {exc}"))
            return True
        # Who speaks is established now: the connection is known only while its message is.
        try:
            caller, peer = self.callers.identify(identity, message.credential)
        except JobqError as exc:
            self._reject(identity, getattr(message, "rid", 0), exc)
            return True
        kind = type(message)
        if kind is native.Submit:
            self._submits.append((identity, message, caller, peer))
        elif kind is native.Done:
            self._dones.append((identity, message, caller, peer))
        elif kind is native.Hello:
            self.hub.spawn(self._guard(identity, message, caller, self._hello_from(peer)))
        else:
            if self.strict and kind in _WORKER_MESSAGES:
                try:
                    self._check_principal(identity, caller, peer)
                except JobqError as exc:
                    self._reject(identity, 0, exc)
                    return True
            self.hub.spawn(self._guard(identity, message, caller, self._handlers[kind]))
        return True

    def end_of_batch(self) -> None:
        """Submits and results that arrived together go to the hub together: one call (and one
        commit) for all of them instead of one task per message."""
        if self._submits:
            submits, self._submits = self._submits, []
            self.hub.spawn(self._submit_together(submits))
        if self._dones:
            dones, self._dones = self._dones, []
            self.hub.spawn(self.departures.results(self._done_together(dones)))

    async def _submit_together(self, submits: list[_Queued]) -> None:
        """The hub answers each spec on its own: a refused one fails alone. Submits of one
        principal share a hub call (restricted callers each their own, for the audit log)."""
        groups: dict[object, list[_Queued]] = {}
        for item in submits:
            caller = item[2]
            groups.setdefault(caller.principal if caller.unrestricted else caller, []).append(item)
        for group in groups.values():
            await self._submit_group(group)

    async def _submit_group(self, submits: list[_Queued]) -> None:
        specs = [spec for _, msg, _, _ in submits for spec in msg.jobs]
        try:
            outcomes = await self.hub.submit(specs, caller=submits[0][2])
        except Exception as exc:  # the hub takes no jobs now (shutting down), or a bug
            error = (
                exc.with_traceback(None) if isinstance(exc, JobqError) else self._internal(exc, "submitting")
            )
            for identity, msg, _, _ in submits:
                self._reject(identity, msg.rid, error)
            return
        start = 0
        for identity, msg, caller, _ in submits:
            part = outcomes[start : start + len(msg.jobs)]
            start += len(msg.jobs)
            self._accepted(identity, msg, part, caller)

    async def _done_together(self, dones: list[_Queued]) -> None:
        by_worker: dict[str, list[Completion]] = {}
        for identity, msg, caller, peer in dones:
            if self.strict:
                try:
                    self._check_principal(identity, caller, peer)
                except JobqError as exc:
                    self._reject(identity, 0, exc)
                    continue
            worker_id = self.workers.worker_of(identity) or ""
            by_worker.setdefault(worker_id, []).extend(Completion(i, t, r) for i, t, r in msg.results)
        outcomes: list[object]
        if len(by_worker) == 1:
            ((worker_id, results),) = by_worker.items()
            try:
                outcomes = [await self.hub.complete(worker_id, results)]
            except JobqError as exc:
                outcomes = [exc.with_traceback(None)]
        else:
            # Concurrently, so that every worker's results share one commit.
            outcomes = await asyncio.gather(
                *(self.hub.complete(worker_id, results) for worker_id, results in by_worker.items()),
                return_exceptions=True,
            )
        for worker_id, outcome in zip(by_worker, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.warning("results of %s refused: %s", worker_id, outcome)

    async def _guard(self, identity: bytes, message: Any, caller: Caller, handler: _Handler) -> None:
        try:
            await handler(identity, message, caller)
        except JobqError as exc:
            self._reject(identity, getattr(message, "rid", 0), exc)
        except Exception as exc:
            self._reject(
                identity,
                getattr(message, "rid", 0),
                self._internal(exc, f"handling {type(message).__name__}"),
            )

    @staticmethod
    def _internal(exc: Exception, doing: str) -> JobqError:
        log.error("%s failed", doing, exc_info=exc)
        return JobqError(f"internal error: {exc}")

    def _reject(self, identity: bytes, rid: int, exc: JobqError) -> None:
        self.malformed += exc.code == "invalid"
        self.send(identity, native.Error(rid=rid, code=exc.code, message=exc.message))

    def _subscriber(self, identity: bytes, caller: Caller) -> _Subscriber:
        sub = self.subscribers.get(identity)
        if sub is None:
            sub = self.subscribers[identity] = _Subscriber(self, identity)
        sub.last_seen = time.monotonic()
        sub.principal = caller.principal.name
        return sub

    def _sweep(self) -> None:
        limit = time.monotonic() - self.hub.config.subscriber_ttl
        for identity, sub in list(self.subscribers.items()):
            if sub.last_seen < limit:
                self.hub.unwatch(sub)
                del self.subscribers[identity]
        self._sweeper = asyncio.get_running_loop().call_later(5.0, self._sweep)

    def _revoked(self, names: set[str]) -> None:
        """A revoked token's subscriptions end (its workers are dropped by the hub)."""
        for identity, sub in list(self.subscribers.items()):
            if sub.principal in names:
                self.hub.unwatch(sub)
                del self.subscribers[identity]

    def forget_worker(self, identity: bytes) -> str | None:
        worker_id = self.workers.forget(identity)
        self.links.pop(identity, None)
        self.departures.forgot(identity, worker_id)
        return worker_id

    def _unknown_worker(self, identity: bytes) -> None:
        self.send(identity, native.Reconnect(reason="unknown worker; say hello"))

    def _check_principal(self, identity: bytes, caller: Caller, peer: Peer) -> None:
        """With --auth, only the principal that said hello may speak for the worker bound to
        this connection's identity; a connection that shows it becomes the worker's connection."""
        worker_id = self.workers.peek(identity)
        link = self.links.get(identity)
        if worker_id is None or link is None:
            return
        if caller.principal.name != link.principal:
            reason = f"worker {worker_id} was attached by another principal"
            self.hub.guard.audit.write("refused", caller, "work", f"worker {worker_id}", reason)
            raise Forbidden(f"not allowed: {reason}")
        link.confirm(peer)

    # ------------------------------------------------------------------ clients

    def _accepted(
        self, identity: bytes, msg: native.Submit, outcomes: list[SubmitOutcome], caller: Caller
    ) -> None:
        """``accepted`` with the refused specs' errors; a submit of one refused spec gets an
        ``error``, as any refused request."""
        if len(outcomes) == 1 and isinstance(outcomes[0], JobqError):
            self._reject(identity, msg.rid, outcomes[0])
            return
        jobs: list[tuple[int, str, bool]] = []
        errors: list[tuple[int, str, str]] = []
        for index, item in enumerate(outcomes):
            if type(item) is Submitted:
                # A JobState is a str: it goes on the wire as its value (no enum lookups).
                jobs.append((item.job.id, item.job.state, item.created))
            elif isinstance(item, JobqError):
                errors.append((index, item.code, item.message))
        if errors:
            self.malformed += sum(code == "invalid" for _, code, _ in errors)
        if msg.watch:
            done = [item.job for item in outcomes if type(item) is Submitted]
            self.hub.watch_ends(self._subscriber(identity, caller), done, caller=caller)
        self.send(identity, native.Accepted(rid=msg.rid, jobs=jobs, errors=errors))

    async def _get(self, identity: bytes, msg: native.Get, caller: Caller) -> None:
        jobs = [await self.hub.find(job_id, caller=caller) for job_id in msg.ids]
        self.send(identity, native.Jobs(rid=msg.rid, jobs=[_strip(j, msg.payload) for j in jobs]))

    async def _wait(self, identity: bytes, msg: native.Wait, caller: Caller) -> None:
        waits = (self.hub.wait(job_id, msg.timeout, caller=caller) for job_id in msg.ids)
        jobs = await asyncio.gather(*waits)
        self.send(identity, native.Jobs(rid=msg.rid, jobs=[_strip(j, msg.payload) for j in jobs]))

    async def _cancel(self, identity: bytes, msg: native.Cancel, caller: Caller) -> None:
        jobs = [await self.hub.cancel(job_id, caller=caller) for job_id in msg.ids]
        self.send(identity, native.Jobs(rid=msg.rid, jobs=[_strip(j, False) for j in jobs]))

    async def _retry(self, identity: bytes, msg: native.Retry, caller: Caller) -> None:
        jobs = [await self.hub.retry(job_id, caller=caller) for job_id in msg.ids]
        self.send(identity, native.Jobs(rid=msg.rid, jobs=[_strip(j, False) for j in jobs]))

    async def _list(self, identity: bytes, msg: native.ListJobs, caller: Caller) -> None:
        query = msg.query
        if not 0 <= query.offset <= native.MAX_INT or not all(0 <= i <= native.MAX_INT for i in query.ids):
            raise InvalidRequest(f"ids and offset must be between 0 and {native.MAX_INT}")
        jobs = await self.hub.list_jobs(query, blocked=msg.blocked, caller=caller)
        self.send(identity, native.Jobs(rid=msg.rid, jobs=[_strip(j, False, timeline=False) for j in jobs]))

    async def _subscribe(self, identity: bytes, msg: native.Subscribe, caller: Caller) -> None:
        sub = self._subscriber(identity, caller)
        if msg.ids:
            self.hub.watch(sub, msg.ids, caller=caller)
        else:
            self.hub.watch_all(sub, caller=caller)
        self.send(identity, native.Reply(rid=msg.rid, value=True))

    async def _unsubscribe(self, identity: bytes, msg: native.Unsubscribe, caller: Caller) -> None:
        sub = self.subscribers.get(identity)
        if sub is not None:
            self.hub.unwatch(sub, msg.ids or None)
            if not msg.ids:
                del self.subscribers[identity]
        self.send(identity, native.Reply(rid=msg.rid, value=True))

    async def _info(self, identity: bytes, msg: native.Info, caller: Caller) -> None:
        value: Any
        if msg.what == "workers":
            value = await self.hub.workers(caller=caller)
        elif msg.what == "services":
            value = await self.hub.services(caller=caller)
        elif msg.what == "stats":
            stats = await self.hub.stats(caller=caller)
            value = {
                "jobs": stats.jobs,
                "counters": stats.counters,
                "workers": stats.workers,
                "hub": stats.hub,
            }
        elif msg.what == "explain":
            value = await self.hub.explain(msg.id, caller=caller)
        else:
            raise InvalidRequest(f"unknown info {msg.what!r}: workers, services, stats or explain")
        self.send(identity, native.Reply(rid=msg.rid, value=msgspec.to_builtins(value)))

    async def _ping(self, identity: bytes, msg: native.Ping, caller: Caller) -> None:
        sub = self.subscribers.get(identity)
        if sub is not None:
            sub.last_seen = time.monotonic()
        self.send(identity, native.Pong(rid=msg.rid, hub=self.hub.config.name))

    async def _worker_command(self, identity: bytes, msg: native.WorkerCommand, caller: Caller) -> None:
        notice = await self.hub.control_worker(msg.action, msg.worker, reason=msg.reason, caller=caller)
        self.send(identity, native.Reply(rid=msg.rid, value=msgspec.to_builtins(notice)))

    async def _service_command(self, identity: bytes, msg: native.ServiceCommand, caller: Caller) -> None:
        done = await self.hub.control_service(msg.action, msg.service, caller=caller)
        self.send(identity, native.Reply(rid=msg.rid, value=msgspec.to_builtins(done)))

    async def _bulk(self, identity: bytes, msg: native.BulkJobs, caller: Caller) -> None:
        done = await self.hub.bulk(msg.action, msg.query, blocked=msg.blocked, caller=caller)
        self.send(identity, native.Reply(rid=msg.rid, value=msgspec.to_builtins(done)))

    # ------------------------------------------------------------------ workers

    def _hello_from(self, peer: Peer) -> _Handler:
        async def hello(identity: bytes, msg: native.Hello, caller: Caller) -> None:
            await self._hello(identity, msg, caller, peer)

        return hello

    async def _hello(self, identity: bytes, msg: native.Hello, caller: Caller, peer: Peer) -> None:
        if not msg.worker_id:
            raise InvalidRequest("hello needs a worker_id")
        hello = WorkerHello(
            id=msg.worker_id,
            services=msg.services,
            capabilities=msg.capabilities,
            slots=msg.slots,
            name=msg.name,
            door="zmq",
            schemas=msg.schemas,
            unhealthy=msg.unhealthy,
        )
        name = caller.principal.name
        link = self.links.get(identity)
        if link is not None and link.gone:
            link = None  # its connection closed: this hello is a new connection's
        if link is not None and link.principal != name:
            if self.strict:
                # The identity is another principal's worker's until that worker leaves.
                reason = "this connection's identity belongs to another principal's worker"
                self.hub.guard.audit.write("refused", caller, "attach", f"worker {msg.worker_id}", reason)
                raise Forbidden(f"not allowed: {reason}")
            link = None
        if link is None:
            link = Link(self, identity, peer, name)
        # This connection is the worker's now; what was held back from it, the hub's attach
        # gives back to the queue unless the worker says it holds it.
        link.peer, link.pending, link.worker_id = peer, [], msg.worker_id
        attaching = self.hub.attach(hello, link, held=msg.held, caller=caller)
        welcome = await self.departures.attach(identity, link, attaching)
        if welcome is None:
            return  # its connection closed while the hub attached it
        self.links[identity] = link
        self.workers.bind(identity, msg.worker_id)
        self.send(
            identity,
            native.Welcome(
                heartbeat=welcome.heartbeat, lease_ttl=welcome.lease_ttl, kept=welcome.kept, hub=welcome.hub
            ),
        )

    async def _heartbeat(self, identity: bytes, msg: native.Heartbeat, caller: Caller) -> None:
        worker_id = self.workers.worker_of(identity)
        if worker_id is not None and await self.hub.heartbeat(worker_id, msg.metrics, msg.unhealthy):
            self.send(identity, native.Heartbeat())

    async def _set_slots(self, identity: bytes, msg: native.SetSlots, caller: Caller) -> None:
        worker_id = self.workers.worker_of(identity)
        if worker_id is not None:
            await self.hub.set_slots(worker_id, msg.slots)

    async def _fail(self, identity: bytes, msg: native.Fail, caller: Caller) -> None:
        worker_id = self.workers.worker_of(identity) or ""
        await self.hub.fail(
            worker_id, msg.id, msg.token, msg.error, retryable=msg.retryable, traceback=msg.traceback
        )

    async def _progress(self, identity: bytes, msg: native.Progress, caller: Caller) -> None:
        worker_id = self.workers.worker_of(identity) or ""
        preview = [msg.preview] if msg.preview else None  # the event's partial frames: not kept
        await self.hub.progress(worker_id, msg.id, msg.token, msg.value, msg.message, preview)

    async def _release(self, identity: bytes, msg: native.Release, caller: Caller) -> None:
        worker_id = self.workers.worker_of(identity) or ""
        await self.hub.release(worker_id, msg.jobs)

    async def _bye(self, identity: bytes, msg: native.Bye, caller: Caller) -> None:
        await self.departures.settled()  # its last results first
        worker_id = self.forget_worker(identity)
        if worker_id is not None:
            await self.hub.detach(worker_id, "said bye")


#: Messages that act as the connection's worker (checked against its principal with --auth).
_WORKER_MESSAGES = frozenset(
    {native.Heartbeat, native.SetSlots, native.Fail, native.Progress, native.Release, native.Bye}
)
