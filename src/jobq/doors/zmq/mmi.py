"""Services the hub answers itself on the Majordomo door: MMI (8/MMI) and Titanic (9/TSP).

MMI: ``mmi.service`` [name] → ``200`` when a worker (on any door) serves ``name``, ``404``
otherwise; ``mmi.workers`` [service?], ``mmi.services`` and ``mmi.stats`` → ``200`` and a JSON
document; ``mmi.status``, ``mmi.cancel``, ``mmi.list`` and ``mmi.health`` (PhenoLink's management
services) answer JSON too (``mmi_manage.py``); any other ``mmi.*`` → ``501``.

Titanic is "submit now, fetch later", and the hub is durable, so a Titanic request is simply a
job: ``titanic.request`` [service, body…] → ``200`` and a 32-hex-digit id (the job's id and a
random part that its idempotency key keeps, so ids cannot be guessed);
``titanic.reply`` [id] → ``200`` and the reply's frames, ``300`` while pending, ``400`` for an
unknown or closed id, ``500`` and the error for a failed job; ``titanic.close`` [id] → ``200``
(an unfinished request is cancelled). Every status is followed by a reason frame when it is
not ``200`` or ``300``.

Every answer is the hub's to the caller who asked (its listener's or CURVE key's principal):
``mmi.workers`` needs a token that may view workers, ``titanic.reply`` one that may read the
job; a refusal is ``500`` with the reason.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import msgspec

from jobq.core.auth import Caller
from jobq.core.model import Frames, Job, JobSpec
from jobq.core.states import CANCELLED, COMPLETED, FAILED, QUARANTINED, TERMINAL
from jobq.doors.zmq.mmi_manage import MANAGEMENT, Management
from jobq.errors import Forbidden, InvalidRequest, JobqError
from jobq.hub.hub import Hub

OK, PENDING, UNKNOWN, NOT_FOUND, ERROR, NOT_IMPLEMENTED = b"200", b"300", b"400", b"404", b"500", b"501"
TITANIC_KEY = "titanic:"
TITANIC = ("titanic.request", "titanic.reply", "titanic.close")
#: Job ids are signed 64-bit numbers: a Titanic id naming a larger one is unknown.
MAX_JOB_ID = 2**63 - 1
_HEX = b"0123456789abcdefABCDEF"


def _json(value: Any) -> bytes:
    return json.dumps(msgspec.to_builtins(value), sort_keys=True).encode()


class HubServices:
    """The answers; the Majordomo door sends them. ``door_stats`` are its own figures, shown
    under ``mdp`` in ``mmi.stats``."""

    def __init__(self, hub: Hub, door_stats: Callable[[], dict[str, int]]) -> None:
        self.hub = hub
        self.door_stats = door_stats
        self.management = Management(hub)

    async def answer(self, service: str, body: Frames, caller: Caller) -> Frames:
        """The reply body to ``caller``'s request for one of the hub's own services."""
        try:
            return await self._dispatch(service, body, caller)
        except JobqError as exc:
            return [UNKNOWN if isinstance(exc, InvalidRequest) else ERROR, exc.message.encode()]

    async def _dispatch(self, service: str, body: Frames, caller: Caller) -> Frames:
        if service == "mmi.service":
            return [OK if body and await self.served(body[0]) else NOT_FOUND]
        if service == "mmi.workers":
            workers = await self.hub.workers(caller=caller)
            if body and body[0]:
                workers = [w for w in workers if body[0].decode(errors="replace") in w.services]
            return [OK, _json(workers)]
        if service == "mmi.services":
            return [OK, _json(await self.hub.services(caller=caller))]
        if service == "mmi.stats":
            return [OK, _json(await self.stats(caller))]
        if service in MANAGEMENT:  # mmi.status, mmi.cancel, mmi.list, mmi.health: mmi_manage.py
            return await self.management.answer(service, body, caller)
        if service == "titanic.request":
            return await self.titanic_request(body, caller)
        if service == "titanic.reply":
            return await self.titanic_reply(body, caller)
        if service == "titanic.close":
            return await self.titanic_close(body, caller)
        return [NOT_IMPLEMENTED, f"{service} is not a service of this hub".encode()]

    async def served(self, name: bytes) -> bool:
        text = name.decode(errors="replace")
        return text in TITANIC or text in MANAGEMENT or await self.hub.serves(text)

    async def stats(self, caller: Caller) -> dict[str, Any]:
        stats = await self.hub.stats(caller=caller)
        return {
            "jobs": msgspec.to_builtins(stats.jobs),
            "counters": stats.counters,
            "workers": stats.workers,
            "hub": stats.hub,
            "mdp": self.door_stats(),
        }

    # ------------------------------------------------------------------ Titanic

    async def titanic_request(self, body: Frames, caller: Caller) -> Frames:
        if not body:
            raise InvalidRequest("titanic.request needs [service, body...]")
        try:
            service = body[0].decode()
        except UnicodeDecodeError:
            raise InvalidRequest("the service name must be UTF-8") from None
        if service.startswith(("mmi.", "titanic.")):
            raise InvalidRequest(f"{service} is answered by the hub at once; ask it directly")
        secret = secrets.token_hex(8)
        spec = JobSpec(service=service, payload=body[1:], idempotency_key=TITANIC_KEY + secret)
        job = (await self.hub.submit_one(spec, caller=caller)).job
        return [OK, f"{job.id:016x}{secret}".encode()]

    async def _titanic_job(self, body: Frames, caller: Caller) -> Job | None:
        """The job a Titanic id names, or None."""
        if not body or len(body[0]) != 32 or body[0].strip(_HEX):
            return None
        text = body[0].decode()
        job_id = int(text[:16], 16)
        if job_id > MAX_JOB_ID:
            return None  # no job has it: ids are signed 64-bit numbers
        try:
            job = await self.hub.find(job_id, caller=caller)
        except Forbidden:
            return None  # someone else's: as unknown as a made-up id
        # The hub may prefix a restricted caller's key with its tenant: the secret ends it.
        key = job.idempotency_key if job is not None else None
        return job if key is not None and key.endswith(TITANIC_KEY + text[16:]) else None

    async def titanic_reply(self, body: Frames, caller: Caller) -> Frames:
        job = await self._titanic_job(body, caller)
        if job is None or job.state is CANCELLED:
            return [UNKNOWN, b"unknown or closed request"]
        if job.state is COMPLETED:
            return [OK, *(job.result or [])]
        if job.state is FAILED or job.state is QUARANTINED:
            return [ERROR, (job.error or "failed").encode()]
        return [PENDING]

    async def titanic_close(self, body: Frames, caller: Caller) -> Frames:
        job = await self._titanic_job(body, caller)
        if job is not None and job.state not in TERMINAL:
            try:
                await self.hub.cancel(job.id, caller=caller)
            except JobqError:
                pass  # it ended meanwhile
        return [OK]
