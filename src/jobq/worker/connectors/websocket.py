"""``websocket``: any WebSocket service. One connection per job: the payload (or ``template``) is
sent as one message, then the service's messages stream back until the final one.

A text message that is a JSON object is read with dotted field paths: ``progress_field`` and
``message_field`` become job progress (``progress_scale`` multiplies, e.g. 100 for 0..1);
``done_field`` in ``done_values`` ends the job with ``result_field`` of that message (or all of
it); in ``failed_values``, it fails with ``error_field``. Binary messages are collected as result
frames after a JSON header (the final result). Cancelling sends ``cancel_message`` (if set) and
closes the connection. Health: a WebSocket opening handshake with ``health_url`` (default
``url``), closed at once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from jobq.worker.connectors.base import Connector, Health, Option, ServiceUnavailable, dig
from jobq.worker.connectors.http import DONE, FAILED, render
from jobq.worker.context import HandlerError, JobCancelled, JobContext


def describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code} instead of a WebSocket"
    if isinstance(exc, TimeoutError):
        return "no WebSocket handshake in time"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class WebSocketConnector(Connector):
    kind = "websocket"
    options = {
        "url": Option(str, help="ws:// or wss:// URL of the service"),
        "headers": Option(dict, {}, "extra handshake headers"),
        "template": Option(str, "", "message template (default: the payload as is)"),
        "binary": Option(bool, False, "send the payload as a binary message"),
        "open_timeout": Option(float, 5.0, "seconds for the opening handshake", minimum=0.001),
        "timeout": Option(float, 300.0, "seconds a job may take", minimum=0.001),
        "max_size": Option(int, 64 * 2**20, "largest message accepted, in bytes", minimum=1024),
        "progress_field": Option(str, "progress", "field holding progress"),
        "progress_scale": Option(float, 1.0, "progress is multiplied by this"),
        "message_field": Option(str, "message", "field holding a progress message"),
        "done_field": Option(str, "status", "field that marks the final message"),
        "done_values": Option(list, DONE, "values of done_field that end the job"),
        "failed_values": Option(list, FAILED, "values of done_field that fail the job"),
        "result_field": Option(str, "result", "field of the final message holding the result"),
        "error_field": Option(str, "error", "field holding the error of a failed job"),
        "cancel_message": Option(str, "", "message sent when the job is cancelled (template)"),
        "health_url": Option(str, "", "what health checks open (default: url)"),
    }

    def __init__(self, service: str, options: dict[str, Any]) -> None:
        super().__init__(service, options)
        self.sockets: dict[int, ClientConnection] = {}

    def _connect(self, url: str) -> Any:
        c = self.config
        return connect(
            url,
            additional_headers=c["headers"],
            open_timeout=c["open_timeout"],
            max_size=c["max_size"],
            proxy=None,
            compression=None,
        )

    async def health(self) -> Health:
        try:
            async with self._connect(self.config["health_url"] or self.config["url"]):
                pass
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            return Health.down(describe(exc))
        return Health.up()

    def _values(self, ctx: JobContext) -> dict[str, str]:
        text = ctx.payload.decode(errors="replace")
        return {
            "payload": text,
            "payload_string": json.dumps(text),
            "job_id": str(ctx.id),
            "attempt": str(ctx.attempt),
            "service": self.service,
        }

    async def run(self, ctx: JobContext) -> Any:
        c = self.config
        try:
            ws = await self._connect(c["url"])
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise ServiceUnavailable(describe(exc)) from None
        self.sockets[ctx.id] = ws
        try:
            message: str | bytes
            if c["template"]:
                message = render(c["template"], self._values(ctx))
            elif c["binary"]:
                message = ctx.payload
            else:
                try:
                    message = ctx.payload.decode()
                except UnicodeDecodeError:
                    message = ctx.payload
            await ws.send(message)
            return await asyncio.wait_for(self._receive(ctx, ws), c["timeout"])
        except TimeoutError:
            raise HandlerError(f"{self.service}: not done within {c['timeout']:g}s") from None
        except ConnectionClosed as exc:
            if ctx.cancelled:
                raise JobCancelled(f"job {ctx.id} was cancelled") from None
            raise ServiceUnavailable(f"connection lost ({exc})") from None
        finally:
            self.sockets.pop(ctx.id, None)
            await ws.close()

    async def _receive(self, ctx: JobContext, ws: ClientConnection) -> Any:
        c = self.config
        frames: list[bytes] = []
        async for message in ws:
            if isinstance(message, bytes):
                frames.append(message)
                continue
            try:
                data = json.loads(message)
            except ValueError:
                ctx.progress(None, message[:500])
                continue
            status = str(dig(data, c["done_field"]) or "").lower()
            if status in c["done_values"]:
                result = dig(data, c["result_field"]) if c["result_field"] else None
                value = data if result is None else result
                if not frames:
                    return value.encode() if isinstance(value, str) else value
                header = value.encode() if isinstance(value, str) else json.dumps(value).encode()
                return [header, *frames]
            if status in c["failed_values"]:
                raise HandlerError(f"{self.service}: {dig(data, c['error_field']) or status}")
            progress = dig(data, c["progress_field"])
            text = dig(data, c["message_field"])
            if isinstance(progress, int | float) or text is not None:
                ctx.progress(
                    float(progress) * c["progress_scale"] if isinstance(progress, int | float) else None,
                    str(text) if text is not None else None,
                )
        if ctx.cancelled:
            raise JobCancelled(f"job {ctx.id} was cancelled")
        raise HandlerError(
            f"{self.service} closed the connection (code {ws.close_code}) before the final message"
        )

    async def cancel(self, ctx: JobContext) -> None:
        ws = self.sockets.get(ctx.id)
        if ws is None:
            return
        if self.config["cancel_message"]:
            try:
                await ws.send(render(self.config["cancel_message"], self._values(ctx)))
            except ConnectionClosed:
                return
        await ws.close()
