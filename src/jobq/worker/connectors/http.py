"""``http``: any HTTP service. The job's payload (or a template of it) is sent to ``url``.

- ``mode = "sync"`` (the default): the reply's body is the result.
- ``mode = "poll"``: the reply names a job URL (``Location``, or the JSON field ``job_url_field``,
  or ``poll_url`` with ``{{remote_id}}`` from the field ``id_field``); the connector GETs it every
  ``poll_interval`` seconds, reports ``progress_field``/``message_field`` as job progress, and
  ends when ``status_field`` is one of ``done_values`` (result: ``result_field`` of that answer,
  or all of it) or ``failed_values`` (failure: ``error_field``).
- ``mode = "callback"``: the service is handed ``{{callback_url}}`` and calls it back later
  (see :mod:`jobq.worker.connectors.callback`).

Cancelling sends ``cancel_method`` to ``cancel_url`` when one is configured. Health is
``health_method`` (GET) on ``health_url`` (default: ``url``); any answer below
``health_ok_below`` (500) counts as healthy, since a GET on a POST-only URL proves the service is
up as well as a 200 does. Templates (``template``, ``poll_url``, ``cancel_url``,
``cancel_body``) substitute ``{{payload}}`` (the payload's text as is: a JSON payload embeds as
JSON), ``{{payload_string}}`` (it as a JSON string), ``{{job_id}}``, ``{{attempt}}``,
``{{service}}``, ``{{remote_id}}``, ``{{job_url}}`` and ``{{callback_url}}``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jobq.worker.connectors.base import (
    Connector,
    Health,
    Option,
    ServiceUnavailable,
    dig,
    http_failure,
)
from jobq.worker.connectors.callback import CallbackServer
from jobq.worker.connectors.http11 import Http11Client, HttpError, Response, Target
from jobq.worker.connectors.registry import ConfigError
from jobq.worker.context import HandlerError, JobContext

DONE = ["done", "completed", "complete", "succeeded", "success", "finished"]
FAILED = ["failed", "error", "cancelled", "canceled"]


def render(template: str, values: dict[str, str]) -> str:
    out = template
    for key, value in values.items():
        out = out.replace("{{" + key + "}}", value)
    return out


class HttpConnector(Connector):
    kind = "http"
    options = {
        "url": Option(str, help="where the payload is sent"),
        "method": Option(str, "POST", "HTTP method of the job request"),
        "headers": Option(dict, {}, "extra request headers"),
        "content_type": Option(str, "", "Content-Type (default: the job's, else application/octet-stream)"),
        "template": Option(str, "", "request body template (default: the payload as is)"),
        "timeout": Option(float, 300.0, "seconds the service has per job", minimum=0.001),
        "connect_timeout": Option(float, 5.0, "seconds to connect", minimum=0.001),
        "max_connections": Option(int, 100, "connections to the service at most", minimum=1),
        "pipeline": Option(int, 1, "requests in flight per connection (HTTP pipelining; 1: off)", minimum=1),
        "mode": Option(str, "sync", "how the result comes back", choices=("sync", "poll", "callback")),
        "health_url": Option(str, "", "what health checks call (default: url)"),
        "health_method": Option(str, "GET", "method of health checks"),
        "health_ok_below": Option(int, 500, "health answers below this status are healthy", minimum=100),
        "cancel_url": Option(str, "", "request sent when a job is cancelled (template)"),
        "cancel_method": Option(str, "POST", "method of the cancel request"),
        "cancel_body": Option(str, "", "body of the cancel request (template)"),
        "job_url_field": Option(str, "url", "poll: reply field holding the job URL"),
        "id_field": Option(str, "id", "poll: reply field holding the service's job id"),
        "poll_url": Option(str, "", "poll: job URL template (with {{remote_id}})"),
        "poll_interval": Option(float, 0.5, "poll: seconds between polls", minimum=0.01),
        "status_field": Option(str, "status", "poll: field holding the job's status"),
        "done_values": Option(list, DONE, "poll: statuses that mean done"),
        "failed_values": Option(list, FAILED, "poll: statuses that mean failed"),
        "progress_field": Option(str, "progress", "poll: field holding progress"),
        "progress_scale": Option(float, 1.0, "poll: progress is multiplied by this (100 for 0..1)"),
        "message_field": Option(str, "message", "poll: field holding a progress message"),
        "result_field": Option(str, "", "poll: field holding the result (default: the whole answer)"),
        "error_field": Option(str, "error", "poll: field holding the error of a failed job"),
        "callback_listen": Option(str, "127.0.0.1:0", "callback: HOST:PORT the worker listens on"),
        "callback_public_url": Option(str, "", "callback: base URL the service should call"),
    }

    def __init__(self, service: str, options: dict[str, Any]) -> None:
        super().__init__(service, options)
        c = self.config
        try:
            self.target = Target.parse(c["url"])
            self.health_target = Target.parse(c["health_url"] or c["url"])
        except ValueError as exc:
            raise ConfigError(f"{service}: {exc}") from None
        self.method = c["method"].upper()
        self.headers = {"content-type": c["content_type"] or "application/octet-stream", **c["headers"]}
        self.plain = c["mode"] == "sync" and not c["template"]
        #: The hot path's request headers, encoded once (the job id and length are added per job).
        self.head = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items()).encode("latin-1")
        self.client = Http11Client(
            limit=c["max_connections"], pipeline=c["pipeline"], connect_timeout=c["connect_timeout"]
        )
        self.callbacks: CallbackServer | None = None
        #: job id → (remote id, job URL) learned from the service, for cancel requests.
        self.remote: dict[int, tuple[str, str]] = {}

    async def start(self) -> None:
        if self.config["mode"] == "callback":
            self.callbacks = CallbackServer(
                self.config["callback_listen"], self.config["callback_public_url"]
            )
            await self.callbacks.start()

    async def stop(self) -> None:
        await self.client.close()
        if self.callbacks is not None:
            await self.callbacks.stop()

    async def health(self) -> Health:
        try:
            response = await self.client.request(
                self.config["health_method"].upper(),
                self.health_target,
                timeout=self.config["connect_timeout"],
            )
        except HttpError as exc:
            return Health.down(str(exc))
        except TimeoutError:
            return Health.down(f"no answer from {self.config['health_url'] or self.config['url']}")
        if response.status >= self.config["health_ok_below"]:
            return Health.down(
                f"HTTP {response.status} from {self.config['health_url'] or self.config['url']}"
            )
        return Health.up()

    # ------------------------------------------------------------------ jobs

    def _values(self, ctx: JobContext, **extra: str) -> dict[str, str]:
        text = ctx.payload.decode(errors="replace")
        remote_id, job_url = self.remote.get(ctx.id, ("", ""))
        return {
            "payload": text,
            "payload_string": json.dumps(text),
            "job_id": str(ctx.id),
            "attempt": str(ctx.attempt),
            "service": self.service,
            "remote_id": remote_id,
            "job_url": job_url,
            **extra,
        }

    async def _send(
        self, method: str, target: Target | str, body: bytes, headers: dict[str, str] | bytes
    ) -> Response:
        try:
            return await self.client.request(
                method, target, body=body, headers=headers, timeout=self.config["timeout"]
            )
        except HttpError as exc:
            raise ServiceUnavailable(str(exc)) from None
        except TimeoutError:
            raise HandlerError(f"{self.service}: no answer within {self.config['timeout']:g}s") from None

    async def run(self, ctx: JobContext) -> Any:
        c = self.config
        if self.plain and not ctx.content_type:  # the hot path: payload as is, reply body as result
            head = b"%sx-jobq-job: %d\r\n" % (self.head, ctx.id)
            try:
                response = await self.client.request(
                    self.method, self.target, body=ctx.payload, headers=head, timeout=c["timeout"]
                )
            except HttpError as exc:
                raise ServiceUnavailable(str(exc)) from None
            except TimeoutError:
                raise HandlerError(f"{self.service}: no answer within {c['timeout']:g}s") from None
            if response.status >= 300:
                raise http_failure(response.status, response.body, self.service)
            return response.body
        headers = {**self.headers, "x-jobq-job": str(ctx.id)}
        if ctx.content_type and not c["content_type"]:
            headers["content-type"] = ctx.content_type
        if self.plain:
            response = await self._send(self.method, self.target, ctx.payload, headers)
            if response.status >= 300:
                raise http_failure(response.status, response.body, self.service)
            return response.body
        outcome = None
        extra: dict[str, str] = {}
        if self.callbacks is not None:
            url, outcome = self.callbacks.expect(ctx.id, ctx.progress)
            extra["callback_url"] = url
            headers["x-callback-url"] = url
        body = render(c["template"], self._values(ctx, **extra)).encode() if c["template"] else ctx.payload
        try:
            response = await self._send(self.method, self.target, body, headers)
            if response.status >= 300:
                raise http_failure(response.status, response.body, self.service)
            if c["mode"] == "sync":
                return response.body
            if outcome is not None:
                return await self._called_back(ctx, outcome)
            return await self._poll(ctx, response)
        finally:
            self.remote.pop(ctx.id, None)
            if outcome is not None and not outcome.done():
                outcome.cancel()

    async def _called_back(self, ctx: JobContext, outcome: asyncio.Future[tuple[bool, bytes]]) -> bytes:
        try:
            ok, body = await asyncio.wait_for(outcome, self.config["timeout"])
        except TimeoutError:
            raise HandlerError(f"{self.service}: no callback within {self.config['timeout']:g}s") from None
        if not ok:
            raise HandlerError(f"{self.service}: {body[:2000].decode(errors='replace')}")
        return body

    async def _poll(self, ctx: JobContext, first: Response) -> Any:
        c = self.config
        reply = _json(first.body)
        remote_id = str(dig(reply, c["id_field"]) or "")
        if c["poll_url"]:
            job_url = render(c["poll_url"], {**self._values(ctx), "remote_id": remote_id})
        else:
            job_url = first.header("location") or str(dig(reply, c["job_url_field"]) or "")
        if not job_url:
            raise HandlerError(f"{self.service}: the reply names no job URL to poll", retryable=False)
        if job_url.startswith("/"):
            job_url = (
                f"{'https' if self.target.tls else 'http'}://{self.target.host}:{self.target.port}{job_url}"
            )
        self.remote[ctx.id] = (remote_id, job_url)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + c["timeout"]
        while True:
            answer = await self._send("GET", job_url, b"", {"x-jobq-job": str(ctx.id)})
            if answer.status >= 300:
                raise http_failure(answer.status, answer.body, self.service)
            state = _json(answer.body)
            status = str(dig(state, c["status_field"]) or "").lower()
            if status in c["done_values"]:
                if not c["result_field"]:
                    return answer.body
                result = dig(state, c["result_field"])
                return result.encode() if isinstance(result, str) else result
            if status in c["failed_values"]:
                error = dig(state, c["error_field"]) or status
                raise HandlerError(f"{self.service}: {error}")
            value = dig(state, c["progress_field"])
            message = dig(state, c["message_field"])
            if isinstance(value, int | float) or message is not None:
                ctx.progress(
                    float(value) * c["progress_scale"] if isinstance(value, int | float) else None,
                    str(message) if message is not None else None,
                )
            if loop.time() > deadline:
                raise HandlerError(f"{self.service}: not done within {c['timeout']:g}s")
            await ctx.sleep(c["poll_interval"])

    async def cancel(self, ctx: JobContext) -> None:
        c = self.config
        if not c["cancel_url"]:
            return
        values = self._values(ctx)
        url = render(c["cancel_url"], values)
        body = render(c["cancel_body"], values).encode()
        response = await self.client.request(
            c["cancel_method"].upper(), url, body=body, headers={"x-jobq-job": str(ctx.id)}, timeout=10
        )
        if response.status >= 400:
            raise HandlerError(f"cancel request answered HTTP {response.status}")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError:
        return None
