"""The client SDK's cron schedule calls (``docs/workflows.md``, "Schedules"): add, list, get,
pause, resume and remove. A base of :class:`~jobq.client.client.Client`, over the native
protocol's ``schedule`` command."""

from __future__ import annotations

from typing import Any

import msgspec

from jobq.client.operations import QueueCalls
from jobq.client.specs import PayloadLike, make_spec
from jobq.core.schedule_info import ScheduleInfo
from jobq.protocol import native


class ScheduleCalls(QueueCalls):
    async def _schedule_command(self, action: str, name: str = "", **fields: Any) -> Any:
        message = native.ScheduleCommand(rid=self.conn.next_rid(), action=action, name=name, **fields)
        return await self._reply(message)

    async def add_schedule(
        self,
        /,
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
        """Submit a job to ``service`` at each firing of ``cron`` (five fields, read in time zone
        ``tz``), with ``options`` as :meth:`submit` takes them (``priority``, ``customer_id``,
        ``requires``...). A schedule of that name is replaced (it then fires from now on).
        ``catch_up``: seconds a missed firing may be late and still run (default 3600);
        ``coalesce``: after downtime, run only the latest missed firing (default)."""
        spec = make_spec(service, payload, **options)
        value = await self._schedule_command(
            "add", name, cron=cron, spec=spec, tz=tz, catch_up=catch_up, coalesce=coalesce
        )
        return msgspec.convert(value, ScheduleInfo)

    async def list_schedules(self) -> list[ScheduleInfo]:
        """Every schedule the caller may see, by name, each with its next firing."""
        return msgspec.convert(await self._schedule_command("list"), list[ScheduleInfo])

    async def schedule(self, name: str) -> ScheduleInfo:
        """One schedule (NotFound if there is none of that name)."""
        return msgspec.convert(await self._schedule_command("get", name), ScheduleInfo)

    async def pause_schedule(self, name: str) -> ScheduleInfo:
        """Nothing fires while paused, nor is caught up after."""
        return msgspec.convert(await self._schedule_command("pause", name), ScheduleInfo)

    async def resume_schedule(self, name: str) -> ScheduleInfo:
        """Fire again from now on."""
        return msgspec.convert(await self._schedule_command("resume", name), ScheduleInfo)

    async def remove_schedule(self, name: str) -> None:
        """Remove it (the jobs it submitted stay)."""
        await self._schedule_command("remove", name)


__all__ = ["ScheduleCalls"]
