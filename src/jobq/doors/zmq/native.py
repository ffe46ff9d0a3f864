"""The native protocol on the ZeroMQ door: decode, call the hub, encode.

Results, failures and progress are accepted from any connection that presents a valid fencing
token, known session or not: after a hub restart a worker's queued results still land, and the
worker is told to say ``hello`` again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from jobq.core.model import Completion, Job, JobEvent, Submitted, assignment_of
from jobq.core.views import WorkerHello
from jobq.doors.zmq.router import Sender
from jobq.errors import InvalidRequest, JobqError
from jobq.hub.hub import Hub, SubmitOutcome
from jobq.hub.sessions import WorkerDirectory
from jobq.protocol import native

log = logging.getLogger("jobq.doors.zmq.native")

_Handler = Callable[[bytes, Any], Awaitable[None]]


class _Link:
    """A jobq SDK worker on the ZeroMQ door, as the hub sees it."""

    pushes = True

    def __init__(self, door: NativeDoor, identity: bytes) -> None:
        self.door = door
        self.identity = identity

    def deliver(self, jobs: Sequence[Job]) -> None:
        self.door.send(self.identity, native.Assign(jobs=[assignment_of(job) for job in jobs]))

    def stop(self, job_ids: Sequence[int]) -> None:
        self.door.send(self.identity, native.CancelJobs(ids=list(job_ids)))

    def disconnect(self, reason: str) -> None:
        self.door.forget_worker(self.identity)
        self.door.send(self.identity, native.Reconnect(reason=reason))


class _Subscriber:
    """A client that listens for events; forgotten when silent for ``subscriber_ttl``."""

    def __init__(self, door: NativeDoor, identity: bytes) -> None:
        self.door = door
        self.identity = identity
        self.last_seen = time.monotonic()

    def __hash__(self) -> int:
        return hash(self.identity)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Subscriber) and other.identity == self.identity

    def push(self, events: list[JobEvent]) -> None:
        self.door.send(self.identity, native.Events(events=events))


def _strip(job: Job | None, payload: bool) -> Job | None:
    if job is None or payload or not job.payload:
        return job
    return msgspec.structs.replace(job, payload=[])


class NativeDoor:
    """The native protocol's handler on the router (installed by :mod:`jobq.app`)."""

    def __init__(self, hub: Hub, sender: Sender) -> None:
        self.hub = hub
        self.sender = sender
        self.workers = WorkerDirectory[bytes](self._unknown_worker)
        #: One link per connection, so a repeated hello is recognised as the same connection.
        self.links: dict[bytes, _Link] = {}
        self.subscribers: dict[bytes, _Subscriber] = {}
        self.malformed = 0
        self._submits: list[tuple[bytes, native.Submit]] = []
        self._dones: list[tuple[bytes, native.Done]] = []
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
            native.Hello: self._hello,
            native.Heartbeat: self._heartbeat,
            native.SetSlots: self._set_slots,
            native.Fail: self._fail,
            native.Progress: self._progress,
            native.Release: self._release,
            native.Bye: self._bye,
        }

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
        kind = type(message)
        if kind is native.Submit:
            self._submits.append((identity, message))  # type: ignore[arg-type]
        elif kind is native.Done:
            self._dones.append((identity, message))  # type: ignore[arg-type]
        else:
            self.hub.spawn(self._guard(identity, message, self._handlers[kind]))
        return True

    def end_of_batch(self) -> None:
        """Submits and results that arrived together go to the hub together: one call (and one
        commit) for all of them instead of one task per message."""
        if self._submits:
            submits, self._submits = self._submits, []
            self.hub.spawn(self._submit_together(submits))
        if self._dones:
            dones, self._dones = self._dones, []
            self.hub.spawn(self._done_together(dones))

    async def _submit_together(self, submits: list[tuple[bytes, native.Submit]]) -> None:
        """The hub answers each spec on its own: a refused one fails alone."""
        specs = [spec for _, msg in submits for spec in msg.jobs]
        try:
            outcomes = await self.hub.submit(specs)
        except Exception as exc:  # the hub takes no jobs now (shutting down), or a bug
            error = exc if isinstance(exc, JobqError) else self._internal(exc, "submitting")
            for identity, msg in submits:
                self._reject(identity, msg.rid, error)
            return
        start = 0
        for identity, msg in submits:
            part = outcomes[start : start + len(msg.jobs)]
            start += len(msg.jobs)
            self._accepted(identity, msg, part)

    async def _done_together(self, dones: list[tuple[bytes, native.Done]]) -> None:
        by_worker: dict[str, list[Completion]] = {}
        for identity, msg in dones:
            worker_id = self.workers.worker_of(identity) or ""
            by_worker.setdefault(worker_id, []).extend(Completion(i, t, r) for i, t, r in msg.results)
        outcomes: list[object]
        if len(by_worker) == 1:
            ((worker_id, results),) = by_worker.items()
            try:
                outcomes = [await self.hub.complete(worker_id, results)]
            except JobqError as exc:
                outcomes = [exc]
        else:
            # Concurrently, so that every worker's results share one commit.
            outcomes = await asyncio.gather(
                *(self.hub.complete(worker_id, results) for worker_id, results in by_worker.items()),
                return_exceptions=True,
            )
        for worker_id, outcome in zip(by_worker, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.warning("results of %s refused: %s", worker_id, outcome)

    async def _guard(
        self, identity: bytes, message: Any, handler: Callable[[bytes, Any], Awaitable[None]]
    ) -> None:
        try:
            await handler(identity, message)
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

    def _subscriber(self, identity: bytes) -> _Subscriber:
        sub = self.subscribers.get(identity)
        if sub is None:
            sub = self.subscribers[identity] = _Subscriber(self, identity)
        sub.last_seen = time.monotonic()
        return sub

    def _sweep(self) -> None:
        limit = time.monotonic() - self.hub.config.subscriber_ttl
        for identity, sub in list(self.subscribers.items()):
            if sub.last_seen < limit:
                self.hub.unwatch(sub)
                del self.subscribers[identity]
        self._sweeper = asyncio.get_running_loop().call_later(5.0, self._sweep)

    def forget_worker(self, identity: bytes) -> None:
        self.workers.forget(identity)
        self.links.pop(identity, None)

    def _unknown_worker(self, identity: bytes) -> None:
        self.send(identity, native.Reconnect(reason="unknown worker; say hello"))

    # ------------------------------------------------------------------ clients

    def _accepted(self, identity: bytes, msg: native.Submit, outcomes: list[SubmitOutcome]) -> None:
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
            self.hub.watch_ends(self._subscriber(identity), done)
        self.send(identity, native.Accepted(rid=msg.rid, jobs=jobs, errors=errors))

    async def _get(self, identity: bytes, msg: native.Get) -> None:
        jobs = [await self.hub.find(job_id) for job_id in msg.ids]
        self.send(identity, native.Jobs(rid=msg.rid, jobs=[_strip(j, msg.payload) for j in jobs]))

    async def _wait(self, identity: bytes, msg: native.Wait) -> None:
        jobs = await asyncio.gather(*(self.hub.wait(job_id, msg.timeout) for job_id in msg.ids))
        self.send(identity, native.Jobs(rid=msg.rid, jobs=[_strip(j, msg.payload) for j in jobs]))

    async def _cancel(self, identity: bytes, msg: native.Cancel) -> None:
        jobs = [await self.hub.cancel(job_id) for job_id in msg.ids]
        self.send(identity, native.Jobs(rid=msg.rid, jobs=[_strip(j, False) for j in jobs]))

    async def _retry(self, identity: bytes, msg: native.Retry) -> None:
        jobs = [await self.hub.retry(job_id) for job_id in msg.ids]
        self.send(identity, native.Jobs(rid=msg.rid, jobs=[_strip(j, False) for j in jobs]))

    async def _list(self, identity: bytes, msg: native.ListJobs) -> None:
        jobs = await self.hub.list_jobs(msg.query, blocked=msg.blocked)
        self.send(identity, native.Jobs(rid=msg.rid, jobs=[_strip(j, False) for j in jobs]))

    async def _subscribe(self, identity: bytes, msg: native.Subscribe) -> None:
        sub = self._subscriber(identity)
        if msg.ids:
            self.hub.watch(sub, msg.ids)
        else:
            self.hub.watch_all(sub)
        self.send(identity, native.Reply(rid=msg.rid, value=True))

    async def _unsubscribe(self, identity: bytes, msg: native.Unsubscribe) -> None:
        sub = self.subscribers.get(identity)
        if sub is not None:
            self.hub.unwatch(sub, msg.ids or None)
            if not msg.ids:
                del self.subscribers[identity]
        self.send(identity, native.Reply(rid=msg.rid, value=True))

    async def _info(self, identity: bytes, msg: native.Info) -> None:
        value: Any
        if msg.what == "workers":
            value = await self.hub.workers()
        elif msg.what == "services":
            value = await self.hub.services()
        elif msg.what == "stats":
            stats = await self.hub.stats()
            value = {
                "jobs": stats.jobs,
                "counters": stats.counters,
                "workers": stats.workers,
                "hub": stats.hub,
            }
        elif msg.what == "explain":
            value = await self.hub.explain(msg.id)
        else:
            raise InvalidRequest(f"unknown info {msg.what!r}: workers, services, stats or explain")
        self.send(identity, native.Reply(rid=msg.rid, value=msgspec.to_builtins(value)))

    async def _ping(self, identity: bytes, msg: native.Ping) -> None:
        sub = self.subscribers.get(identity)
        if sub is not None:
            sub.last_seen = time.monotonic()
        self.send(identity, native.Pong(rid=msg.rid, hub=self.hub.config.name))

    # ------------------------------------------------------------------ workers

    async def _hello(self, identity: bytes, msg: native.Hello) -> None:
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
        )
        link = self.links.get(identity)
        if link is None:
            link = self.links[identity] = _Link(self, identity)
        welcome = await self.hub.attach(hello, link, held=msg.held)
        self.workers.bind(identity, msg.worker_id)
        self.send(
            identity,
            native.Welcome(
                heartbeat=welcome.heartbeat, lease_ttl=welcome.lease_ttl, kept=welcome.kept, hub=welcome.hub
            ),
        )

    async def _heartbeat(self, identity: bytes, msg: native.Heartbeat) -> None:
        worker_id = self.workers.worker_of(identity)
        if worker_id is not None and await self.hub.heartbeat(worker_id, msg.metrics):
            self.send(identity, native.Heartbeat())

    async def _set_slots(self, identity: bytes, msg: native.SetSlots) -> None:
        worker_id = self.workers.worker_of(identity)
        if worker_id is not None:
            await self.hub.set_slots(worker_id, msg.slots)

    async def _fail(self, identity: bytes, msg: native.Fail) -> None:
        worker_id = self.workers.worker_of(identity) or ""
        await self.hub.fail(worker_id, msg.id, msg.token, msg.error, retryable=msg.retryable)

    async def _progress(self, identity: bytes, msg: native.Progress) -> None:
        worker_id = self.workers.worker_of(identity) or ""
        await self.hub.progress(worker_id, msg.id, msg.token, msg.value, msg.message)

    async def _release(self, identity: bytes, msg: native.Release) -> None:
        worker_id = self.workers.worker_of(identity) or ""
        await self.hub.release(worker_id, msg.jobs)

    async def _bye(self, identity: bytes, msg: native.Bye) -> None:
        worker_id = self.workers.forget(identity)
        self.links.pop(identity, None)
        if worker_id is not None:
            await self.hub.detach(worker_id, "said bye")
