"""The line door: DSJQ and work-queue text commands over TCP, on every listener.

Thin: :mod:`jobq.protocol.line` turns bytes into requests and outcomes into replies; this module
reads and writes sockets and calls the hub. Each connection is handled in order, one line after
the other, so replies come back in the order the commands came; a run of submits that arrived
together is handed to the hub as one batch (one commit).

A connection becomes a worker at its first ``FETCH``/``REQUEST`` (one slot, pull-style, able to
carry one line of text only); the door's ``WorkerDirectory``, the table every door with workers
keeps, says which connections are workers now. It holds at most one job: a repeated ``FETCH``
returns that job. It is gone when the connection closes, or when it holds a job and says nothing
for the line lease; either way the hub puts the job back at the front of the queue.

Limits (:mod:`jobq.doors.line_limits`): connections per client address and in all, and idle
connections holding no job and lines that arrive too slowly are cut, so that idle or slow
connections cannot lock other users out.

Only the hub's public API is used: the hub validates what is submitted and answers each line of
a batch on its own (``Hub.submit``'s outcomes, in order).

Identity (docs/security.md): a listener written ``HOST:PORT?trusted=ROLE&customer=..`` speaks
for that principal, so legacy programs work there unmodified; on any other listener of a hub
with ``--auth`` the first line must be ``AUTH <token>``. Every hub call carries the
connection's caller; what it may do is the hub's decision. ``?tls`` listeners speak TLS with
the hub's certificate (``--tls-cert``, ``--tls-key``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Sequence

from jobq.config import HubConfig
from jobq.core.auth import Caller
from jobq.core.matching import LINE_ONLY
from jobq.core.model import TEXT, Completion, Job, JobSpec, Submitted
from jobq.core.views import WorkerHello
from jobq.doors.line_limits import LineLimits
from jobq.doors.line_listener import COMPAT as COMPAT
from jobq.doors.line_listener import Listener as Listener
from jobq.doors.line_listener import tls_context
from jobq.errors import Forbidden, InvalidRequest, JobqError, NotFound, Unauthorized
from jobq.hub.hub import Hub, SubmitOutcome
from jobq.hub.sessions import Liveness, WorkerDirectory
from jobq.protocol import line as wire

log = logging.getLogger("jobq.doors.line")

#: Why a line is refused when the hub's budget of partly received bytes (``max_inflight``, every
#: door together) cannot take it; the connection is then closed.
BUSY = "busy: too much partly received data in the hub; try again later"
#: Bytes asked of the socket at once (a pipelining producer sends many lines per read).
READ_SIZE = 256 * 1024


class _Connection:
    """One TCP peer. As a worker, it is also the hub's ``WorkerLink`` (pull-style)."""

    pushes = False

    def __init__(
        self, door: LineDoor, worker_id: str, peer: str, replies: wire.Replies, caller: Caller | None
    ) -> None:
        self.door = door
        #: Who speaks on this connection; None until ``AUTH`` on a listener that needs a token.
        self.caller = caller
        #: ``AUTH`` was accepted (a second one is refused).
        self.authenticated = False
        #: The id this connection attaches under whenever it becomes a worker (again).
        self.worker_id = worker_id
        self.peer = peer
        self.replies = replies
        self.splitter = wire.LineSplitter(door.max_line, door.hub.inflight)
        #: The attempt this worker holds: (job id, fencing token, payload text).
        self.held: tuple[int, int, str] | None = None
        self.last_renewed = 0.0
        self.writer: asyncio.StreamWriter | None = None
        #: ``time.monotonic()`` when the peer last sent anything, and when the line still
        #: arriving began (0: none is): read by the door's watch (``line_limits.py``).
        self.heard = time.monotonic()
        self.line_since = 0.0

    # ---- WorkerLink
    def deliver(self, jobs: Sequence[Job]) -> None:
        # Never called for a pull link; should it happen, the jobs go straight back.
        self.door.hub.spawn(self.door.hub.release(self.worker_id, [(j.id, j.token) for j in jobs]))

    def stop(self, job_ids: Sequence[int]) -> None:
        """Cancelled, timed out or lease lost: the worker no longer holds it (its DONE gets ERR)."""
        if self.held is not None and self.held[0] in job_ids:
            self.held = None

    def disconnect(self, reason: str) -> None:
        """The hub dropped this worker (silent past the lease, shutting down). The connection
        stays; its next FETCH attaches it again."""
        log.info("line worker %s dropped by the hub: %s", self.worker_id, reason)
        self.door.drop(self)


