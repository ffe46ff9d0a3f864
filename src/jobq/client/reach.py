"""Reaching a hub: the forms of an endpoint, and failing at once when nothing listens there.

- :func:`hub_endpoints`: ``"tcp://a:5555,b:5555"`` or a list → endpoints, ``HOST:PORT`` taken
  as ``tcp://HOST:PORT``; anything else without a known scheme is refused at once with the
  form expected (a client would otherwise wait its whole timeout on an address it cannot use).
- :func:`first_answer`: the first request of a connection races a probe. When no answer came
  within a quarter of a second, a plain connection attempt tells whether anything listens:
  refused (or no such socket file, or an unknown host) still a second after the request fails
  it with :class:`Unreachable`; otherwise the request keeps waiting for its answer.
- :func:`while_blocked`: while a wait for a job goes on, ask ``explain`` after a second (then
  every few seconds) and report the reason when nobody can run the job.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from jobq.core.views import ExplainInfo
from jobq.errors import InvalidRequest, JobqError, Unavailable

T = TypeVar("T")

log = logging.getLogger("jobq.client")

#: What a client is told when a job it waits for cannot run: the job's id and ``explain``'s reason.
BlockedCallback = Callable[[int, str], None]

#: Schemes the client SDK speaks (the worker SDK also takes ws://, wss://, http://, https://).
CLIENT_SCHEMES = ("tcp", "ipc")
WORKER_SCHEMES = ("tcp", "ipc", "ws", "wss", "http", "https")

#: Seconds the first request of a connection may go unanswered before the probe runs (and
#: between probes), and how long after the request nothing may listen before it fails.
PROBE_AFTER = 0.25
PROBE_SETTLE = 1.0
#: Seconds before ``while_blocked`` first asks ``explain``, then between two questions.
BLOCKED_FIRST = 1.0
BLOCKED_EVERY = 5.0

#: Connection errors that mean nothing will answer at that address.
_GONE = {errno.ECONNREFUSED, errno.ENOENT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET}


class Unreachable(Unavailable):
    """Nothing listens at the hub's address (or the address cannot be reached at all)."""


def hub_endpoints(hub: str | Sequence[str], schemes: Sequence[str] = CLIENT_SCHEMES) -> list[str]:
    """Endpoints from a comma-separated string or a list; ``HOST:PORT`` means ``tcp://HOST:PORT``.
    Raises :class:`InvalidRequest` naming the form expected."""
    items = hub.split(",") if isinstance(hub, str) else list(hub)
    forms = "tcp://HOST:PORT (or HOST:PORT) or ipc://PATH"
    if "ws" in schemes:
        forms += ", ws://HOST:PORT or http://HOST:PORT"
    out: list[str] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        scheme, sep, rest = item.partition("://")
        if not sep:
            scheme, rest, item = "tcp", item, f"tcp://{item}"
        if scheme not in schemes:
            raise InvalidRequest(f"hub endpoint {raw.strip()!r}: use {forms}")
        if scheme == "tcp":
            host, colon, port = rest.rpartition(":")
            if not colon or not host or not port.isdigit():
                raise InvalidRequest(f"hub endpoint {raw.strip()!r}: use {forms}")
        elif not rest:
            raise InvalidRequest(f"hub endpoint {raw.strip()!r}: use {forms}")
        out.append(item)
    if not out:
        raise InvalidRequest(f"no hub endpoint given: use {forms}")
    return out


async def nothing_listens(endpoint: str, timeout: float = 1.0) -> str | None:
    """Why nothing can answer at ``endpoint`` (refused, no socket file, unknown host), or None
    when something accepted a connection or we cannot tell within ``timeout``."""
    scheme, _, rest = endpoint.partition("://")
    try:
        if scheme == "ipc":
            opening = asyncio.open_unix_connection(rest)
        elif scheme == "tcp":
            host, _, port = rest.rpartition(":")
            opening = asyncio.open_connection(host.strip("[]"), int(port))
        else:
            return None
        _, writer = await asyncio.wait_for(opening, timeout)
    except socket.gaierror as exc:
        return f"cannot find the host of {endpoint} ({exc.strerror})"
    except OSError as exc:
        if exc.errno in _GONE or isinstance(exc, ConnectionRefusedError | FileNotFoundError):
            return f"nothing listens at {endpoint} ({os.strerror(exc.errno or errno.ECONNREFUSED).lower()})"
        return None
    except (TimeoutError, ValueError):
        return None
    writer.close()
    return None


async def first_answer(
    answer: Awaitable[T], endpoint: str, after: float = PROBE_AFTER, settle: float = PROBE_SETTLE
) -> T:
    """``answer`` (a request's reply); if it takes longer than ``after``, probe ``endpoint``, and
    raise :class:`Unreachable` when nothing listens there still ``settle`` seconds after the
    request (a hub that is just starting gets that long to open its port)."""
    task = asyncio.ensure_future(answer)
    give_up = asyncio.get_running_loop().time() + settle
    problem: str | None = None
    try:
        done, _ = await asyncio.wait({task}, timeout=after)
        while not done:
            problem = await nothing_listens(endpoint)
            if problem is None:
                break
            if asyncio.get_running_loop().time() >= give_up:
                raise Unreachable(problem)
            done, _ = await asyncio.wait({task}, timeout=after)
        try:
            return await task
        except Unavailable:
            if problem is None:
                raise
            raise Unreachable(problem) from None  # timed out meanwhile: say why it could not answer
    finally:
        if not task.done():
            task.cancel()


async def while_blocked(
    waiting: Awaitable[T],
    pending: Callable[[], int | None],
    explain: Callable[[int], Awaitable[ExplainInfo]],
    report: BlockedCallback | None,
    *,
    first: float = BLOCKED_FIRST,
    every: float = BLOCKED_EVERY,
) -> T:
    """Await ``waiting``; meanwhile, after ``first`` seconds and then every ``every``, ask
    ``explain`` about the job ``pending()`` names (None: none now) and ``report(id, reason)``
    when nobody can run it (each reason once per job; no ``report``: just wait). A wait that
    ends within ``first`` costs one timer, nothing more."""
    if report is None:
        return await waiting
    checker: asyncio.Task[None] | None = None

    def start() -> None:
        nonlocal checker
        assert report is not None
        checker = asyncio.ensure_future(_check_blocked(pending, explain, report, every))

    timer = asyncio.get_running_loop().call_later(first, start)
    try:
        return await waiting
    finally:
        timer.cancel()
        if checker is not None:
            checker.cancel()


async def _check_blocked(
    pending: Callable[[], int | None],
    explain: Callable[[int], Awaitable[ExplainInfo]],
    report: BlockedCallback,
    every: float,
) -> None:
    said: dict[int, str] = {}
    while True:
        job_id = pending()
        if job_id is not None:
            try:
                info: ExplainInfo | None = await explain(job_id)
            except JobqError:
                info = None  # not allowed to ask, or the hub is busy: the wait goes on regardless
            if info is not None and info.blocked and said.get(job_id) != info.blocked:
                said[job_id] = info.blocked
                report(job_id, info.blocked)
        await asyncio.sleep(every)


def log_blocked(job_id: int, reason: str) -> None:
    """The default ``Client.on_blocked``: a warning (shown on stderr even without logging set up)."""
    log.warning("job %d cannot run yet: %s (still waiting)", job_id, reason)
