"""The native door's ``history`` message: the hub's history (``core/history.py``, docs/protocol.md).

A translator like the rest of the door: one ``Hub.history`` call (which decides who may read
it), answered ``reply`` with the ``History`` as a map, the shape ``GET /api/history`` has.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from jobq.core.auth import Caller
from jobq.core.history import MAX_MINUTES
from jobq.errors import InvalidRequest
from jobq.hub.hub import Hub
from jobq.protocol import native


def history_handler(
    hub: Hub, send: Callable[[bytes, native.Outbound], None]
) -> Callable[[bytes, native.HistoryQuery, Caller], Awaitable[None]]:
    """The door's handler of ``history`` messages."""

    async def handle(identity: bytes, msg: native.HistoryQuery, caller: Caller) -> None:
        if not 1 <= msg.minutes <= MAX_MINUTES:
            raise InvalidRequest(f"minutes must be 1 to {MAX_MINUTES} (7 days)")
        found = await hub.history(msg.minutes, msg.service, caller=caller)
        send(identity, native.Reply(rid=msg.rid, value=msgspec.to_builtins(found)))

    return handle


__all__ = ["history_handler"]