class LineDoor:
    def __init__(self, hub: Hub, listeners: Sequence[str] | None = None) -> None:
        config: HubConfig = hub.config
        self.hub = hub
        self.listeners = [Listener.parse(s) for s in (config.line if listeners is None else listeners)]
        self.service = config.line_service
        self.lease = config.line_lease
        self.max_line = config.line_max_line
        self.max_connections = config.line_max_connections
        if self.max_line < 1 or self.max_connections < 1 or not self.lease > 0:
            raise InvalidRequest("line door: max line, max connections and lease must be positive")
        try:
            #: Connections per client address and in all, idle and slow connections.
            self.limits = LineLimits(config)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        self._tls = tls_context(config) if any(listener.tls for listener in self.listeners) else None
        hub.check(JobSpec(service=self.service))  # a bad service name fails here, not per line
        if self.lease > config.lease_ttl:
            log.warning(
                "line lease %gs is longer than the job lease %gs: a silent line worker loses its "
                "job after %gs",
                self.lease,
                config.lease_ttl,
                config.lease_ttl,
            )
        self.endpoints: list[str] = []
        #: Bound (host, port, compat) of each listener, in order (ports resolved when 0 was asked).
        self.addresses: list[tuple[str, int, bool]] = []
        self.connections: dict[int, _Connection] = {}
        #: The connections that are workers now (from their FETCH until they close or the hub
        #: drops them), each with the worker it speaks for.
        self.workers: WorkerDirectory[_Connection] = WorkerDirectory(self._unknown)
        #: Lines refused and connections closed, by reason (for operators and tests).
        self.refused: dict[str, int] = dict.fromkeys(
            ("too_long", "not_text", "unknown", "too_many", "busy", "idle", "slow"), 0
        )
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._watch: asyncio.Task[None] | None = None
        hub.on_revoke(self._revoked)

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        for listener in self.listeners:

            async def accept(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener: Listener = listener
            ) -> None:
                await self._serve(listener, reader, writer)

            server = await asyncio.start_server(
                accept,
                listener.host,
                listener.port,
                backlog=1024,
                ssl=self._tls if listener.tls else None,
            )
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
            self.addresses.append((listener.host, port, listener.compat))
            self.endpoints.append(listener.endpoint(port))
        log.info("line door on %s (service %s)", ", ".join(self.endpoints), self.service)
        self._watch = asyncio.ensure_future(self.limits.watch(self.connections.values, self._cut))

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        for server in self._servers:
            server.close()
        for conn in list(self.connections.values()):
            if conn.writer is not None:
                conn.writer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    # ------------------------------------------------------------------ a connection

    async def _serve(
        self, listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        replies = wire.Replies(compat=listener.compat)
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        key = next(self._ids)
        refusal = self.limits.admit(key, str(peername[0]) if isinstance(peername, tuple) else "")
        if refusal is not None:
            self.refused["too_many"] += 1
            if count := self.limits.admission.report():
                log.info("refused %d line connection(s) (the latest from %s: %s)", count, peer, refusal)
            writer.write(replies.fatal(refusal))
            await _close(writer)
            return
        caller = None
        if listener.trusted is not None or not self.hub.guard.enabled:
            caller = self.hub.authenticate(None, door="line", peer=peer, trusted=listener.trusted)
        conn = _Connection(self, f"line-{key}-{peer}", peer, replies, caller)
        conn.writer = writer
        self.connections[key] = conn
        if task is not None:
            self._tasks.add(task)
        try:
            await self._converse(conn, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the peer went away; same as a close
        except asyncio.CancelledError:
            pass  # the door stops (ending quietly: Python 3.11's stream callback logs a cancel)
        except Exception:
            log.exception("line connection %s failed", peer)
        finally:
            conn.splitter.discard()
            self.connections.pop(key, None)
            self.limits.release(key)
            if task is not None:
                self._tasks.discard(task)
            worker_id = self.workers.forget(conn)
            if worker_id is not None:
                with contextlib.suppress(Exception):
                    await self.hub.detach(worker_id, "line connection closed")
            await _close(writer)

    async def _converse(
        self, conn: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                return  # EOF: a half line left behind is not a request
            lines = conn.splitter.feed(data)
            conn.heard = now = time.monotonic()
            if not conn.splitter.pending:
                conn.line_since = 0.0
            elif lines or not conn.line_since:
                conn.line_since = now  # a new line began in this read
            worker_id = self.workers.peek(conn)
            if worker_id is not None:
                await self._heard(conn, worker_id)
            out: list[bytes] = []
            go_on = await self._run(conn, lines, out)
            if conn.splitter.too_long:
                self.refused["too_long"] += 1
                out.append(conn.replies.fatal(f"line too long (the limit is {self.max_line} bytes)"))
                go_on = False
            elif conn.splitter.busy:
                self.refused["busy"] += 1
                log.info("line connection %s closed: %s", conn.peer, BUSY)
                out.append(conn.replies.fatal(BUSY))
                go_on = False
            if out:
                writer.write(b"".join(out))
                await writer.drain()
            if not go_on:
                return

    async def _heard(self, conn: _Connection, worker_id: str) -> None:
        """Any line from a worker is a sign of life; while it holds a job, the job's lease is
        renewed too (at most a few times per lease). A worker the hub no longer knows holds
        nothing: its next ``FETCH`` attaches it again."""
        if not self.hub.seen(worker_id):
            self.drop(conn)
            return
        if conn.held is None:
            return
        now = self.hub.clock()
        if now - conn.last_renewed >= min(1.0, self.lease / 4):
            conn.last_renewed = now
            if not await self.hub.heartbeat(worker_id):
                self.drop(conn)

    def _cut(self, conn: _Connection, key: str, reason: str) -> None:
        """Close a connection past a timeout (``line_limits.py``), with ``ERR <reason>``; at
        once if the peer has not read what was sent to it before."""
        writer = conn.writer
        if writer is None or writer.is_closing():
            return
        self.refused[key] += 1
        log.debug("line connection %s closed: %s", conn.peer, reason)
        if writer.transport.get_write_buffer_size():
            writer.transport.abort()
            return
        writer.write(conn.replies.fatal(reason))
        writer.close()

    def _revoked(self, names: set[str]) -> None:
        """Tokens left the auth file: close the connections that spoke with them."""
        for conn in list(self.connections.values()):
            if conn.caller is not None and conn.caller.name in names and conn.writer is not None:
                log.info("line connection %s closed: its token was revoked", conn.peer)
                conn.writer.write(conn.replies.fatal("not authorized: the token was revoked"))
                conn.writer.close()

    def drop(self, conn: _Connection) -> None:
        """The connection no longer speaks for a worker (the hub dropped or forgot it); it
        stays open, and its next ``FETCH`` attaches it again."""
        self.workers.forget(conn)
        conn.held = None

    @staticmethod
    def _unknown(conn: _Connection) -> None:
        """A worker's command from a connection that is no worker: the line protocols have no
        hello to ask for (a ``FETCH`` attaches), so the command's own refusal is the answer."""
        log.debug("line connection %s is not a worker", conn.peer)

    async def _run(self, conn: _Connection, lines: list[bytes], out: list[bytes]) -> bool:
        """Answer ``lines`` in order; False once the connection is to be closed."""
        batch: list[wire.Submit] = []
        for raw in lines:
            request = wire.parse(raw)
            if request is None:
                continue
            if isinstance(request, wire.Submit) and conn.caller is not None:
                batch.append(request)
                continue
            if batch:
                await self._submit(conn, batch, out)
                batch = []
            if isinstance(request, wire.Quit):
                return False
            if isinstance(request, wire.Auth) or conn.caller is None:
                answer, go_on = self._authenticate(conn, request)
                out.append(answer)
                if not go_on:
                    return False
                continue
            reply = await self._answer(conn, request)
            if reply is not None:
                out.append(reply)
        if batch:
            await self._submit(conn, batch, out)
        return True

    def _authenticate(self, conn: _Connection, request: wire.Request) -> tuple[bytes, bool]:
        """``AUTH <token>``, or a line before it on a listener that needs one: the reply, and
        whether the connection stays open (a refused token or a command before ``AUTH``
        closes it, having cost nothing)."""
        if not isinstance(request, wire.Auth):
            reason = "this listener needs a token: send AUTH <token> as the first line"
            refusal = self.hub.guard.refuse_unknown("line", conn.peer, reason)
            return conn.replies.fatal(refusal.message), False
        if conn.authenticated:
            return conn.replies.fatal("AUTH was given already on this connection"), True
        try:
            caller = self.hub.authenticate(request.token or None, door="line", peer=conn.peer)
        except Unauthorized as exc:
            return conn.replies.fatal(exc.message), False
        if self.workers.peek(conn) is not None and conn.caller is not None and caller != conn.caller:
            # A worker attached under the listener's principal keeps it until it closes.
            return conn.replies.fatal("AUTH must come before FETCH or REQUEST"), True
        conn.caller, conn.authenticated = caller, True
        return wire.OK, True

    async def _answer(self, conn: _Connection, request: wire.Request) -> bytes | None:
        replies = conn.replies
        try:
            if isinstance(request, wire.Status):
                return await self._status(conn, request)
            if isinstance(request, wire.Fetch):
                return await self._fetch(conn, request)
            if isinstance(request, wire.Finish | wire.Fail):
                return await self._finish(conn, request)
            if isinstance(request, wire.NotText):
                self.refused["not_text"] += 1
                return replies.error(request, "line is not valid UTF-8")
            self.refused["unknown"] += 1
            return replies.refused(request)
        except (Unauthorized, Forbidden) as exc:
            return replies.denied(request, exc.message)
        except JobqError as exc:
            return replies.error(request, exc.message)
        except Exception as exc:
            log.exception("line request %r failed", request)
            return replies.error(request, f"internal error: {exc}")

    # ------------------------------------------------------------------ clients

    def _spec(self, request: wire.Submit) -> JobSpec:
        return JobSpec(service=self.service, payload=[request.text.encode()], content_type=TEXT)

    async def _submit(self, conn: _Connection, batch: list[wire.Submit], out: list[bytes]) -> None:
        """One hub submit for the batch; each line gets its own outcome (one refused line costs
        the others nothing)."""
        replies = conn.replies
        wanted = [r for r in batch if r.text]
        outcomes: list[SubmitOutcome] = []
        if wanted:
            try:
                outcomes = await self.hub.submit([self._spec(r) for r in wanted], caller=_caller(conn))
            except JobqError as exc:  # refused as a whole (the hub is shutting down)
                outcomes = [exc.with_traceback(None)] * len(wanted)
            except Exception as exc:
                log.exception("line submit failed")
                outcomes = [JobqError(f"internal error: {exc}")] * len(wanted)
        results = iter(outcomes)
        for request in batch:
            reply: bytes | None
            if not request.text:
                reply = replies.refused(request)  # JOB or SUBMIT without text
            else:
                outcome = next(results)
                if isinstance(outcome, Submitted):
                    reply = replies.submitted(request, outcome.job.id)
                elif isinstance(outcome, Unauthorized | Forbidden):
                    reply = replies.denied(request, outcome.message)
                else:
                    reply = replies.error(request, outcome.message)
            if reply is not None:
                out.append(reply)

    async def _status(self, conn: _Connection, request: wire.Status) -> bytes:
        job = None if request.job_id is None else await self.hub.find(request.job_id, caller=_caller(conn))
        return conn.replies.status(None if job is None else job.state)

    # ------------------------------------------------------------------ workers

    async def _fetch(self, conn: _Connection, request: wire.Fetch) -> bytes:
        replies = conn.replies
        if conn.held is not None:
            job_id, _, text = conn.held
            return replies.job(request, job_id, text)
        worker_id = self.workers.peek(conn)
        if worker_id is None:
            worker_id = conn.worker_id
            hello = WorkerHello(
                id=worker_id,
                services=[self.service],
                capabilities={LINE_ONLY: True},
                slots=1,
                name=conn.peer,
                door="line",
            )
            await self.hub.attach(
                hello, conn, liveness=Liveness(idle=None, busy=self.lease), caller=_caller(conn)
            )
            self.workers.bind(conn, worker_id)
        try:
            jobs = await self.hub.claim(worker_id, 1)
        except NotFound:
            self.drop(conn)  # the hub has forgotten this worker: attach again next time
            raise
        if not jobs:
            return replies.no_job(request)
        job = jobs[0]
        # Matching only hands line workers one line of UTF-8 text (core.matching.LINE_ONLY).
        text = job.payload_bytes.decode(errors="replace")
        conn.held = (job.id, job.token, text)
        conn.last_renewed = self.hub.clock()
        return replies.job(request, job.id, text)

    async def _finish(self, conn: _Connection, request: wire.Finish | wire.Fail) -> bytes | None:
        replies = conn.replies
        worker_id = self.workers.worker_of(conn)
        held = conn.held
        if worker_id is None or held is None or request.job_id != held[0]:
            return replies.refused(request)  # not this worker's job: nothing changes
        job_id, token, _ = held
        conn.held = None
        if isinstance(request, wire.Fail):
            await self.hub.fail(worker_id, job_id, token, request.error or "FAIL from a line worker")
            return replies.done(request)
        result = [request.result.encode()] if request.result else []
        (outcome,) = await self.hub.complete(worker_id, [Completion(job_id, token, result)])
        return replies.refused(request) if isinstance(outcome, Exception) else replies.done(request)


def _caller(conn: _Connection) -> Caller:
    """The connection's caller (set before any command reaches the hub: ``_run`` sees to it)."""
    assert conn.caller is not None
    return conn.caller


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
