"""Majordomo clients on the hub: a REQUEST becomes a job, the job's end becomes the REPLY.

Part of the Majordomo door (:mod:`jobq.doors.zmq.mdp`), which hands each client request here
with its caller (the listener's trusted principal, the connection's CURVE key, or the local
admin without ``--auth``). Requests are submitted as that caller; ``mmi.*`` and ``titanic.*``
are answered by the hub as that caller (:mod:`jobq.doors.zmq.mmi`).

Also here: the client-address frames handed to workers (:class:`Addresses`), which no one can
make up, and the no-worker sweep.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from jobq.core.auth import Caller
from jobq.core.model import Frames, Job, JobEvent, JobSpec
from jobq.core.states import QUEUED, SCHEDULED, TERMINAL, JobState
from jobq.doors.zmq.mmi import HubServices
from jobq.doors.zmq.router import Sender
from jobq.errors import InvalidRequest, JobqError
from jobq.hub.hub import Hub
from jobq.protocol import mdp

log = logging.getLogger("jobq.doors.zmq.mdp")

#: First frame of the body of an error reply: ``[ERROR, code, message]`` (codes as jobq's).
ERROR = b"jobq.error"
#: Service prefixes the hub answers itself; a worker READY for one is parked (never given work).
RESERVED = ("mmi.", "titanic.")


def error_body(code: str, message: str) -> Frames:
    return [ERROR, code.encode(), message.encode()]


class Addresses:
    """The client-address frame a worker gets with a job, and echoes in its reply:
    ``<job id>.<attempt>.<tag>``. The attempt (the fencing token) refuses a late reply of a lost
    attempt; the tag, a MAC of the rest under a key this hub process drew at random, makes the
    address of an attempt impossible to make up for whoever was not given it, and different
    from any a hub that ran before on the same ids gave out (a ``memory://`` hub restarted)."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def _tag(self, head: bytes) -> bytes:
        return hashlib.blake2b(head, key=self._key, digest_size=12).hexdigest().encode()

    def of(self, job: Job) -> bytes:
        head = b"%d.%d" % (job.id, job.token)
        return head + b"." + self._tag(head)

    def attempt(self, address: bytes) -> tuple[int, int] | None:
        """(job id, attempt) of an address this hub gave out; None for any other."""
        head, dot, tag = address.rpartition(b".")
        job_id, dot2, token = head.partition(b".")
        if not dot or not dot2 or not job_id.isdigit() or not token.isdigit():
            return None
        if not hmac.compare_digest(tag, self._tag(head)):
            return None
        return int(job_id), int(token)


@dataclass(slots=True, eq=False)
class _Request:
    """A client waiting for the reply to one request."""

    identity: bytes
    framing: mdp.Framing
    service: bytes
    since: float
    #: Who asked (None while it is not known: the request is refused).
    caller: Caller | None = None
    #: Why the hub gave up on it (it is answered with an error when its job ends cancelled).
    gave_up: str | None = None


class MdpRequests:
    """The client half of the Majordomo door: routes from jobs to the clients waiting for them."""

    def __init__(
        self,
        hub: Hub,
        sender: Sender,
        counters: dict[str, int],
        door_stats: Callable[[], dict[str, int]],
    ) -> None:
        self.hub = hub
        self.sender = sender
        self.config = hub.config
        self.counters = counters
        #: Job id → the client waiting for it; by service for the no-worker sweep.
        self.requests: dict[int, _Request] = {}
        self.by_service: dict[str, dict[int, _Request]] = {}
        self.unserved_since: dict[str, float] = {}
        self.services = HubServices(hub, door_stats)
        self._submits: list[tuple[_Request, JobSpec]] = []

    def take(self, identity: bytes, message: mdp.Request, caller: Caller | JobqError) -> None:
        """A client's REQUEST, from ``caller`` (or refused with that error)."""
        self.counters["requests"] += 1
        request = _Request(identity, message.framing, message.service, time.monotonic())
        if isinstance(caller, JobqError):
            self.answer_error(request, caller)
            return
        request.caller = caller
        try:
            service = message.service.decode()
        except UnicodeDecodeError:
            self.answer_error(request, InvalidRequest("the service name must be UTF-8"))
            return
        if service.startswith(RESERVED):
            self.hub.spawn(self._hub_service(request, caller, service, message.body))
            return
        if not self._submits:
            self.hub.spawn(self._submit())
        self._submits.append((request, JobSpec(service=service, payload=message.body)))

    async def _hub_service(self, request: _Request, caller: Caller, service: str, body: Frames) -> None:
        self.answer(request, await self.services.answer(service, body, caller))

    async def _submit(self) -> None:
        """The requests of a turn, one hub call per caller; a refused one is answered alone."""
        batch, self._submits = self._submits, []
        groups: dict[object, list[tuple[_Request, JobSpec]]] = {}
        for item in batch:
            caller = item[0].caller
            assert caller is not None
            groups.setdefault(caller.principal if caller.unrestricted else caller, []).append(item)
        for group in groups.values():
            await self._submit_group(group)

    async def _submit_group(self, batch: list[tuple[_Request, JobSpec]]) -> None:
        caller = batch[0][0].caller
        assert caller is not None
        try:
            outcomes = await self.hub.submit([spec for _, spec in batch], caller=caller)
        except Exception as exc:  # the hub takes no jobs now (shutting down), or a bug
            if not isinstance(exc, JobqError):
                log.exception("submitting %d MDP request(s) failed", len(batch))
            error = (
                exc.with_traceback(None)
                if isinstance(exc, JobqError)
                else JobqError(f"internal error: {exc}")
            )
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
        # The door itself listens for the ends of the jobs it submitted, to answer their clients.
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

    @property
    def sweep_every(self) -> float:
        return max(0.02, min(1.0, self.config.mdp_no_worker_timeout / 4))

    async def sweep(self) -> None:
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
        """The hub's own timeout (not the client's doing): cancelled as the hub."""
        try:
            job = await self.hub.get(job_id)
            if job.state in (QUEUED, SCHEDULED):
                request.gave_up = why
                await self.hub.cancel(job_id)
        except JobqError:
            pass  # it ended or started meanwhile: its own event answers the client


__all__ = ["ERROR", "RESERVED", "Addresses", "MdpRequests", "error_body"]
