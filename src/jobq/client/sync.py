"""A thin blocking wrapper over :class:`~jobq.client.client.Client`, for code without a loop.

It owns a private event loop and runs each call to completion on it, in the caller's thread:
no thread hop per call. Not for use inside a running event loop (use ``Client`` there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from jobq.client.client import Client, PayloadLike
from jobq.config import DEFAULT_HUB
from jobq.core.model import Job, JobEvent, JobSpec, WorkerInfo
from jobq.core.operations import BulkResult, ServicePause
from jobq.core.schedule_info import ScheduleInfo
from jobq.core.views import WorkerNotice
from jobq.core.workflow import GroupSubmitted, GroupView

T = TypeVar("T")


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

    def submit(self, service: str, payload: PayloadLike = None, **options: Any) -> int:
        return self._run(self._client.submit(service, payload, **options))

    def submit_many(self, specs: Iterable[JobSpec]) -> list[tuple[int, str, bool]]:
        return self._run(self._client.submit_many(specs))

    def chain(self, specs: Iterable[JobSpec]) -> list[tuple[int, str, bool]]:
        return self._run(self._client.chain(specs))

    def run(self, service: str, payload: PayloadLike = None, **options: Any) -> JobEvent:
        return self._run(self._client.run(service, payload, **options))

    def status(self, job_id: int) -> Job | None:
        return self._run(self._client.status(job_id))

    def wait(self, job_id: int, timeout: float | None = None) -> Job:
        return self._run(self._client.wait(job_id, timeout))

    def result(self, job_id: int, timeout: float | None = None) -> bytes:
        return self._run(self._client.result(job_id, timeout))

    def cancel(self, job_id: int) -> Job:
        return self._run(self._client.cancel(job_id))

    def retry(self, job_id: int) -> Job:
        return self._run(self._client.retry(job_id))

    def jobs(self, **query: Any) -> list[Job]:
        return self._run(self._client.jobs(**query))

    def stats(self) -> dict[str, Any]:
        return self._run(self._client.stats())

    def workers(self) -> list[WorkerInfo]:
        return self._run(self._client.workers())

    def drain_worker(self, worker: str, reason: str | None = None) -> WorkerNotice:
        return self._run(self._client.drain_worker(worker, reason))

    def resume_worker(self, worker: str) -> WorkerNotice:
        return self._run(self._client.resume_worker(worker))

    def evict_worker(self, worker: str) -> WorkerNotice:
        return self._run(self._client.evict_worker(worker))

    def pause_service(self, service: str) -> ServicePause:
        return self._run(self._client.pause_service(service))

    def resume_service(self, service: str) -> ServicePause:
        return self._run(self._client.resume_service(service))

    def bulk(self, action: str, **selection: Any) -> BulkResult:
        return self._run(self._client.bulk(action, **selection))

    # groups (client/groups.py)

    def submit_group(
        self,
        service: str | None = None,
        payload: PayloadLike = None,
        *,
        expand: Mapping[str, Any] | None = None,
        members: Sequence[JobSpec] | None = None,
        finalize: str | JobSpec | None = None,
        finalize_args: Mapping[str, Any] | None = None,
        policy: str = "all_completed",
        idempotency_key: str | None = None,
        **options: Any,
    ) -> GroupSubmitted:
        """As :meth:`Client.submit_group`: a service with ``expand``, or ``members``."""
        return self._run(
            self._client.submit_group(
                service, payload, expand=expand, members=members, finalize=finalize,
                finalize_args=finalize_args, policy=policy, idempotency_key=idempotency_key, **options,
            )
        )  # fmt: skip

    def group(self, group_id: int) -> GroupView:
        return self._run(self._client.group(group_id))

    def wait_group(self, group_id: int, timeout: float | None = None) -> GroupView:
        return self._run(self._client.wait_group(group_id, timeout))

    def cancel_group(self, group_id: int) -> GroupView:
        return self._run(self._client.cancel_group(group_id))

    # cron schedules (client/schedules.py)

    def add_schedule(
        self,
        name: str,
        cron: str,
        service: str,
        payload: PayloadLike = None,
        *,
        tz: str = "UTC",
        catch_up: float | None = None,
        coalesce: bool = True,
        **options: Any,
    ) -> ScheduleInfo:
        """As :meth:`Client.add_schedule`."""
        return self._run(
            self._client.add_schedule(
                name, cron, service, payload, tz=tz, catch_up=catch_up, coalesce=coalesce, **options
            )
        )

    def list_schedules(self) -> list[ScheduleInfo]:
        return self._run(self._client.list_schedules())

    def schedule(self, name: str) -> ScheduleInfo:
        return self._run(self._client.schedule(name))

    def pause_schedule(self, name: str) -> ScheduleInfo:
        return self._run(self._client.pause_schedule(name))

    def resume_schedule(self, name: str) -> ScheduleInfo:
        return self._run(self._client.resume_schedule(name))

    def remove_schedule(self, name: str) -> None:
        self._run(self._client.remove_schedule(name))
