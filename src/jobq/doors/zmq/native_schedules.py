"""The native door's ``schedule`` command: cron schedules (docs/protocol.md, docs/workflows.md).

A translator like the rest of the door: each action is one hub call, answered ``reply`` with
the schedule as a map (``core/schedule_info.ScheduleInfo``), a list of them, or nil.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from jobq.core.auth import Caller
from jobq.core.schedule import DEFAULT_CATCH_UP
from jobq.errors import InvalidRequest
from jobq.hub.hub import Hub
from jobq.protocol import native

ACTIONS = ("add", "list", "get", "pause", "resume", "remove")


async def run_schedule_command(hub: Hub, msg: native.ScheduleCommand, caller: Caller) -> Any:
    """What one ``schedule`` message asks, as the value of its reply."""
    action, name = msg.action, msg.name
    if action == "add":
        if msg.spec is None:
            raise InvalidRequest("schedule add needs a job spec")
        catch_up = DEFAULT_CATCH_UP if msg.catch_up is None else msg.catch_up
        done = await hub.add_schedule(
            name, msg.cron, msg.spec, tz=msg.tz, catch_up=catch_up, coalesce=msg.coalesce, caller=caller
        )
    elif action == "list":
        return msgspec.to_builtins(await hub.list_schedules(caller=caller))
    elif action == "get":
        done = await hub.get_schedule(name, caller=caller)
    elif action == "pause":
        done = await hub.pause_schedule(name, caller=caller)
    elif action == "resume":
        done = await hub.resume_schedule(name, caller=caller)
    elif action == "remove":
        await hub.remove_schedule(name, caller=caller)
        return None
    else:
        raise InvalidRequest(f"unknown schedule action {action!r} (one of {', '.join(ACTIONS)})")
    return msgspec.to_builtins(done)


def schedule_handler(
    hub: Hub, send: Callable[[bytes, native.Outbound], None]
) -> Callable[[bytes, native.ScheduleCommand, Caller], Awaitable[None]]:
    """The door's handler of ``schedule`` messages."""

    async def handle(identity: bytes, msg: native.ScheduleCommand, caller: Caller) -> None:
        send(identity, native.Reply(rid=msg.rid, value=await run_schedule_command(hub, msg, caller)))

    return handle
