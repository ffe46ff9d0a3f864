"""The worker SDK over the HTTP door's ``/ws/worker`` stream (when ZeroMQ is not reachable).

A codec, not a second worker: the runtime's JQP messages are translated to the door's JSON
worker messages and back (``Hello`` ↔ ``register_worker`` / ``worker_registered``, ``Assign``
↔ ``job_assigned``, ``Done`` → ``complete_jobs``...). Payloads and results travel as base64
(``payload_format: raw``), so handlers see exactly the bytes that were submitted.

The connection reconnects by itself (like a ZeroMQ socket) and keeps what the runtime sends
meanwhile, up to :data:`BUFFER` messages; the hub then asks for a new ``register_worker``,
which the runtime answers as it answers JQP's ``Reconnect``.

Identity and encryption: the worker's token goes in the handshake's ``Authorization: Bearer``
header: the ``token`` given (the worker SDK passes its own, which defaults to the
``JOBQ_TOKEN`` environment variable), else the one a ``Hello`` carries as ``credential``.
``wss://`` and ``https://`` endpoints speak TLS, checked against the system's CAs
(``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` are honoured), or against the CA certificate in
``ca_file`` / ``JOBQ_CA_FILE`` (a hub with a self-signed certificate). A hub that refuses the
token is tried again every :data:`REFUSED_DELAY` seconds, with a warning each time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import ssl
from collections import deque
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from jobq.core.model import Assignment
from jobq.protocol import native as jqp
from jobq.protocol.connection import PushHandler

log = logging.getLogger("jobq.worker.ws")

#: Messages kept while disconnected (the oldest are dropped beyond; results are re-sent by
#: the runtime after its next hello anyway).
BUFFER = 10_000
#: Largest message accepted from the hub (bytes).
MAX_MESSAGE = 64 * 1024 * 1024
#: Seconds before trying again a hub that refused the worker's token (401/403).
REFUSED_DELAY = 10.0


def worker_url(endpoint: str) -> str:
    """``http://h:8080`` or ``ws://h:8080`` → ``ws://h:8080/ws/worker``."""
    parts = urlsplit(endpoint)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path not in ("", "/") else "/ws/worker"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def _b64(frames: list[bytes]) -> list[str]:
    return [base64.b64encode(f).decode() for f in frames]


def _frames(value: Any) -> list[bytes]:
    items = value if isinstance(value, list) else [value]
    return [base64.b64decode(item) for item in items]


def outbound(message: jqp.Inbound) -> dict[str, Any] | None:
    """A runtime message → the door's JSON worker message (None: nothing to send)."""
    if isinstance(message, jqp.Hello):
        return {
            "type": "register_worker",
            "worker_id": message.worker_id,
            "services": message.services,
            "slots": message.slots,
            "capabilities": message.capabilities,
            "name": message.name,
            "held": message.held,
            "schemas": message.schemas,
            "payload_format": "raw",
        }
    if isinstance(message, jqp.Heartbeat):
        return {"type": "worker_heartbeat", "metrics": message.metrics}
    if isinstance(message, jqp.SetSlots):
        return {"type": "set_slots", "slots": message.slots}
    if isinstance(message, jqp.Done):
        results = [
            {"job_id": i, "token": t, "result": _b64(r), "result_encoding": "base64"}
            for i, t, r in message.results
        ]
        return {"type": "complete_jobs", "results": results}
    if isinstance(message, jqp.Fail):
        return {
            "type": "fail_job",
            "job_id": message.id,
            "token": message.token,
            "error": message.error,
            "retry": message.retryable,
            **({"traceback": message.traceback} if message.traceback else {}),
        }
    if isinstance(message, jqp.Progress):
        return {
            "type": "update_job_progress",
            "job_id": message.id,
            "token": message.token,
            "progress": message.value,
            "message": message.message,
        }
    if isinstance(message, jqp.Release):
        return {"type": "release_jobs", "jobs": message.jobs}
    if isinstance(message, jqp.Bye):
        return {"type": "unregister_worker"}
    return None  # client requests have no place on a worker stream


