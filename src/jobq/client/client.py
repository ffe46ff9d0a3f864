"""The client SDK: submit jobs, follow them, get their results. Async first.

Submits made in the same event-loop turn travel to the hub as one message
(:mod:`jobq.client.batching`); each call still gets its own outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any, TypeVar

import msgspec

from jobq.client.batching import SUBMIT_BATCH, SubmitResult, TurnBatcher, outcomes_of
from jobq.client.chains import ChainCalls
from jobq.client.groups import GroupCalls
from jobq.client.listing import light, list_by_worker, states_named, worker_ids
from jobq.client.reach import BlockedCallback, first_answer, hub_endpoints, log_blocked, while_blocked
from jobq.client.schedules import ScheduleCalls
from jobq.client.specs import PayloadLike, final_event, make_spec, to_frames
from jobq.config import DEFAULT_HUB
from jobq.core.model import Job, JobEvent, JobFilter, JobSpec, WorkerInfo
from jobq.core.states import COMPLETED
from jobq.core.views import ExplainInfo, ServiceInfo, WorkerNotice
from jobq.errors import InvalidRequest, JobFailed, JobqError, Timeout, Unavailable
from jobq.protocol import native
from jobq.protocol.connection import Connection, token_from_env

T = TypeVar("T")

#: Jobs whose state one request asks for while catching up after a failover.
RESYNC_CHUNK = 200
#: Seconds between checks of the oldest watched jobs still waiting: a safety net for an end
#: that was lost on the way (the hub dropped it to a slow client, or died holding it).
CATCH_UP_EVERY = 30.0

log = logging.getLogger("jobq.client")


# schedules: client/schedules.py; pause_service, bulk: client/operations.py; groups: client/groups.py
class Client(GroupCalls, ScheduleCalls, ChainCalls):  # chains: client/chains.py
    """A connection to a hub for submitting and following jobs.

    ``hub`` is an endpoint or a list of them (tried in order on failover). ``token`` (default:
    the environment's ``JOBQ_TOKEN``) goes with every message; a hub with ``--auth`` refuses a
    call without the right with ``Unauthorized`` or ``Forbidden``. ``curve_server_key`` (the
    hub's CURVE public key) with this client's key pair (``curve_secret_key``, and
    ``curve_public_key`` to check it) encrypts the connection for a ``?curve`` listener.

    An endpoint is ``tcp://HOST:PORT`` (or ``HOST:PORT``) or ``ipc://PATH``; when nothing listens
    there the first call fails within a second with ``Unavailable``. While ``wait``, ``result``
    or ``finished`` wait for a job no worker can run, ``on_blocked(job_id, reason)`` is called
    within about a second (default: a logged warning), and the wait goes on (client/reach.py).
    """

    def __init__(
        self,
        hub: str | Sequence[str] = DEFAULT_HUB,
        *,
        timeout: float = 10.0,
        token: str | None = None,
        curve_server_key: str | bytes | None = None,
        curve_public_key: str | bytes | None = None,
        curve_secret_key: str | bytes | None = None,
    ) -> None:
        self.token = token_from_env(token)
        self.conn = Connection(
            hub_endpoints(hub),
            on_push=self._on_push,
            timeout=timeout,
            credential=self.token,
            curve_server_key=curve_server_key,
            curve_public_key=curve_public_key,
            curve_secret_key=curve_secret_key,
        )
        self._opened = False
        #: A hub answered on this connection (until then, a slow answer is checked with a probe).
        self._heard = False
        self.on_blocked: BlockedCallback | None = log_blocked
        self._finished: dict[int, asyncio.Future[JobEvent]] = {}
        self._streams: list[asyncio.Queue[JobEvent]] = []
        self._pinger: asyncio.Task[None] | None = None
        #: Watched submits not yet answered: their jobs' ends may arrive before the answer.
        self._watch_inflight = 0
        #: With several endpoints a request moves on to the next hub when one does not answer,
        #: and submits carry idempotency keys, so a submit sent again creates nothing twice.
        self._failover = len(self.conn.endpoints) > 1
        self._epoch = 0
        self._keys = itertools.count(1)
        self._key_base = f"jobq-{uuid.uuid4().hex[:12]}-"
        self._subscriptions: list[list[int]] = []
        self._resync_task: asyncio.Task[None] | None = None
        self.conn.on_disconnect = self._hub_dropped
        self._turns = TurnBatcher(
            self.conn,
            credential=self.token,
            failover=self._failover,
            epoch=lambda: self._epoch,
            move_on=self._move_on,
        )

    # ------------------------------------------------------------------ connection

    async def connect(self) -> Client:
        if not self._opened:
            self.conn.open()
            self._opened = True
            if self._failover:
                self._ensure_pinger()  # notices a dead hub even while nothing is asked
        return self

    async def close(self) -> None:
        for task in (self._pinger, self._resync_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._opened:
            self.conn.close()
            self._opened = False

    async def __aenter__(self) -> Client:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ping(self, timeout: float | None = None) -> str:
        await self.connect()
        reply = await self._request(native.Ping(rid=self.conn.next_rid()), timeout)
        assert isinstance(reply, native.Pong)
        return reply.hub

    # ------------------------------------------------------------------ failover

    async def _request(self, message: native.Inbound, timeout: float | None = None) -> native.Outbound:
        """Send a request; with several endpoints, a hub that does not answer (or cannot serve
        now) is left for the next one and the request is sent again there."""
        left = len(self.conn.endpoints) - 1 if self._failover else 0
        while True:
            epoch = self._epoch
            try:
                return await self._answer(self.conn.request(message, timeout))
            except Unavailable:
                if left <= 0:
                    raise
                left -= 1
                self._move_on(epoch)

    async def _answer(self, answer: Awaitable[T]) -> T:
        """A reply; the first on a connection fails at once when nothing listens at the hub."""
        if self._heard:
            return await answer
        reply = await first_answer(answer, self.conn.endpoint)
        self._heard = True
        return reply

    def _hub_dropped(self) -> None:
        """The connection broke: the hub died or restarted, and with it what it knew of us.
        Move on to the next hub at once (or, with one endpoint, catch up once it is back)."""
        loop = asyncio.get_running_loop()
        if self._failover:
            loop.call_soon(self._move_on, self._epoch)  # not from inside the socket's callback
        elif self._finished or self._subscriptions:
            loop.call_soon(self._start_resync)

    def _start_resync(self) -> None:
        if not self._opened:
            return
        if self._resync_task is not None:
            self._resync_task.cancel()
        self._resync_task = asyncio.ensure_future(self._resync())

    def _move_on(self, epoch: int) -> None:
        """Connect to the next endpoint, unless another request already did since ``epoch``."""
        if epoch != self._epoch or not self._opened:
            return
        self._epoch += 1
        self._heard = False
        left = self.conn.endpoint
        log.warning("lost the hub at %s; moving to %s", left, self.conn.failover())
        if self._finished or self._subscriptions:
            self._start_resync()

    async def _resync(self) -> None:
        """After moving to another hub: listen there again, and catch up on watched jobs that
        ended meanwhile (their end may have been pushed to the hub we left). Tried until it
        succeeds: a watched job must not wait forever for an end it missed."""
        for attempt in itertools.count():
            try:
                for ids in list(self._subscriptions):
                    await self._request(native.Subscribe(rid=self.conn.next_rid(), ids=ids))
                waiting = [job_id for job_id, future in self._finished.items() if not future.done()]
                for start in range(0, len(waiting), RESYNC_CHUNK):
                    chunk = waiting[start : start + RESYNC_CHUNK]
                    await self._request(native.Subscribe(rid=self.conn.next_rid(), ids=chunk))
                    await self._catch_up(chunk)
                return
            except JobqError as exc:
                if not self._opened:
                    return
                log.info("catching up after a failover failed (%s); trying again", exc.message)
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))

    async def _catch_up(self, ids: list[int]) -> None:
        """Ends of these watched jobs that we may have missed, from their current state."""
        ended = [
            final_event(job)
            for job in await self._jobs(native.Get(rid=self.conn.next_rid(), ids=ids))
            if job is not None and job.state.terminal
        ]
        if ended:
            self._on_push(native.Events(events=ended))

    def _keyed(self, spec: JobSpec) -> JobSpec:
        """With failover, a submit may be sent twice: a key makes the second one a no-op."""
        if not self._failover or spec.idempotency_key is not None:
            return spec
        return msgspec.structs.replace(spec, idempotency_key=f"{self._key_base}{next(self._keys)}")

    # ------------------------------------------------------------------ submitting

    async def submit(self, /, service: str, payload: PayloadLike = None, **options: Any) -> int:
        """Submit one job; returns its id once the hub has durably accepted it."""
        job_id, _state, _created = await self.submit_spec(make_spec(service, payload, **options))
        return job_id

    async def submit_spec(self, spec: JobSpec, *, watch: bool = False) -> SubmitResult:
        """Submit a spec; returns (id, state, created). Batched with other submits of this turn;
        raises why the hub refused this spec (it fails alone)."""
        await self.connect()
        if watch:
            self._ensure_pinger()
        future = self._turns.add(self._keyed(spec), watch=watch)
        answer = future if self._failover else self._answer(future)  # failover: the batcher moves on
        if not watch:
            return await answer
        self._watch_inflight += 1
        epoch = self._epoch
        try:
            result = await answer
        finally:
            self._watch_inflight -= 1
        self._finished.setdefault(result[0], asyncio.get_running_loop().create_future())
        if epoch != self._epoch:
            self._start_resync()  # sent again elsewhere: its end may have come before the watch
        return result

    async def submit_many(self, specs: Iterable[JobSpec], *, watch: bool = False) -> list[SubmitResult]:
        """Submit many specs in as few messages as possible; returns (id, state, created) each.
        Raises the first refusal (the hub still created the specs it accepted)."""
        await self.connect()
        specs = [self._keyed(spec) for spec in specs]
        chunks = [specs[start : start + SUBMIT_BATCH] for start in range(0, len(specs), SUBMIT_BATCH)]
        out: list[SubmitResult] = []
        epoch = self._epoch
        self._watch_inflight += watch
        try:
            # Every chunk is sent at once: the hub works on the next while the last commits.
            replies = await asyncio.gather(
                *(
                    self._request(native.Submit(rid=self.conn.next_rid(), jobs=chunk, watch=watch))
                    for chunk in chunks
                )
            )
            for chunk, reply in zip(chunks, replies, strict=True):
                for outcome in outcomes_of(reply, len(chunk)):
                    if isinstance(outcome, JobqError):
                        raise outcome
                    out.append(outcome)
        finally:
            self._watch_inflight -= watch
        if watch:
            self._ensure_pinger()
            loop = asyncio.get_running_loop()
            for job_id, _, _ in out:
                self._finished.setdefault(job_id, loop.create_future())
            if epoch != self._epoch:
                self._start_resync()  # sent again elsewhere: ends may have come before the watch
        return out

    async def run(self, /, service: str, payload: PayloadLike = None, **options: Any) -> JobEvent:
        """Submit a job and wait for its end (pushed by the hub, no polling): the final event."""
        timeout = options.pop("wait_timeout", None)
        job_id, _, _ = await self.submit_spec(make_spec(service, payload, **options), watch=True)
        return await self.finished(job_id, timeout)

    async def finished(self, job_id: int, timeout: float | None = None) -> JobEvent:
        """The final event of a job submitted with ``watch=True``."""
        future = self._finished.get(job_id)
        if future is None:
            raise InvalidRequest(f"job {job_id} was not submitted with watch=True by this client")
        if future.done():
            del self._finished[job_id]
            return future.result()
        try:
            ending = asyncio.wait_for(asyncio.shield(future), timeout)
            return await while_blocked(ending, lambda: job_id, self.explain, self.on_blocked)
        except TimeoutError:
            raise Timeout(f"job {job_id} did not end within {timeout}s") from None
        finally:
            if future.done():
                self._finished.pop(job_id, None)

    # ------------------------------------------------------------------ following

    async def _jobs(self, message: native.Inbound, timeout: float | None = None) -> list[Job | None]:
        await self.connect()
        reply = await self._request(message, timeout)
        assert isinstance(reply, native.Jobs)
        return reply.jobs

    async def status(self, job_id: int, *, payload: bool = False) -> Job | None:
        """The job (with its payload when ``payload``), or None when there is no such job."""
        (job,) = await self._jobs(native.Get(rid=self.conn.next_rid(), ids=[job_id], payload=payload))
        return job

    async def wait(self, job_id: int, timeout: float | None = None) -> Job:
        """The job once it has ended (any way); raises Timeout. Says why if nobody can run it
        (``on_blocked``) while it keeps waiting."""
        reply_timeout = None if timeout is None else timeout + self.conn.timeout
        waiting = self._jobs(
            native.Wait(rid=self.conn.next_rid(), ids=[job_id], timeout=timeout), reply_timeout or 1e9
        )
        (job,) = await while_blocked(waiting, lambda: job_id, self.explain, self.on_blocked)
        assert job is not None
        return job

    async def result(self, job_id: int, timeout: float | None = None) -> bytes:
        """The job's result bytes; raises JobFailed if it failed or was cancelled."""
        job = await self.wait(job_id, timeout)
        if job.state is not COMPLETED:
            raise JobFailed(f"job {job_id} {job.state}: {job.error or ''}".rstrip(": "))
        return job.result_bytes

    async def cancel(self, job_id: int) -> Job:
        (job,) = await self._jobs(native.Cancel(rid=self.conn.next_rid(), ids=[job_id]))
        assert job is not None
        return job

    async def retry(self, job_id: int) -> Job:
        (job,) = await self._jobs(native.Retry(rid=self.conn.next_rid(), ids=[job_id]))
        assert job is not None
        return job

    async def jobs(
        self,
        *,
        state: str | Sequence[str] | None = None,
        service: str | None = None,
        customer_id: str | None = None,
        worker: str | None = None,
        limit: int = 100,
        offset: int = 0,
        blocked: bool = False,
        payload: bool = False,
        before: int | None = None,
        group: int | None = None,
    ) -> list[Job]:
        """Jobs, newest first. ``worker`` is a worker's id, or a connected worker's name or id
        prefix (``jobq.client.listing``); ``payload`` fetches each job's payload too; ``before``:
        only jobs with a smaller id (cursor paging: the last id of the page before)."""
        query = JobFilter(
            states=states_named(state),
            service=service,
            customer_id=customer_id,
            worker=worker,
            limit=limit,
            offset=offset,
            before_id=before,
            group=group,
        )
        ids = await worker_ids(worker, self.workers)
        found = await list_by_worker(
            lambda q: self._jobs(native.ListJobs(rid=self.conn.next_rid(), query=q, blocked=blocked)),
            query,
            ids,
        )
        if payload and found:  # a listing leaves payloads out: ask for them with the jobs
            full = await self._jobs(
                native.Get(rid=self.conn.next_rid(), ids=[j.id for j in found], payload=True)
            )
            found = [light(new) if new else old for old, new in zip(found, full, strict=True)]
        return found

    async def _info(self, what: str, job_id: int = 0) -> Any:
        return await self._reply(native.Info(rid=self.conn.next_rid(), what=what, id=job_id))

    async def workers(self) -> list[WorkerInfo]:
        return msgspec.convert(await self._info("workers"), list[WorkerInfo])

    async def services(self) -> list[ServiceInfo]:
        return msgspec.convert(await self._info("services"), list[ServiceInfo])

    async def stats(self) -> dict[str, Any]:
        value = await self._info("stats")
        assert isinstance(value, dict)
        return value

    async def explain(self, job_id: int) -> ExplainInfo:
        return msgspec.convert(await self._info("explain", job_id), ExplainInfo)

    async def _worker_command(self, action: str, worker: str, reason: str | None = None) -> WorkerNotice:
        message = native.WorkerCommand(rid=self.conn.next_rid(), action=action, worker=worker, reason=reason)
        return msgspec.convert(await self._reply(message), WorkerNotice)

    async def drain_worker(self, worker: str, reason: str | None = None) -> WorkerNotice:
        """No new jobs for this worker (its id, or a name only it has); it finishes what it runs.
        Admin only."""
        return await self._worker_command("drain", worker, reason)

    async def resume_worker(self, worker: str) -> WorkerNotice:
        """A drained worker takes jobs again. Admin only."""
        return await self._worker_command("resume", worker)

    async def evict_worker(self, worker: str) -> WorkerNotice:
        """Drain the worker and detach it now: its running jobs go back to the queue. Admin only."""
        return await self._worker_command("evict", worker)

    async def events(self, ids: Sequence[int] = ()) -> AsyncIterator[JobEvent]:
        """Events of these jobs (or of every job) as they happen."""
        await self.connect()
        queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._streams.append(queue)
        self._ensure_pinger()
        self._subscriptions.append(list(ids))
        try:
            await self._request(native.Subscribe(rid=self.conn.next_rid(), ids=list(ids)))
            while True:
                event = await queue.get()
                if not ids or event.id in ids:
                    yield event
        finally:
            self._streams.remove(queue)
            self._subscriptions.remove(list(ids))
            if self._opened:
                with contextlib.suppress(Exception):
                    await self.conn.request(native.Unsubscribe(rid=self.conn.next_rid(), ids=list(ids)), 1.0)

    # ------------------------------------------------------------------ pushes

    def _on_push(self, message: native.Outbound) -> None:
        if not isinstance(message, native.Events):
            return
        for event in message.events:
            if event.state.terminal:
                future = self._finished.get(event.id)
                if future is None and self._watch_inflight:
                    # Ended before our submit's answer was read: keep it for ``finished``.
                    future = self._finished[event.id] = asyncio.get_running_loop().create_future()
                if future is not None and not future.done():
                    future.set_result(event)
            for queue in self._streams:
                queue.put_nowait(event)

    def _ensure_pinger(self) -> None:
        """While we listen for events, tell the hub we are still here."""
        if self._pinger is None or self._pinger.done():
            self._pinger = asyncio.ensure_future(self._ping_forever())

    async def _ping_forever(self) -> None:
        # With failover the pings also find a dead hub: as often as the request timeout.
        interval = min(10.0, self.conn.timeout) if self._failover else 10.0
        loop_time = asyncio.get_running_loop().time
        last = loop_time()
        while True:
            await asyncio.sleep(interval)
            if self._finished and loop_time() - last >= CATCH_UP_EVERY:
                last = loop_time()
                oldest = [
                    i for i, f in itertools.islice(self._finished.items(), 10 * RESYNC_CHUNK) if not f.done()
                ]
                with contextlib.suppress(JobqError):
                    await self._catch_up(oldest[:RESYNC_CHUNK])
            epoch = self._epoch
            try:
                await self.conn.request(native.Ping(rid=self.conn.next_rid()), min(5.0, self.conn.timeout))
            except Unavailable:
                if self._failover:
                    self._move_on(epoch)
            except Exception:
                pass


__all__ = ["BlockedCallback", "Client", "PayloadLike", "log_blocked", "make_spec", "to_frames"]
