"""A thin blocking wrapper over :class:`~jobq.client.client.Client`, for code without a loop.

It owns a private event loop and runs each call to completion on it, in the caller's thread:
no thread hop per call. Not for use inside a running event loop (use ``Client`` there). Most
calls are ``Client``'s own, made blocking by :func:`_blocking` (the same signature and doc).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from jobq.client.client import Client
from jobq.config import DEFAULT_HUB
from jobq.core.model import Job, JobSpec

T = TypeVar("T")
P = ParamSpec("P")


def _blocking(
    method: Callable[Concatenate[Client, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[SyncClient, P], T]:
    """``Client``'s ``method`` as a ``SyncClient`` method: run to its end on the private loop.
    (A method with ``**options`` takes ``self`` positional-only, for mypy to pass them on.)"""

    @functools.wraps(method)
    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(method(self._client, *args, **kwargs))

    call.__module__ = __name__
    call.__qualname__ = f"SyncClient.{method.__name__}"
    return call


class SyncClient:
    """``Client``'s options: ``timeout``, ``token`` (default: ``JOBQ_TOKEN``) and the CURVE keys."""

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
        self._loop = asyncio.new_event_loop()
        self._client = Client(
            hub,
            timeout=timeout,
            token=token,
            curve_server_key=curve_server_key,
            curve_public_key=curve_public_key,
            curve_secret_key=curve_secret_key,
        )

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(call)

    def close(self) -> None:
        self._run(self._client.close())
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    submit = _blocking(Client.submit)
    run = _blocking(Client.run)
    wait = _blocking(Client.wait)
    result = _blocking(Client.result)
    cancel = _blocking(Client.cancel)
    retry = _blocking(Client.retry)
    jobs = _blocking(Client.jobs)
    stats = _blocking(Client.stats)
    workers = _blocking(Client.workers)
    drain_worker = _blocking(Client.drain_worker)
    resume_worker = _blocking(Client.resume_worker)
    evict_worker = _blocking(Client.evict_worker)
    pause_service = _blocking(Client.pause_service)
    resume_service = _blocking(Client.resume_service)
    bulk = _blocking(Client.bulk)
    # groups (client/groups.py)
    submit_group = _blocking(Client.submit_group)
    group = _blocking(Client.group)
    wait_group = _blocking(Client.wait_group)
    cancel_group = _blocking(Client.cancel_group)
    # cron schedules (client/schedules.py)
    add_schedule = _blocking(Client.add_schedule)
    list_schedules = _blocking(Client.list_schedules)
    schedule = _blocking(Client.schedule)
    pause_schedule = _blocking(Client.pause_schedule)
    resume_schedule = _blocking(Client.resume_schedule)
    remove_schedule = _blocking(Client.remove_schedule)

    # Narrower than Client's: no watch (a blocking caller waits with ``wait``), no payload.

    def submit_many(self, specs: Iterable[JobSpec]) -> list[tuple[int, str, bool]]:
        return self._run(self._client.submit_many(specs))

    def chain(self, specs: Iterable[JobSpec]) -> list[tuple[int, str, bool]]:
        return self._run(self._client.chain(specs))

    def status(self, job_id: int) -> Job | None:
        return self._run(self._client.status(job_id))
