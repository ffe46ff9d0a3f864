"""Listings by worker: ``worker=`` names a worker as people know it.

A worker's id is its name with the process and a random tag (``worker-a-30218-764521``), and
the hub filters jobs by the exact id. So the client resolves ``worker`` first against the
connected workers: their id, their name, or a prefix of their id; each match is asked for and
the answers merged, newest first. A worker that is gone is found by its full id only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence

import msgspec

from jobq.core.model import Job, JobFilter, WorkerInfo
from jobq.core.states import JobState
from jobq.errors import Forbidden, Unauthorized


async def worker_ids(
    wanted: str | None, workers: Callable[[], Awaitable[list[WorkerInfo]]]
) -> list[str | None]:
    """The ids of the connected workers ``wanted`` names (id, name or id prefix); ``[wanted]``
    when it names none of them (a departed worker's full id, or nothing), or when this caller
    may not list workers (a client token); ``[None]`` (any worker) for None."""
    if wanted is None:
        return [None]
    try:
        seen = await workers()
    except (Forbidden, Unauthorized):
        seen = []
    found = sorted({w.id for w in seen if w.name == wanted or w.id.startswith(wanted)})
    return [wanted] if wanted in found or not found else list(found)


def states_named(state: str | Sequence[str] | None) -> list[JobState]:
    """A listing's ``state``: one state's name, several, or None (any state)."""
    return [JobState(s) for s in ([state] if isinstance(state, str) else state or ())]


def light(job: Job) -> Job:
    """A listed job as listings carry it: without its timeline (``get`` has it)."""
    return msgspec.structs.replace(job, timeline=[]) if job.timeline else job


def merged(pages: Iterable[list[Job]], limit: int, offset: int) -> list[Job]:
    """Listings of several workers as one, newest first, ``offset``/``limit`` applied."""
    seen: dict[int, Job] = {}
    for page in pages:
        for job in page:
            seen.setdefault(job.id, job)
    ordered = sorted(seen.values(), key=lambda job: job.id, reverse=True)
    return ordered[offset : offset + limit]


async def list_by_worker(
    list_page: Callable[[JobFilter], Awaitable[list[Job | None]]], query: JobFilter, ids: Sequence[str | None]
) -> list[Job]:
    """``query`` once per worker id of ``ids`` (``[None]``: any worker), merged."""
    if len(ids) == 1:
        found = await list_page(msgspec.structs.replace(query, worker=ids[0]))
        return [job for job in found if job is not None]
    wider = msgspec.structs.replace(query, limit=query.offset + query.limit, offset=0)
    pages = [await list_page(msgspec.structs.replace(wider, worker=w)) for w in ids]
    return merged(([job for job in page if job is not None] for page in pages), query.limit, query.offset)
