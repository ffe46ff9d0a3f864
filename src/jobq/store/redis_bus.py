"""Notifications between the hubs of one Redis namespace: a capped stream every hub reads.

Entries are ``{o: origin instance, k: kind, b: body}``:

- ``r``: jobs may have become runnable (written by the Lua scripts that queue jobs, in the
  same atomic step, so no hub misses a job it could dispatch);
- ``t``: a job ended (completed, failed, cancelled), one entry per job with the event's fields,
  written by the Lua script that ended it, in the same atomic step: a hub that dies right after
  a job ends cannot take its end along, so whoever waits for the job at another hub hears it;
- ``e``: the other job events of one event-loop turn of one hub (a msgpack list of
  ``JobEvent``), best effort: sent after the change, lost if the hub dies in between;
- ``s``: stop attempts: ``[worker, [job ids]]`` for the hub that has that worker;
- ``p``: the paused services changed (``RedisStore.set_paused``): every hub reads them again;
- ``f``: a group ended, ``[group, [workers that ran a member]]``: every other hub tells those
  attached to it (FINISHED), sent (with the turn's stops) by the hub the store let tell the
  group's end (``Store.finished_groups``: once per group).

A stream rather than pub/sub because a reader that lost its connection resumes from the last
entry it read, so a short Redis or network blip loses no event; ``XREAD BLOCK`` wakes the
reader as soon as an entry lands, so there is no polling delay. The stream's key carries the
namespace's hash tag, so scripts may write it on a Redis Cluster too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from jobq.core.model import JobEvent
from jobq.core.states import JobState
from jobq.store.reports import StoreListener

log = logging.getLogger("jobq.store.redis")

#: Entries the stream keeps at most (approximately): the bound on its memory. Ticks also trim
#: entries older than BUS_AGE seconds, so at ordinary rates it is much shorter. A reader further
#: behind than either (a hub stalled for minutes) loses entries.
BUS_LENGTH = 100_000
BUS_AGE = 300.0
#: Milliseconds one XREAD waits for entries.
BLOCK_MS = 1000

_encode = msgspec.msgpack.Encoder().encode
_decode_events = msgspec.msgpack.Decoder(list[JobEvent]).decode
_decode_stop = msgspec.msgpack.Decoder(tuple[str, list[int]]).decode
_decode_finished = msgspec.msgpack.Decoder(tuple[int, list[str]]).decode
_decode_frames = msgspec.msgpack.Decoder(list[bytes]).decode

Entry = tuple[bytes, dict[bytes, bytes]]


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()


def end_of(fields: dict[bytes, bytes]) -> JobEvent:
    """The event of a ``t`` entry."""
    result = fields.get(b"res")
    progress = fields.get(b"pg")
    return JobEvent(
        id=int(fields[b"id"]),
        kind=fields[b"kind"].decode(),  # type: ignore[arg-type]
        state=JobState(fields[b"state"].decode()),
        at=float(fields[b"at"]),
        service=fields[b"svc"].decode(),
        worker=_text(fields.get(b"w")),
        attempt=int(fields[b"att"]),
        progress=None if progress is None else float(progress),
        message=_text(fields.get(b"pm")),
        error=_text(fields.get(b"err")),
        result=None if result is None else _decode_frames(result),
        customer_id=_text(fields.get(b"cust")),
    )


#: Runs one Redis command on the given client (the store's guard: timeouts, errors).
Command = Callable[..., Awaitable[Any]]


def _entries(read: list[Any]) -> list[Entry]:
    """XREAD's entries of one stream, ``(id, {field: value})``: Redis gives each entry's fields
    as a flat list (redis-py over TLS, as a dict already)."""
    out: list[Entry] = []
    for eid, fields in read:
        if not isinstance(fields, dict):
            fields = dict(zip(fields[::2], fields[1::2], strict=True))
        out.append((eid, fields))
    return out


class Bus:
    def __init__(
        self, key: str, job_key: Callable[[int], str], origin: str, command: Command, read: Command
    ) -> None:
        self.key = key
        self._job_key = job_key
        self.origin = origin
        self._command = command
        self._read = read
        self._listener: StoreListener | None = None
        self._reader: asyncio.Task[None] | None = None
        self._events: list[JobEvent] = []
        #: Stops ``(worker, [job ids])`` and groups' ends ``(group, [workers])`` of this turn.
        self._stops: list[tuple[str, list[int]] | tuple[int, list[str]]] = []
        #: Jobs that ended this turn: their ends are on the bus already (see ``event``).
        self._ended: set[int] = set()
        self._flushing = False
        self._sender: asyncio.Task[None] | None = None
        self._closed = False
        #: No other hub was alive at the last tick: events this hub makes have no reader (the
        #: scripts skip theirs likewise, prelude.lua ``heard``). A hub that joins is seen at
        #: the next tick; until then, its watchers miss this hub's progress and start events.
        self.alone = False

    # ------------------------------------------------------------------ reading

    def start(self, listener: StoreListener) -> None:
        self._listener = listener
        if self._reader is None:
            self._reader = asyncio.ensure_future(self._read_forever())

    async def _read_forever(self) -> None:
        last: bytes | None = None
        healthy = True
        while not self._closed:
            try:
                if last is None:
                    # Start after the newest entry: what happened before this hub is not news.
                    newest = await self._command("XREVRANGE", self.key, "+", "-", "COUNT", 1)
                    last = newest[0][0] if newest else b"0-0"
                reply = await self._read("XREAD", "COUNT", 1000, "BLOCK", BLOCK_MS, "STREAMS", self.key, last)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if healthy:
                    log.warning("hub notifications interrupted: %s", exc)
                healthy = False
                await asyncio.sleep(0.5)
                continue
            if not healthy:
                healthy = True
                log.info("hub notifications resumed")
                # Whatever was trimmed away meanwhile, a dispatch round catches up on it.
                if self._listener is not None:
                    self._listener.on_paused()  # a pause may have been missed meanwhile
                    self._listener.on_ready()
            if not reply:
                continue
            entries = _entries(reply[0][1])
            last = entries[-1][0]
            await self._fetch_big_results(entries)
            # Let this turn's replies to our own requests land first: a client that just
            # submitted here watches its jobs before their ends (from another hub) arrive.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            self._dispatch(entries)

    async def _fetch_big_results(self, entries: list[Entry]) -> None:
        for _, fields in entries:
            if fields.get(b"big") and fields.get(b"o") != self.origin.encode():
                with contextlib.suppress(Exception):
                    result = await self._command("HGET", self._job_key(int(fields[b"id"])), "res")
                    if result is not None:
                        fields[b"res"] = result

    def _dispatch(self, entries: list[Entry]) -> None:
        listener = self._listener
        if listener is None:
            return
        ready = paused = False
        origin = self.origin.encode()
        for _entry_id, fields in entries:
            if fields.get(b"o") == origin:
                continue
            kind = fields.get(b"k")
            try:
                if kind == b"r":
                    ready = True
                elif kind == b"t":
                    listener.on_event(end_of(fields))
                elif kind == b"e":
                    for event in _decode_events(fields[b"b"]):
                        listener.on_event(event)
                elif kind == b"s":
                    worker, ids = _decode_stop(fields[b"b"])
                    listener.on_stop(worker, ids)
                elif kind == b"p":
                    paused = True
                elif kind == b"f":
                    listener.on_group_finished(*_decode_finished(fields[b"b"]))
            except (KeyError, ValueError, msgspec.DecodeError, msgspec.ValidationError):
                log.warning("dropped a malformed hub notification")
        if paused:
            listener.on_paused()
        if ready:
            listener.on_ready()

    # ------------------------------------------------------------------ writing

    def event(self, event: JobEvent) -> None:
        if event.state.terminal and (event.group is None or event.group != event.id):
            # The script that ended the job put its end on the bus already, atomically.
            self._ended.add(event.id)
            return
        if self.alone:
            return
        self._events.append(event)
        self._schedule()

    async def paused(self) -> None:
        """Tell the other hubs that the paused services changed (at once: a rare change)."""
        await self._add(b"p", b"")

    def finished(self, group_id: int, workers: list[str]) -> None:
        """Tell the other hubs that a group ended, for its workers attached to them."""
        self._stops.append((group_id, workers))  # sent with this turn's stops, in order
        self._schedule()

    def stop(self, worker_id: str, job_ids: list[int]) -> None:
        self._stops.append((worker_id, list(job_ids)))
        self._schedule()

    def _schedule(self) -> None:
        """Everything of this turn goes out as one entry per kind, at the end of the turn."""
        if not self._flushing and not self._closed:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        events, self._events = self._events, []
        stops, self._stops = self._stops, []
        if self._ended:
            # Events of this turn about jobs that ended meanwhile would arrive after their end.
            events = [event for event in events if event.id not in self._ended]
            self._ended.clear()
        previous = self._sender
        self._sender = asyncio.ensure_future(self._send(events, stops, previous))

    async def _send(
        self,
        events: list[JobEvent],
        stops: list[tuple[str, list[int]] | tuple[int, list[str]]],
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None:
            # Entries leave in the order they were made.
            with contextlib.suppress(Exception):
                await previous
        try:
            if events:
                await self._add(b"e", _encode(events))
            for stop in stops:
                await self._add(b"f" if isinstance(stop[0], int) else b"s", _encode(stop))
        except Exception as exc:  # the store logs the outage; events of this turn are lost
            log.debug("could not pass notifications to the other hubs: %s", exc)

    async def _add(self, kind: bytes, body: bytes) -> None:
        await self._command(
            "XADD", self.key, "MAXLEN", "~", BUS_LENGTH, "*", "o", self.origin, "k", kind, "b", body
        )

    async def close(self) -> None:
        self._closed = True
        if self._events or self._stops:
            self._flush()
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sender, 2.0)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
