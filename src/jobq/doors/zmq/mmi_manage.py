"""The Majordomo management services of PhenoLink's broker: ``mmi.status``, ``mmi.cancel``,
``mmi.list`` and ``mmi.health``, answered by the hub itself in JSON (``docs/mdp.md``).

Every reply is ``[status, JSON]``: ``200`` and the answer, or an HTTP-like status (``400`` bad
request or a conflict, ``403`` refused, ``404`` unknown, ``500`` anything else) and
``{"error": code, "message": ...}`` with jobq's error code. ``mmi.health`` answers ``500`` with
its JSON while the hub is not ``ok``.

- ``mmi.status`` [id]: the job's state (its prerequisites and what a waiting job waits for), or
  the group's (group ids and job ids share one sequence, so one id names one or the other).
- ``mmi.cancel`` [id]: cancels the job or the group; the outcome.
- ``mmi.list`` [service, limit?]: that service's jobs, newest first, at most ``limit``
  (default :data:`LIST_DEFAULT`, at most :data:`LIST_MAX`).
- ``mmi.health`` []: the hub's health, as ``/health`` tells it.

Each is the hub's answer to the caller (its listener's or CURVE key's principal), through the
hub's one access decision: what ``jobq status``, ``cancel``, ``jobs`` may do, these may do.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from jobq.core.auth import Caller
from jobq.core.model import Frames, Job, JobFilter
from jobq.core.states import WAITING
from jobq.errors import Conflict, Forbidden, InvalidRequest, JobqError, NotFound, Unauthorized
from jobq.hub.hub import Hub

MANAGEMENT = ("mmi.status", "mmi.cancel", "mmi.list", "mmi.health")
#: Jobs ``mmi.list`` answers with when the request names no limit, and the most it may name.
LIST_DEFAULT = 100
LIST_MAX = 1000
#: Ids are signed 64-bit numbers.
MAX_ID = 2**63 - 1


def _json(value: Any) -> bytes:
    return json.dumps(msgspec.to_builtins(value), sort_keys=True).encode()


def _status_of(exc: JobqError) -> bytes:
    if isinstance(exc, InvalidRequest | Conflict):
        return b"400"
    if isinstance(exc, Forbidden | Unauthorized):
        return b"403"
    return b"404" if isinstance(exc, NotFound) else b"500"


def _text(body: Frames, index: int, what: str) -> str:
    if len(body) <= index or not body[index]:
        raise InvalidRequest(f"{what} is missing")
    try:
        return body[index].decode()
    except UnicodeDecodeError:
        raise InvalidRequest(f"{what} must be UTF-8") from None


def _number(text: str, what: str, top: int) -> int:
    # Length first: int() of thousands of digits is slow, and past 4,300 raises ValueError.
    if len(text) > len(str(top)) or not text.isascii() or not text.isdigit() or not 1 <= int(text) <= top:
        raise InvalidRequest(f"{what} must be a whole number from 1 to {top}, not {text[:40]!r}")
    return int(text)


def job_summary(job: Job) -> dict[str, Any]:
    """A job as ``mmi.status`` and ``mmi.list`` show it (no payload, no result)."""
    fields = {
        "kind": "job",
        "id": job.id,
        "service": job.service,
        "state": job.state.value,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "priority": job.priority,
        "worker": job.worker,
        "customer_id": job.customer_id,
        "submitted_at": job.submitted_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "progress": job.progress,
        "error": job.error,
        "group": job.group,
    }
    if job.after:
        fields.update(after=job.after, after_policy=job.after_policy)
    return {key: value for key, value in fields.items() if value is not None}


class Management:
    """The answers; ``HubServices`` (``mmi.py``) hands it the four services."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def answer(self, service: str, body: Frames, caller: Caller) -> Frames:
        try:
            if service == "mmi.health":
                return await self.health()
            if service == "mmi.list":
                return [b"200", _json(await self.list(body, caller))]
            job_id = _number(_text(body, 0, f"{service} needs [id]: a job or group id"), "the id", MAX_ID)
            if service == "mmi.status":
                return [b"200", _json(await self.status(job_id, caller))]
            return [b"200", _json(await self.cancel(job_id, caller))]
        except JobqError as exc:
            return [_status_of(exc), _json({"error": exc.code, "message": exc.message})]

    async def status(self, job_id: int, caller: Caller) -> dict[str, Any]:
        job = await self.hub.find(job_id, caller=caller)
        if job is None:
            return await self._group(job_id, caller, cancel=False)
        found = job_summary(job)
        if job.state is WAITING:
            found["waiting_for"] = (await self.hub.explain(job_id, caller=caller)).summary
        return found

    async def cancel(self, job_id: int, caller: Caller) -> dict[str, Any]:
        try:
            job = await self.hub.cancel(job_id, caller=caller)
        except NotFound:
            return await self._group(job_id, caller, cancel=True)
        return {"kind": "job", "id": job.id, "state": job.state.value, "outcome": "cancelled"}

    async def _group(self, group_id: int, caller: Caller, *, cancel: bool) -> dict[str, Any]:
        """The group ``group_id`` names (cancelled first when ``cancel``)."""
        try:
            if cancel:
                view = await self.hub.cancel_group(group_id, caller=caller)
            else:
                view = await self.hub.group(group_id, caller=caller)
        except NotFound:
            raise NotFound(f"no job or group {group_id}") from None
        found: dict[str, Any] = {"kind": "group", **msgspec.to_builtins(view)}
        found.pop("result", None)
        if cancel:
            found["outcome"] = "cancelled"
        return found

    async def list(self, body: Frames, caller: Caller) -> list[dict[str, Any]]:
        service = _text(body, 0, "mmi.list needs [service, limit?]: the service")
        limit = LIST_DEFAULT
        if len(body) > 1 and body[1]:
            limit = _number(_text(body, 1, "the limit"), "the limit", LIST_MAX)
        jobs = await self.hub.list_jobs(JobFilter(service=service, limit=limit), caller=caller)
        return [job_summary(job) for job in jobs]

    async def health(self) -> Frames:
        found = await self.hub.health()
        reason = found.reason
        if found.status == "store_down" and self.hub.guard.enabled:
            reason = "the store does not answer (the hub's log says why)"
        answer = {
            "status": found.status,
            "hub": self.hub.config.name,
            "uptime": found.uptime,
            "store": "ok" if found.store_ok else "down",
            "ready": found.ready,
        }
        if reason:
            answer["reason"] = reason
        return [b"200" if found.status == "ok" else b"500", _json(answer)]
