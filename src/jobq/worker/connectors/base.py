"""The connector interface: what the worker runtime asks of the code that drives one service.

A connector is built from its validated options for one service, then:

- ``start()`` once before the worker takes jobs (open clients; nothing that fails when the
  service is merely down: that is for ``health``);
- ``health()`` periodically: a :class:`Health` (ok, or the reason it is not, and any
  capabilities learned from the service, e.g. its GPU and models);
- ``run(ctx)`` per job: drives the service, reports progress with ``ctx.progress``, returns the
  result (bytes, a list of frames, str, or anything JSON can encode). It raises
  :class:`ServiceUnavailable` when the service cannot be reached or dies under the job (the
  runtime then fails the job retryably and stops taking this service's jobs until health
  returns), :class:`~jobq.worker.handlers.HandlerError` for a failure of the job itself;
- ``cancel(ctx)`` when the hub cancels a running job: tell the service (interrupt, dequeue). The
  runtime then cancels ``run``'s task if it has not ended within a second;
- ``stop()`` once at the end.

Options are declared as :class:`Option` entries in the class's ``options`` mapping; the loader
validates configuration against them (types, required keys, unknown keys with a hint).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from jobq.worker.context import HandlerError, JobContext

#: The value an :class:`Option` has when it must be given.
REQUIRED: Any = object()


class ServiceUnavailable(HandlerError):
    """The service cannot be reached, or went away while running the job (always retryable)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=True)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    reason: str = "ok"
    #: Capabilities learned from the service (flattened dotted keys), merged into the worker's.
    capabilities: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def up(cls, capabilities: Mapping[str, Any] | None = None) -> Health:
        return cls(True, "ok", dict(capabilities or {}))

    @classmethod
    def down(cls, reason: str) -> Health:
        return cls(False, reason or "unhealthy")


@dataclass(frozen=True, slots=True)
class Option:
    """One configuration key of a connector.

    ``kind`` is ``str``, ``int``, ``float``, ``bool``, ``list`` (of strings) or ``dict``; values
    given as text (``--connector-option KEY=VALUE``) are converted to it.
    """

    kind: type
    default: Any = REQUIRED
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


class Connector(ABC):
    """Drives one service for the worker runtime (see the module's docstring)."""

    #: The type name configuration uses (``connector = "comfyui"``).
    kind: ClassVar[str] = ""
    #: Its configuration keys.
    options: ClassVar[Mapping[str, Option]] = {}
    #: Whether jobs may run in parallel against one service (A1111's progress is global: no).
    parallel: ClassVar[bool] = True

    def __init__(self, service: str, options: Mapping[str, Any]) -> None:
        self.service = service
        self.config = dict(options)

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open clients. Must not fail only because the service is down."""

    @abstractmethod
    async def health(self) -> Health: ...

    @abstractmethod
    async def run(self, ctx: JobContext) -> Any: ...

    async def cancel(self, ctx: JobContext) -> None:  # noqa: B027 - optional hook
        """Tell the service to stop this job (the default: nothing to tell)."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Close clients."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} for {self.service}>"


# ---------------------------------------------------------------- helpers connectors share


def payload_json(ctx: JobContext, what: str) -> Any:
    """The job's payload as JSON, or a non-retryable failure naming what was expected."""
    try:
        return json.loads(ctx.payload or b"null")
    except (UnicodeDecodeError, ValueError) as exc:
        raise HandlerError(f"{what} needs a JSON payload: {exc}", retryable=False) from None


def dig(value: Any, path: str) -> Any:
    """``dig({"a": {"b": 1}}, "a.b") == 1``; None when any step is missing."""
    for part in path.split(".") if path else []:
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def http_failure(status: int, body: bytes, what: str) -> HandlerError:
    """A non-2xx answer → a failure: retryable for 408, 429 and 5xx, final for other 4xx."""
    text = body[:500].decode(errors="replace").strip()
    retryable = status >= 500 or status in (408, 429)
    return HandlerError(f"{what} answered HTTP {status}" + (f": {text}" if text else ""), retryable=retryable)


def frames_with_header(header: Mapping[str, Any], blobs: list[bytes]) -> list[bytes]:
    """Result frames: a JSON header describing the outputs, then each output's bytes."""
    return [json.dumps(header, separators=(",", ":")).encode(), *blobs]


__all__ = [
    "REQUIRED",
    "Connector",
    "Health",
    "Option",
    "ServiceUnavailable",
    "dig",
    "frames_with_header",
    "http_failure",
    "payload_json",
]
