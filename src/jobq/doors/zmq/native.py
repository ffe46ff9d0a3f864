"""jobq's own protocol (JQP/1) on the ZeroMQ door: decode, call the hub, encode.

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

from jobq.core.model import Completion, Job, JobEvent, Submitted, WorkerInfo, assignment_of
from jobq.core.states import TERMINAL
from jobq.doors.zmq.router import ZmqRouter
from jobq.errors import InvalidRequest, JobqError
from jobq.hub.events import event_of
from jobq.hub.hub import Hub
from jobq.protocol import native as jqp

log = logging.getLogger("jobq.doors.zmq.native")

_Handler = Callable[[bytes, Any], Awaitable[None]]

_encode = msgspec.msgpack.Encoder().encode


class _Link:
    """A jobq SDK worker on the ZeroMQ door, as the hub sees it."""

    pushes = True

    def __init__(self, door: NativeDoor, identity: bytes) -> None:
        self.door = door
        self.identity = identity

    def deliver(self, jobs: Sequence[Job]) -> None:
        self.door.send(self.identity, jqp.Assign(jobs=[assignment_of(job) for job in jobs]))

    def stop(self, job_ids: Sequence[int]) -> None:
        self.door.send(self.identity, jqp.CancelJobs(ids=list(job_ids)))

    def disconnect(self, reason: str) -> None:
        self.door.forget_worker(self.identity)
        self.door.send(self.identity, jqp.Reconnect(reason=reason))


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
        self.door.send(self.identity, jqp.Events(events=events))


def _strip(job: Job | None, payload: bool) -> Job | None:
    if job is None or payload or not job.payload:
        return job
    return msgspec.structs.replace(job, payload=[])


class NativeDoor:
    def __init__(self, hub: Hub, router: ZmqRouter) -> None:
        self.hub = hub
        self.router = router
        self.workers: dict[bytes, str] = {}
        #: One link per connection, so a repeated hello is recognised as the same connection.
        self.links: dict[bytes, _Link] = {}
        self.subscribers: dict[bytes, _Subscriber] = {}
        self.malformed = 0
        self._submits: list[tuple[bytes, jqp.Submit]] = []
        self._dones: list[tuple[bytes, jqp.Done]] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self._handlers: dict[type[Any], _Handler] = {
            jqp.Submit: self._submit,
            jqp.Get: self._get,
            jqp.Wait: self._wait,
            jqp.Cancel: self._cancel,
            jqp.Retry: self._retry,
            jqp.ListJobs: self._list,
            jqp.Subscribe: self._subscribe,
            jqp.Unsubscribe: self._unsubscribe,
            jqp.Info: self._info,
            jqp.Ping: self._ping,
            jqp.Hello: self._hello,
            jqp.Heartbeat: self._heartbeat,
            jqp.SetSlots: self._set_slots,
            jqp.Fail: self._fail,
            jqp.Progress: self._progress,
            jqp.Release: self._release,
            jqp.Bye: self._bye,
        }

    def install(self) -> None:
        self.router.add_handler(self.handle, self._end_of_batch)
        self._sweeper = asyncio.get_running_loop().call_later(5.0, self._sweep)

    # ------------------------------------------------------------------ plumbing

    def send(self, identity: bytes, message: jqp.Outbound) -> None:
        self.router.send(identity, (jqp.HEADER, _encode(message)))

    def handle(self, identity: bytes, frames: list[bytes]) -> bool:
        if frames[0] != jqp.HEADER:
            return False
        if len(frames) != 2:
            self._reject(identity, 0, InvalidRequest("JQ1 messages have exactly one body frame"))
            return True
        try:
            message = jqp.decode_inbound(frames[1])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._reject(identity, 0, InvalidRequest(f"malformed JQ1 message: {exc}"))
            return True
        kind = type(message)
        if kind is jqp.Submit:
            self._submits.append((identity, message))  # type: ignore[arg-type]
        elif kind is jqp.Done:
            self._dones.append((identity, message))  # type: ignore[arg-type]
        else:
            self.hub.spawn(self._guard(identity, message, self._handlers[kind]))
        return True

    def _end_of_batch(self) -> None:
        """Submits and results that arrived together go to the hub together: one call (and one
        commit) for all of them instead of one task per message."""
        if self._submits:
            submits, self._submits = self._submits, []
            self.hub.spawn(self._submit_together(submits))
        if self._dones:
            dones, self._dones = self._dones, []
            self.hub.spawn(self._done_together(dones))

    async def _submit_together(self, submits: list[tuple[bytes, jqp.Submit]]) -> None:
        if len(submits) == 1:
            await self._guard(submits[0][0], submits[0][1], self._submit)
            return
        specs = [spec for _, msg in submits for spec in msg.jobs]
        try:
            done = await self.hub.submit(specs)
        except JobqError:
            # One bad submit must not fail the others: answer each on its own.
            await asyncio.gather(*(self._guard(i, m, self._submit) for i, m in submits))
            return
        start = 0
        for identity, msg in submits:
            part = done[start : start + len(msg.jobs)]
            start += len(msg.jobs)
            self._accepted(identity, msg, part)

    async def _done_together(self, dones: list[tuple[bytes, jqp.Done]]) -> None:
        by_worker: dict[str, list[Completion]] = {}
        for identity, msg in dones:
            worker_id = self.workers.get(identity) or self._worker_id(identity) or ""
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
            log.exception("handling %s failed", type(message).__name__)
            self._reject(identity, getattr(message, "rid", 0), JobqError(f"internal error: {exc}"))

    def _reject(self, identity: bytes, rid: int, exc: JobqError) -> None:
        self.malformed += exc.code == "invalid"
        self.send(identity, jqp.Error(rid=rid, code=exc.code, message=exc.message))

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
                self.hub.events.unsubscribe(sub)
                del self.subscribers[identity]
        self._sweeper = asyncio.get_running_loop().call_later(5.0, self._sweep)

    def forget_worker(self, identity: bytes) -> None:
        self.workers.pop(identity, None)
        self.links.pop(identity, None)

    def _worker_id(self, identity: bytes) -> str | None:
        worker_id = self.workers.get(identity)
        if worker_id is None:
            self.send(identity, jqp.Reconnect(reason="unknown worker; say hello"))
        return worker_id

    # ------------------------------------------------------------------ clients

    async def _submit(self, identity: bytes, msg: jqp.Submit) -> None:
        self._accepted(identity, msg, await self.hub.submit(msg.jobs))

    def _accepted(self, identity: bytes, msg: jqp.Submit, done: list[Submitted]) -> None:
        if msg.watch:
            sub = self._subscriber(identity)
            live = [item.job.id for item in done if item.job.state not in TERMINAL]
            self.hub.events.watch(sub, live, ends_only=True)
            ended = [item.job for item in done if item.job.state in TERMINAL]
            if ended:
                now = self.hub.clock()
                sub.push([event_of(job, job.state.value, now, with_result=True) for job in ended])
        self.send(
            identity,
            # A JobState is a str: it goes on the wire as its value (no enum lookups per job).
            jqp.Accepted(rid=msg.rid, jobs=[(i.job.id, i.job.state, i.created) for i in done]),
        )

    async def _get(self, identity: bytes, msg: jqp.Get) -> None:
        jobs = [await self.hub.store.get(job_id) for job_id in msg.ids]
        self.send(identity, jqp.Jobs(rid=msg.rid, jobs=[_strip(j, msg.payload) for j in jobs]))

    async def _wait(self, identity: bytes, msg: jqp.Wait) -> None:
        jobs = await asyncio.gather(*(self.hub.wait(job_id, msg.timeout) for job_id in msg.ids))
        self.send(identity, jqp.Jobs(rid=msg.rid, jobs=[_strip(j, msg.payload) for j in jobs]))

    async def _cancel(self, identity: bytes, msg: jqp.Cancel) -> None:
        jobs = [await self.hub.cancel(job_id) for job_id in msg.ids]
        self.send(identity, jqp.Jobs(rid=msg.rid, jobs=[_strip(j, False) for j in jobs]))

    async def _retry(self, identity: bytes, msg: jqp.Retry) -> None:
        jobs = [await self.hub.retry(job_id) for job_id in msg.ids]
        self.send(identity, jqp.Jobs(rid=msg.rid, jobs=[_strip(j, False) for j in jobs]))

    async def _list(self, identity: bytes, msg: jqp.ListJobs) -> None:
        jobs = await self.hub.list_jobs(msg.query, blocked=msg.blocked)
        self.send(identity, jqp.Jobs(rid=msg.rid, jobs=[_strip(j, False) for j in jobs]))

    async def _subscribe(self, identity: bytes, msg: jqp.Subscribe) -> None:
        sub = self._subscriber(identity)
        if msg.ids:
            self.hub.events.watch(sub, msg.ids)
        else:
            self.hub.events.subscribe_all(sub)
        self.send(identity, jqp.Reply(rid=msg.rid, value=True))

    async def _unsubscribe(self, identity: bytes, msg: jqp.Unsubscribe) -> None:
        sub = self.subscribers.get(identity)
        if sub is not None:
            self.hub.events.unsubscribe(sub, msg.ids or None)
            if not msg.ids:
                del self.subscribers[identity]
        self.send(identity, jqp.Reply(rid=msg.rid, value=True))

    async def _info(self, identity: bytes, msg: jqp.Info) -> None:
        value: Any
        if msg.what == "workers":
            value = await self.hub.workers()
        elif msg.what == "services":
            value = await self.hub.services()
        elif msg.what == "stats":
            value = {
                "jobs": await self.hub.stats(),
                "counters": self.hub.counters,
                "workers": len(self.hub.sessions),
                "hub": self.hub.config.name,
            }
        elif msg.what == "explain":
            value = await self.hub.explain(msg.id)
        else:
            raise InvalidRequest(f"unknown info {msg.what!r}: workers, services, stats or explain")
        self.send(identity, jqp.Reply(rid=msg.rid, value=msgspec.to_builtins(value)))

    async def _ping(self, identity: bytes, msg: jqp.Ping) -> None:
        sub = self.subscribers.get(identity)
        if sub is not None:
            sub.last_seen = time.monotonic()
        self.send(identity, jqp.Pong(rid=msg.rid, hub=self.hub.config.name))

    # ------------------------------------------------------------------ workers

    async def _hello(self, identity: bytes, msg: jqp.Hello) -> None:
        info = WorkerInfo(
            id=msg.worker_id,
            services=msg.services,
            capabilities=msg.capabilities,
            slots=msg.slots,
            name=msg.name,
            door="zmq",
            schemas=msg.schemas,
        )
        if not msg.worker_id:
            raise InvalidRequest("hello needs a worker_id")
        link = self.links.get(identity)
        if link is None:
            link = self.links[identity] = _Link(self, identity)
        kept = await self.hub.attach(info, link, held=msg.held)
        self.workers[identity] = msg.worker_id
        config = self.hub.config
        self.send(
            identity,
            jqp.Welcome(heartbeat=config.heartbeat, lease_ttl=config.lease_ttl, kept=kept, hub=config.name),
        )

    async def _heartbeat(self, identity: bytes, msg: jqp.Heartbeat) -> None:
        worker_id = self._worker_id(identity)
        if worker_id is not None and await self.hub.heartbeat(worker_id, msg.metrics):
            self.send(identity, jqp.Heartbeat())

    async def _set_slots(self, identity: bytes, msg: jqp.SetSlots) -> None:
        worker_id = self._worker_id(identity)
        if worker_id is not None:
            await self.hub.set_slots(worker_id, msg.slots)

    async def _fail(self, identity: bytes, msg: jqp.Fail) -> None:
        worker_id = self.workers.get(identity) or self._worker_id(identity) or ""
        await self.hub.fail(worker_id, msg.id, msg.token, msg.error, retryable=msg.retryable)

    async def _progress(self, identity: bytes, msg: jqp.Progress) -> None:
        worker_id = self.workers.get(identity) or self._worker_id(identity) or ""
        await self.hub.progress(worker_id, msg.id, msg.token, msg.value, msg.message)

    async def _release(self, identity: bytes, msg: jqp.Release) -> None:
        worker_id = self.workers.get(identity) or self._worker_id(identity) or ""
        await self.hub.release(worker_id, msg.jobs)

    async def _bye(self, identity: bytes, msg: jqp.Bye) -> None:
        worker_id = self.workers.pop(identity, None)
        self.links.pop(identity, None)
        if worker_id is not None:
            await self.hub.detach(worker_id, "said bye")
