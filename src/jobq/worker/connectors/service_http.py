"""Calling a local service's HTTP API from a connector (ComfyUI, AUTOMATIC1111): one request
with the failures a worker must tell apart. An unreachable service is ``ServiceUnavailable``
(the job is retried elsewhere and the service marked unhealthy); a slow answer is an ordinary
retryable failure."""

from __future__ import annotations

from typing import Any

import httpx

from jobq.worker.connectors.base import ServiceUnavailable
from jobq.worker.connectors.http11 import Target, describe_connect_error
from jobq.worker.context import HandlerError


def client(config: dict[str, Any], timeout: float) -> httpx.AsyncClient:
    """The HTTP client a connector talks to its service with: the configured ``url``, headers
    and ``connect_timeout``; no proxy from the environment (the service is local)."""
    return httpx.AsyncClient(
        base_url=config["url"].rstrip("/"),
        headers=config["headers"],
        timeout=httpx.Timeout(timeout, connect=config["connect_timeout"]),
        trust_env=False,
    )


async def request(
    http: httpx.AsyncClient, method: str, path: str, *, service: str, target: Target, **kwargs: Any
) -> httpx.Response:
    try:
        return await http.request(method, path, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise ServiceUnavailable(unreachable(exc, target)) from None
    except httpx.TimeoutException:
        raise HandlerError(f"{service}: {method} {path} timed out") from None


def unreachable(exc: BaseException, target: Target) -> str:
    """Why the service could not be reached, in the words ``jobq workers`` shows (the root cause
    of httpx's and websockets' errors: ``connection refused``, ...)."""
    root: BaseException = exc
    seen = 0
    while (root.__cause__ or root.__context__) is not None and seen < 10:
        root, seen = root.__cause__ or root.__context__ or root, seen + 1
    if isinstance(root, OSError | TimeoutError):
        return describe_connect_error(root, target)
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


__all__ = ["client", "request", "unreachable"]
