"""The client SDK's group calls (``docs/workflows.md``, "Groups"): submit a group (a spec with
``expand``, expanded by the hub, or explicit members), read it, wait for it (and its finalize
job), follow its events, cancel it. A base of :class:`~jobq.client.client.Client`, over the
native protocol's ``submit_group``, ``group``, ``group_watch`` and ``group_cancel`` messages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import msgspec

from jobq.client.operations import QueueCalls
from jobq.client.specs import PayloadLike, make_spec
from jobq.core.model import GroupSpec, JobEvent, JobSpec
from jobq.core.workflow import GroupSubmitted, GroupView
from jobq.errors import InvalidRequest
from jobq.protocol import native


def finalize_spec(finalize: str | JobSpec | None, args: Mapping[str, Any] | None = None) -> JobSpec | None:
    """A finalize spec: a service name (with the handler's JSON ``args``) or a full spec."""
    if finalize is None or isinstance(finalize, JobSpec):
        return finalize
    return make_spec(finalize, dict(args) if args else None)


class GroupCalls(QueueCalls):
    # Client's: the queues its pushed events go to, whether it is open, and its pinger (which
    # keeps the hub's subscription of this connection alive).
    _streams: list[asyncio.Queue[JobEvent]]
    _opened: bool

    def _ensure_pinger(self) -> None:
        raise NotImplementedError

    async def submit_group(
        self,
        /,
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
        """Submit one group and return it with its members' ids (in member order).

        Either ``service`` with a JSON-object ``payload`` and ``expand`` (one member per
        combination, made by the hub: ``expand={"well": "A01..H12", "dose": [1, 10]}``) and
        ``options`` as :meth:`submit` takes them, or ``members`` (explicit specs). ``finalize``
        (a service name, with ``finalize_args`` as its JSON payload, or a spec) runs once every
        member has ended and ``policy`` (``all_completed`` or ``all_ended``) holds."""
        final = finalize_spec(finalize, finalize_args)
        if members is not None:
            if service is not None or expand is not None:
                raise InvalidRequest("submit_group takes members, or a service with expand, not both")
            group = msgspec.convert(
                {
                    "members": list(members),
                    "finalize": final,
                    "policy": policy,
                    "idempotency_key": idempotency_key,
                },
                GroupSpec,
                from_attributes=True,
            )
            message = native.SubmitGroup(rid=self.conn.next_rid(), group=group)
        else:
            if service is None or expand is None:
                raise InvalidRequest("submit_group needs a service and expand (or members)")
            spec = make_spec(
                service, payload, expand=dict(expand), finalize=final, group_policy=policy,
                idempotency_key=idempotency_key, **options,
            )  # fmt: skip
            message = native.SubmitGroup(rid=self.conn.next_rid(), spec=spec)
        await self.connect()
        return msgspec.convert(await self._reply(message), GroupSubmitted)

    async def group(self, group_id: int) -> GroupView:
        """The group: ``state``, ``total``, ``counts`` per state, ``progress`` (percent of
        members ended), ``finalize`` (the finalize job's id once submitted)."""
        await self.connect()
        return msgspec.convert(
            await self._reply(native.GroupGet(rid=self.conn.next_rid(), id=group_id)), GroupView
        )

    async def wait_group(self, group_id: int, timeout: float | None = None) -> GroupView:
        """The group once it has ended (after its finalize job), with ``result``: the finalize
        job's result, the group's. Raises Timeout."""
        await self.connect()
        message = native.GroupGet(rid=self.conn.next_rid(), id=group_id, wait=True, timeout=timeout)
        reply_timeout = 1e9 if timeout is None else timeout + self.conn.timeout
        reply = await self._request(message, reply_timeout)
        assert isinstance(reply, native.Reply)
        return msgspec.convert(reply.value, GroupView)

    async def watch_group(self, group_id: int) -> AsyncIterator[JobEvent]:
        """The group's own events as they happen, until (and with) its ``group_ended``:
        ``group_progress`` (at most one per turn of the hub: ``progress`` percent, ``counts``
        of ended members per state, ``total``), ``group_finalizing`` and ``group_ended``
        (``state`` completed, failed or cancelled, ``error`` why). Each event's ``id`` and
        ``group`` are the group's. A group that has ended yields its ``group_ended`` at once."""
        await self.connect()
        queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._streams.append(queue)
        self._ensure_pinger()
        ended = False
        try:
            await self._reply(native.GroupWatch(rid=self.conn.next_rid(), id=group_id))
            while not ended:
                event = await queue.get()
                if event.id == group_id and event.group == group_id:
                    ended = event.kind == "group_ended"
                    yield event
        finally:
            self._streams.remove(queue)
            if not ended and self._opened:
                with contextlib.suppress(Exception):
                    await self.conn.request(native.Unsubscribe(rid=self.conn.next_rid(), ids=[group_id]), 1.0)

    async def cancel_group(self, group_id: int) -> GroupView:
        """Cancel a group that has not ended: its members not yet ended and its finalize job;
        no finalize job is submitted for it."""
        await self.connect()
        message = native.GroupCancel(rid=self.conn.next_rid(), id=group_id)
        return msgspec.convert(await self._reply(message), GroupView)