def inbound(message: dict[str, Any]) -> jqp.Outbound | None:
    """The door's JSON message → what the runtime understands (None: nothing for it)."""
    kind = message.get("type")
    if kind == "job_assigned":
        payload = message.get("payload")
        raw = message.get("payload_encoding") == "base64"
        assignment = Assignment(
            id=message["job_id"],
            token=message["token"],
            service=message["service"],
            payload=_frames(payload) if raw else [json.dumps(payload).encode()],
            content_type=message.get("content_type"),
            attempt=message.get("attempt", 1),
            max_attempts=message.get("max_attempts", 3),
            timeout=message.get("timeout"),
            customer_id=message.get("customer_id"),
        )
        return jqp.Assign(jobs=[assignment])
    if kind == "worker_registered":
        return jqp.Welcome(
            heartbeat=float(message.get("heartbeat", 1.0)),
            lease_ttl=float(message.get("lease_ttl", 30.0)),
            kept=list(message.get("kept", [])),
            hub=str(message.get("hub", "")),
        )
    if kind in ("worker_heartbeat_ack", "jobs_completed_ack"):
        return jqp.Heartbeat()
    if kind == "cancel_job":
        return jqp.CancelJobs(ids=[message["job_id"]])
    if kind == "group_finished":
        return jqp.Finished(group=int(message["group_id"]))
    if kind in ("register_required", "disconnect"):
        return jqp.Reconnect(reason=str(message.get("reason", "")))
    if kind == "error":
        log.warning("hub reported: %s (%s)", message.get("message"), message.get("error"))
    return None


def tls_context(url: str, ca_file: str | None = None) -> ssl.SSLContext | None:
    """The TLS context for a ``wss://`` URL: the system's CAs (``SSL_CERT_FILE``), or only the
    one in ``ca_file`` / ``JOBQ_CA_FILE``; None for ``ws://``."""
    if not url.startswith("wss://"):
        return None
    ca_file = ca_file or os.environ.get("JOBQ_CA_FILE") or None
    return ssl.create_default_context(cafile=ca_file)


class WsConnection:
    """A Transport to one ``/ws/worker`` endpoint."""

    def __init__(
        self,
        endpoint: str,
        *,
        on_push: PushHandler,
        token: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.url = worker_url(endpoint)
        self.on_push = on_push
        self.token = token
        self.ssl = tls_context(self.url, ca_file)
        #: The runtime's token, as its hello carries it.
        self._credential: str | None = None
        self.malformed = 0
        self._out: deque[str] = deque(maxlen=BUFFER)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def open(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"jobq-ws {self.url}")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def failover(self) -> str:
        self.close()
        self.open()
        return self.endpoint

    def send(self, message: jqp.Inbound) -> None:
        if isinstance(message, jqp.Hello) and message.credential:
            self._credential = message.credential
        body = outbound(message)
        if body is not None:
            self._out.append(json.dumps(body))
            self._wake.set()

    def _headers(self) -> dict[str, str]:
        token = self.token or self._credential
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, WebSocketException

        delay = 0.1
        while True:
            try:
                async with connect(
                    self.url,
                    max_size=MAX_MESSAGE,
                    open_timeout=5,
                    additional_headers=self._headers(),
                    ssl=self.ssl,
                ) as ws:
                    delay = 0.1
                    writer = asyncio.ensure_future(self._write(ws))
                    try:
                        async for text in ws:
                            self._deliver(text)
                    finally:
                        writer.cancel()
                        with contextlib.suppress(asyncio.CancelledError, WebSocketException, OSError):
                            await writer
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    log.warning(
                        "%s refused this worker (HTTP %d): %s; set its token (--token, JOBQ_TOKEN)",
                        self.url,
                        status,
                        _reason(exc.response.body),
                    )
                    delay = REFUSED_DELAY
                else:
                    log.debug("websocket to %s: %s", self.url, exc)
            except (OSError, WebSocketException, TimeoutError) as exc:
                log.debug("websocket to %s: %s", self.url, exc)
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2) if delay < REFUSED_DELAY else 0.1

    async def _write(self, ws: Any) -> None:
        while True:
            while self._out:
                text = self._out[0]
                await ws.send(text)
                self._out.popleft()
            self._wake.clear()
            await self._wake.wait()

    def _deliver(self, text: str | bytes) -> None:
        try:
            message = json.loads(text)
            translated = inbound(message) if isinstance(message, dict) else None
        except (ValueError, KeyError, TypeError):
            self.malformed += 1
            log.warning("dropped a malformed message from the hub")
            return
        if translated is not None:
            self.on_push(translated)


def _reason(body: bytes | bytearray | None) -> str:
    """The hub's sentence from a refusal's JSON body (never a token: the hub puts none there)."""
    try:
        message = json.loads(body or b"{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or "no reason given")[:200]
