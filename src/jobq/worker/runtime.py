"""The worker SDK: connect to a hub, take jobs for the services it serves, run their handlers.

- Concurrency: async handlers run as tasks, sync handlers on a thread pool; at most
  ``concurrency`` at once. The hub pushes up to ``concurrency + prefetch`` jobs (its credit).
- Results finished in one event-loop turn travel as one message.
- Heartbeats carry CPU and memory figures and renew the leases of running jobs. A hub that goes
  silent is left for the next endpoint (or the same one again); the worker says ``hello`` with
  the attempts it still holds, so it keeps them if their leases held, and re-sends results the
  hub may not have seen (they are fenced by token, so a duplicate is harmless).
- ``stop()`` drains: no new jobs, running ones finish (up to ``grace``), the rest go back.
- Connectors (:mod:`jobq.worker.connectors`) drive services. While one is unhealthy the worker
  says ``hello`` without it, gives back its pushed jobs and fails its running ones retryably,
  until its health returns (``service_health``, ``on_health_change``; docs/connectors.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from jobq.config import DEFAULT_HUB
from jobq.core.model import Assignment, Frames
from jobq.errors import JobqError, error_from_code
from jobq.protocol import native as jqp
from jobq.worker.capabilities import advertised, machine_metrics
from jobq.worker.connectors.base import Connector, ServiceUnavailable
from jobq.worker.connectors.manager import ConnectorManager, HealthCallback
from jobq.worker.connectors.steering import triage
from jobq.worker.context import HandlerError, HandlerFn, JobCancelled, JobContext
from jobq.worker.failures import failure
from jobq.worker.group_hooks import GroupHooks
from jobq.worker.handlers import Handler, to_result
from jobq.worker.state import Hellos, Running, Unconfirmed, WorkerStats, admit, token_held
from jobq.worker.transport import Credentials, Transport

log = logging.getLogger("jobq.worker")

#: Seconds a cancelled async handler has to stop by itself before its task is cancelled.
CANCEL_GRACE = 1.0


class Worker(GroupHooks):  # @worker.on_group_finished: worker/group_hooks.py
    def __init__(
        self,
        hub: str | Sequence[str] = DEFAULT_HUB,
        *,
        concurrency: int = 1,
        prefetch: int = 0,
        capabilities: Mapping[str, Any] | None = None,
        name: str | None = None,
        worker_id: str | None = None,
        grace: float = 30.0,
        token: str | None = None,
        curve_server_key: str | bytes | None = None,
        curve_public_key: str | bytes | None = None,
        curve_secret_key: str | bytes | None = None,
    ) -> None:
        """``token`` (default: ``$JOBQ_TOKEN``) goes with every message; the CURVE keys (the hub's
        public key, this worker's key pair) encrypt the connection to a ``?curve`` listener."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.hub = hub
        self.concurrency = concurrency
        self.prefetch = max(0, prefetch)
        self.capabilities = advertised(capabilities)  # detected hardware unless Exactly(...)
        self.name = name or socket.gethostname()
        self.worker_id = worker_id or f"{self.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.grace = grace
        self.credentials = Credentials.of(token, curve_server_key, curve_public_key, curve_secret_key)
        self.handlers: dict[str, Handler] = {}
        self.stats = WorkerStats()
        self._running: dict[int, Running] = {}
        self._waiting: deque[Assignment] = deque()
        self._results: list[tuple[int, int, Frames]] = []
        self._unconfirmed = Unconfirmed()  # results and failures the hub has not confirmed
        self._hellos = Hellos()
        #: The hub said it could not store something (its store was unavailable): results and
        #: failures since its last confirmation are sent again once it answers a heartbeat.
        self._resend = False
        self._conn: Transport | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stopping: asyncio.Event | None = None  # created in run(), on its loop
        self._welcomed: asyncio.Event | None = None
        self.refusal: JobqError | None = None
        self._last_heard = 0.0
        self._heartbeat = 1.0
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        #: The connectors, their health (``connectors.interval``/``timeout``/``failures``: how it
        #: is checked) and its hooks.
        self.connectors = ConnectorManager()
        self.connectors.on_change(self._health_changed)
        self.connectors.on_capabilities(self._hello)
        self._limits: dict[str, int] = {}  # service → jobs of it at once (connector services)
        self._limited = False  # some service's limit is below the worker's concurrency
        self._down: set[str] = set()  # services whose connector is unhealthy

    # ------------------------------------------------------------------ handlers

    def handler(
        self, service: str, *, schema: dict[str, Any] | None = None
    ) -> Callable[[HandlerFn], HandlerFn]:
        """Decorator: ``@worker.handler("resize")`` registers a function for a service."""

        def register(fn: HandlerFn) -> HandlerFn:
            self.register(service, fn, schema=schema)
            return fn

        return register

    def register(
        self, service: str, fn: HandlerFn | Handler, *, schema: dict[str, Any] | None = None
    ) -> None:
        handler = fn if isinstance(fn, Handler) else Handler.wrap(fn, service, schema)
        if schema is not None and handler.schema is None:
            handler = Handler(handler.fn, handler.is_async, handler.wants_context, handler.name, schema)
        self.handlers[service] = handler

    @property
    def running(self) -> int:
        return len(self._running)

    # ------------------------------------------------------------------ connectors and health

    def add_connector(
        self,
        service: str,
        connector: Connector,
        *,
        concurrency: int = 1,
        capabilities: Mapping[str, Any] | None = None,
    ) -> None:
        """Serve ``service`` through ``connector``, at most ``concurrency`` of its jobs at once."""
        self.handlers[service] = self.connectors.add(
            service, connector, concurrency=concurrency, capabilities=capabilities
        )
        self._limits[service] = concurrency
        self._limited = any(limit < self.concurrency for limit in self._limits.values())
        self._down.add(service)  # until its first health check

    def on_health_change(self, callback: HealthCallback) -> None:
        """``callback(service, status)`` (``"ok"`` or the reason) on each change of a connector's
        health, on the worker's loop, after the worker itself has acted on it."""
        self.connectors.on_change(callback)

    @property
    def service_health(self) -> dict[str, str]:
        """Service → ``"ok"`` or why not (services run by plain handlers are always ok)."""
        return {**dict.fromkeys(self.handlers, "ok"), **self.connectors.health}

    def _health_changed(self, service: str, status: str) -> None:
        if status == "ok":
            self._down.discard(service)
        else:
            self._down.add(service)
        if self._conn is not None:  # first, so the hub stops pushing before jobs come back
            self._conn.send(jqp.Heartbeat(unhealthy=self._unhealthy()))
        if status != "ok":
            self._give_up(service, f"{service} unhealthy: {status}")
        if self._loop is not None:
            self._pump()

    def _give_up(self, service: str, error: str) -> None:
        """The service is down: its running jobs fail (retryably), its waiting ones go back."""
        current = asyncio.current_task() if self._loop is not None else None
        for job_id, running in list(self._running.items()):
            if running.assignment.service != service:
                continue
            self._report_failure(running, error, True)
            del self._running[job_id]
            running.ctx.cancel()
            if running.task is not None and running.task is not current:
                running.task.cancel()
        back = [a for a in self._waiting if a.service == service]
        if back:
            self._waiting = deque(a for a in self._waiting if a.service != service)
            self._send(jqp.Release(jobs=[(a.id, a.token) for a in back]))

    def _unhealthy(self) -> dict[str, str] | None:
        """What heartbeats tell the hub: the services whose backend is down, and why."""
        if not self.connectors.entries:
            return None
        return {s: status for s, status in self.connectors.health.items() if status != "ok"}

    def _advertisement(self) -> tuple[list[str], int]:
        return sorted(self.handlers), 0 if self._draining else self.concurrency + self.prefetch

    # ------------------------------------------------------------------ running

    def run_forever(self) -> None:
        """Blocking: run until SIGTERM/SIGINT, then drain. Logs at INFO on stderr if the
        application configured no logging, so failures (with tracebacks) are seen."""
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            import uvloop
        except ImportError:  # pragma: no cover
            asyncio.run(self.run(install_signals=True))
        else:
            uvloop.run(self.run(install_signals=True))

    async def run(self, *, install_signals: bool = False) -> None:
        if not self.handlers:
            raise ValueError("register at least one handler before running a worker")
        loop = self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopping = asyncio.Event()
        self._welcomed = asyncio.Event()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="jobq-handler")
        if self.connectors.entries:
            await self.connectors.start()  # every service's first health check, before hello
        self._conn = self.credentials.connect(self.hub, self._on_push, self.worker_id.encode())
        self._conn.open()
        self._hello()
        tasks = [asyncio.ensure_future(self._heartbeats())]
        if self.connectors.entries:
            tasks.append(asyncio.ensure_future(self.connectors.watch()))
        try:
            await self._stopping.wait()
            await self._drain()
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._conn.close()
            self._conn = None
            await self.connectors.stop()
        if self.refusal is not None:
            raise self.refusal

    def update_capabilities(self, capabilities: Mapping[str, Any]) -> None:
        """Advertise new capabilities to the hub while connected (thread-safe)."""
        self.capabilities = dict(capabilities)
        if self._loop is not None and self._conn is not None:
            self._loop.call_soon_threadsafe(self._hello)

    def stop(self) -> None:
        """Ask the worker to drain and stop (safe from a signal handler or another thread)."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def wait_connected(self, timeout: float = 10.0) -> None:
        while self._welcomed is None:
            await asyncio.sleep(0.01)
        await asyncio.wait_for(self._welcomed.wait(), timeout)

    async def _drain(self) -> None:
        self._draining = True
        conn = self._conn
        assert conn is not None
        conn.send(jqp.SetSlots(slots=0))
        if self._waiting:
            conn.send(jqp.Release(jobs=[(a.id, a.token) for a in self._waiting]))
            self._waiting.clear()
        deadline = time.monotonic() + self.grace
        while self._running and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self._flush_results()
        if self._running:
            # Not a Release (for attempts never started): the hub counts these lost at the bye.
            log.warning("grace period over: leaving %d running job(s) to the hub", len(self._running))
            for running in self._running.values():
                running.ctx.cancel()
                if running.task is not None:
                    running.task.cancel()
        conn.send(jqp.Bye())
        await asyncio.sleep(0.05)  # let the last messages leave

    # ------------------------------------------------------------------ talking to the hub

    def _hello(self) -> None:
        if self._conn is None:
            return
        # Pushed jobs not started yet are held too: a hello again (health steering) keeps them.
        held = [(r.assignment.id, r.assignment.token) for r in self._running.values()]
        held += [(a.id, a.token) for a in self._waiting]
        self._hellos.sent(held, time.monotonic())
        services, slots = self._advertisement()
        capabilities = {**self.connectors.capabilities(), **self.capabilities}
        self._conn.send(
            jqp.Hello(
                worker_id=self.worker_id,
                services=services,
                slots=slots,
                capabilities=capabilities,
                name=self.name,
                held=held,
                schemas={s: h.schema for s, h in self.handlers.items() if h.schema is not None},
                unhealthy=self._unhealthy() or {},
            )
        )
        if self._unconfirmed.results:
            # Results the previous connection may have lost: the tokens keep this safe.
            self._conn.send(jqp.Done(results=self._unconfirmed.results))

    async def _heartbeats(self) -> None:
        self._last_heard = beat = time.monotonic()
        while True:
            # Short steps: a Welcome's shorter interval (than the 1 s assumed) applies at once.
            while (left := beat + self._heartbeat - time.monotonic()) > 0:
                await asyncio.sleep(min(left, 0.25))
            beat = time.monotonic()
            conn = self._conn
            if conn is None:
                return
            silence = time.monotonic() - self._last_heard
            if silence > self._heartbeat * 5:
                self.stats.reconnects += 1
                endpoint = conn.failover()
                log.warning("no word from the hub for %.1fs; reconnecting to %s", silence, endpoint)
                self._last_heard = time.monotonic()
                if self._welcomed is not None:
                    self._welcomed.clear()
                self._hellos.forget()  # what the old connection was told is gone with it
                self._hello()
                continue
            conn.send(jqp.Heartbeat(metrics=machine_metrics(len(self._running)), unhealthy=self._unhealthy()))

    def _on_push(self, message: jqp.Outbound) -> None:
        self._last_heard = time.monotonic()
        if isinstance(message, jqp.Assign):
            for assignment in message.jobs:
                admit(self._running, self._waiting, assignment)
            self._pump()
        elif isinstance(message, jqp.Heartbeat):
            if self._resend and self._conn is not None:
                for again in self._unconfirmed.again():  # the tokens make a duplicate harmless
                    self._conn.send(again)
            else:
                self._unconfirmed.clear()
            self._resend = False
        elif isinstance(message, jqp.Error) and message.code == "unavailable":
            self._resend = True
        elif isinstance(message, jqp.Error) and message.code in ("unauthorized", "forbidden"):
            self._refused(message)
        elif isinstance(message, jqp.Finished):
            self._group_finished(message.group)
        elif isinstance(message, jqp.CancelJobs):
            for job_id in message.ids:
                self._cancel_local(job_id)
        elif isinstance(message, jqp.Welcome):
            self._heartbeat = max(0.05, message.heartbeat)
            # Of the attempts the last hello declared, the hub gave away those it did not
            # keep: stop them. Jobs assigned since (a newer token) are ours to run.
            for job_id, token in self._hellos.answered(message.kept):
                if token_held(self._running, self._waiting, job_id) == token:
                    self._cancel_local(job_id)
            if self._welcomed is not None:
                self._welcomed.set()
        elif isinstance(message, jqp.Reconnect):
            if self._hellos.pending(time.monotonic(), 2 * self._heartbeat):
                return  # asked again for a hello on its way (each would give back jobs in flight)
            log.info("hub asked for a new hello: %s", message.reason)
            if self._welcomed is not None:
                self._welcomed.clear()
            self._hello()

    def _refused(self, message: jqp.Error) -> None:
        """The hub refused the worker's hello (its token or scope): stop; ``run`` raises why."""
        if self._welcomed is not None and not self._welcomed.is_set() and self._stopping is not None:
            log.error("the hub refused this worker: %s", message.message)
            self.refusal = error_from_code(message.code, message.message)
            self._stopping.set()

    def _cancel_local(self, job_id: int) -> None:
        for i, waiting in enumerate(self._waiting):
            if waiting.id == job_id:
                del self._waiting[i]
                return
        running = self._running.pop(job_id, None)
        if running is None:
            return
        self.stats.cancelled += 1
        running.ctx.cancel()
        if running.assignment.service in self.connectors.entries:
            self.connectors.cancel(running.ctx)  # interrupt it at the service too
        task = running.task
        if task is not None and self.handlers[running.assignment.service].is_async and self._loop:
            # Cooperative first: the handler sees ctx.cancelled; an async one that does not
            # stop by itself within a second is cancelled outright.
            self._loop.call_later(CANCEL_GRACE, task.cancel)
        self._pump()

    # ------------------------------------------------------------------ running jobs

    def _pump(self) -> None:
        if self._limited or self._down:
            self._pump_checked()
            return
        while self._waiting and len(self._running) < self.concurrency:
            assignment = self._waiting.popleft()
            current = self._running.get(assignment.id)
            if current is None:
                self._start(assignment)
            elif assignment.token > current.assignment.token:
                current.assignment = assignment  # see ``admit``

    def _pump_checked(self) -> None:
        """``_pump`` with per-service limits, giving back jobs of services that are down."""
        busy = Counter(r.assignment.service for r in self._running.values())
        free = self.concurrency - len(self._running)
        start, back = triage(self._waiting, self._running, busy, self._limits, self._down, free)
        for assignment in start:
            self._start(assignment)
        if back:
            self._send(jqp.Release(jobs=[(a.id, a.token) for a in back]))

    def _start(self, assignment: Assignment) -> None:
        ctx = JobContext(assignment, self._progress_reporter(assignment))
        running = Running(assignment, ctx)
        self._running[assignment.id] = running
        running.task = asyncio.ensure_future(self._execute(running))

    def _progress_reporter(
        self, assignment: Assignment
    ) -> Callable[[float | None, str | None, bytes | None], None]:
        def report(value: float | None, message: str | None, preview: bytes | None) -> None:
            current = self._running.get(assignment.id)
            token = assignment.token if current is None else current.assignment.token
            msg = jqp.Progress(id=assignment.id, token=token, value=value, message=message, preview=preview)
            if self._loop is None or self._conn is None:
                return
            if threading.get_ident() == self._loop_thread:
                self._conn.send(msg)
            else:  # a sync handler in a thread
                self._loop.call_soon_threadsafe(self._send, msg)

        return report

    def _send(self, message: jqp.Inbound) -> None:
        if self._conn is not None:
            self._conn.send(message)

    async def _execute(self, running: Running) -> None:
        assignment = running.assignment
        ctx = running.ctx
        handler = self.handlers.get(assignment.service)
        try:
            if handler is None:
                raise HandlerError(f"this worker has no handler for {assignment.service}", retryable=False)
            if handler.is_async:
                value = await handler.fn(*handler.args(ctx))
            else:
                assert self._loop is not None
                value = await self._loop.run_in_executor(self._executor, handler.fn, *handler.args(ctx))
            frames = to_result(value)
        except (JobCancelled, asyncio.CancelledError):
            if not ctx.cancelled:
                raise
            return
        except HandlerError as exc:
            if isinstance(exc, ServiceUnavailable):
                self.connectors.mark_down(assignment.service, exc.reason)  # fails it, and the rest
            self._report_failure(running, str(exc), exc.retryable)
        except Exception as exc:
            self._report_failure(running, f"{type(exc).__name__}: {exc}", True, exc)
        else:
            if self._running.get(assignment.id) is running and not ctx.cancelled:
                self.stats.completed += 1
                if not self._results:
                    asyncio.get_running_loop().call_soon(self._flush_results)
                self._results.append((assignment.id, running.assignment.token, frames))
        finally:
            if self._running.get(assignment.id) is running:
                del self._running[assignment.id]
            self._pump()

    def _report_failure(
        self, running: Running, error: str, retryable: bool, exc: Exception | None = None
    ) -> None:
        if running.ctx.cancelled or self._running.get(running.assignment.id) is not running:
            return
        self.stats.failed += 1
        fail = failure(running.assignment, error, retryable, exc)  # logged with its traceback
        self._send(fail)
        self._unconfirmed.sent(fail=fail)

    def _flush_results(self) -> None:
        results, self._results = self._results, []
        if results and self._conn is not None:
            self._conn.send(jqp.Done(results=results))
            self._unconfirmed.sent(results)
