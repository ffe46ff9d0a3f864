"""The native door's group messages: ``submit_group``, ``group``, ``group_cancel``,
``group_watch`` (docs/protocol.md, docs/workflows.md).

A translator like the rest of the door: each message is one hub call, answered ``reply`` with
the group as a map (``core/workflow.GroupView``; ``submit_group``: ``{group, members,
created}``). Errors go back as the door's ``error`` reply (its ``_guard``). A ``group_watch``
makes the connection a subscriber of the group's events (the door's, swept when silent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from jobq.core.auth import Caller
from jobq.errors import InvalidRequest
from jobq.hub.events import Subscriber
from jobq.hub.hub import Hub
from jobq.protocol import native

Send = Callable[[bytes, native.Outbound], None]
Handler = Callable[[bytes, Any, Caller], Awaitable[None]]
#: The door's subscriber for a connection (made on first use).
SubscriberOf = Callable[[bytes, Caller], Subscriber]


def group_handlers(hub: Hub, send: Send, subscriber: SubscriberOf) -> dict[type[Any], Handler]:
    """The door's handlers of the group messages, by message type."""

    async def submit_group(identity: bytes, msg: native.SubmitGroup, caller: Caller) -> None:
        if (msg.spec is None) == (msg.group is None):
            raise InvalidRequest("submit_group takes a spec with expand, or a group of members")
        request = msg.spec if msg.spec is not None else msg.group
        assert request is not None
        done = await hub.submit_group(request, caller=caller)
        send(identity, native.Reply(rid=msg.rid, value=msgspec.to_builtins(done)))

    async def group(identity: bytes, msg: native.GroupGet, caller: Caller) -> None:
        if msg.wait:
            view = await hub.wait_group(msg.id, msg.timeout, caller=caller)
        else:
            view = await hub.group(msg.id, caller=caller)
        send(identity, native.Reply(rid=msg.rid, value=msgspec.to_builtins(view)))

    async def group_cancel(identity: bytes, msg: native.GroupCancel, caller: Caller) -> None:
        view = await hub.cancel_group(msg.id, caller=caller)
        send(identity, native.Reply(rid=msg.rid, value=msgspec.to_builtins(view)))

    async def group_watch(identity: bytes, msg: native.GroupWatch, caller: Caller) -> None:
        view = await hub.watch_group(subscriber(identity, caller), msg.id, caller=caller)
        send(identity, native.Reply(rid=msg.rid, value=msgspec.to_builtins(view)))

    return {
        native.SubmitGroup: submit_group,
        native.GroupGet: group,
        native.GroupCancel: group_cancel,
        native.GroupWatch: group_watch,
    }
