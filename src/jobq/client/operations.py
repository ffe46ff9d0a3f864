"""The client SDK's operator calls on the queue: pause and resume a service, and cancel or
retry a filtered selection of jobs at once (``core/operations.py``). The base of
:class:`~jobq.client.client.Client`, which supplies the connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from jobq.client.listing import states_named
from jobq.core.history import History
from jobq.core.model import JobFilter
from jobq.core.operations import DEFAULT_BULK_LIMIT, BulkResult, ServicePause
from jobq.protocol import native
from jobq.protocol.connection import Connection


class QueueCalls:
    conn: Connection

    # Defined by Client, used here.
    async def connect(self) -> object:
        raise NotImplementedError

    async def _request(self, message: native.Inbound, timeout: float | None = None) -> native.Outbound:
        raise NotImplementedError

    async def _reply(self, message: native.Inbound) -> Any:
        await self.connect()
        reply = await self._request(message)
        assert isinstance(reply, native.Reply)
        return reply.value

    async def _service_command(self, action: str, service: str) -> ServicePause:
        value = await self._reply(
            native.ServiceCommand(rid=self.conn.next_rid(), action=action, service=service)
        )
        return msgspec.convert(value, ServicePause)

    async def pause_service(self, service: str) -> ServicePause:
        """Pause the service's queue: its jobs are still accepted, none is handed out until it
        is resumed; running jobs finish. Durable (SQLite, Redis). Admin only."""
        return await self._service_command("pause", service)

    async def resume_service(self, service: str) -> ServicePause:
        """Hand out the jobs of a paused service again. Admin only."""
        return await self._service_command("resume", service)

    async def bulk(
        self,
        action: str,
        *,
        state: str | Sequence[str] | None = None,
        service: str | None = None,
        customer_id: str | None = None,
        worker: str | None = None,
        blocked: bool = False,
        ids: Sequence[int] = (),
        limit: int = DEFAULT_BULK_LIMIT,
    ) -> BulkResult:
        """``cancel`` or ``retry`` the jobs these filters select (at least one filter; newest
        first, at most ``limit``, 10,000 at most). ``worker`` is a worker's id. Each job is
        checked as a single cancel or retry would be (a client acts on its own jobs only);
        those the action does not apply to are in ``skipped`` with the reason."""
        query = JobFilter(
            states=states_named(state),
            service=service,
            customer_id=customer_id,
            worker=worker,
            ids=list(ids),
            limit=limit,
        )
        message = native.BulkJobs(rid=self.conn.next_rid(), action=action, query=query, blocked=blocked)
        return msgspec.convert(await self._reply(message), BulkResult)

    async def history(self, minutes: int = 60, service: str | None = None) -> History:
        """The hub's history of the last ``minutes`` (1..10080): per bucket (10 s up to a day,
        1 min beyond) jobs submitted, completed and failed, queue depth, wait and run time
        percentiles; summed over services unless ``service``. Admin and monitor tokens."""
        message = native.HistoryQuery(rid=self.conn.next_rid(), minutes=minutes, service=service)
        return msgspec.convert(await self._reply(message), History)


__all__ = ["QueueCalls"]
