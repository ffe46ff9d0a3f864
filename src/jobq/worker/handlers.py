"""Handlers: the built-in ones for demos and tests, and loading ``module:function`` user code.

A handler is ``fn(payload)`` or ``fn(payload, ctx)``, sync or async. ``payload`` is the job's
bytes; ``ctx`` is the :class:`~jobq.worker.context.JobContext` (frames, progress, cancellation).
It returns bytes, str, a list of bytes frames, None, or anything JSON can encode.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import shlex
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobq.core.model import Frames
from jobq.errors import InvalidRequest
from jobq.worker.context import HandlerError, HandlerFn, JobContext
from jobq.worker.finalizers import FINALIZERS

if TYPE_CHECKING:
    from jobq.worker.multicast import MulticastOptions


@dataclass(frozen=True)
class Handler:
    fn: HandlerFn
    is_async: bool
    wants_context: bool
    name: str
    schema: dict[str, Any] | None = None

    @classmethod
    def wrap(cls, fn: HandlerFn, name: str | None = None, schema: dict[str, Any] | None = None) -> Handler:
        if not callable(fn):
            raise InvalidRequest(f"handler {name or fn!r} is not callable")
        try:
            params = [
                p
                for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            wants_context = len(params) >= 2
        except (TypeError, ValueError):
            wants_context = False
        is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
        )
        label = name or str(getattr(fn, "__name__", "handler"))
        return cls(fn, is_async, wants_context, label, schema)

    def args(self, ctx: JobContext) -> tuple[Any, ...]:
        return (ctx.payload, ctx) if self.wants_context else (ctx.payload,)


def to_result(value: Any) -> Frames:
    """What a handler returned → result frames."""
    if value is None:
        return []
    if isinstance(value, bytes | bytearray | memoryview):
        return [bytes(value)]
    if isinstance(value, str):
        return [value.encode()]
    if isinstance(value, list | tuple) and all(isinstance(v, bytes) for v in value):
        return list(value)  # frames (an empty list is no frames: echo of an empty payload)
    return [json.dumps(value).encode()]


# ---------------------------------------------------------------- built-ins


async def echo(payload: bytes, ctx: JobContext) -> Frames:
    """Returns the payload, frame for frame."""
    return list(ctx.frames)


async def sleep(payload: bytes, ctx: JobContext) -> bytes:
    """Sleeps the seconds given in the payload (cancellable), then returns the payload."""
    try:
        seconds = float(payload.decode().strip() or 0)
    except (UnicodeDecodeError, ValueError):
        raise HandlerError(
            f"sleep needs a number of seconds, got {payload[:40]!r}", retryable=False
        ) from None
    await ctx.sleep(seconds)
    return payload


def fail(payload: bytes) -> None:
    """Always raises."""
    raise HandlerError(f"fail handler: {payload.decode(errors='replace')[:200] or 'failed on purpose'}")


def shell(command: str) -> HandlerFn:
    """A handler running ``command`` with the payload on stdin; the result is its stdout."""
    argv = shlex.split(command)
    if not argv:
        raise InvalidRequest("the shell handler needs a command (--command)")

    async def run_shell(payload: bytes, ctx: JobContext) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        communicate = asyncio.ensure_future(proc.communicate(payload))
        while not communicate.done():
            await asyncio.wait([communicate], timeout=0.1)
            if ctx.cancelled and not communicate.done():
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        out, err = communicate.result()
        if ctx.cancelled:
            ctx.check()
        if proc.returncode != 0:
            raise HandlerError(
                f"{argv[0]} exited with {proc.returncode}: {err.decode(errors='replace')[-500:]}"
            )
        return out

    return run_shell


BUILTINS: dict[str, HandlerFn] = {"echo": echo, "sleep": sleep, "fail": fail, **FINALIZERS}


def resolve(spec: str, *, command: str | None = None, multicast: MulticastOptions | None = None) -> Handler:
    """``echo``, ``sleep``, ``fail``, ``shell`` (with ``command``), ``multicast`` (with its
    options) or ``package.module:function``."""
    if spec == "shell":
        return Handler.wrap(shell(command or ""), "shell")
    if spec == "multicast":
        from jobq.worker import multicast as words

        return Handler.wrap(words.multicast(multicast or words.MulticastOptions()), "multicast")
    if spec in BUILTINS:
        return Handler.wrap(BUILTINS[spec], spec)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidRequest(
            f"unknown handler {spec!r}: use one of "
            f"{', '.join([*BUILTINS, 'shell', 'multicast'])} or module:function "
            "(to drive a service such as ComfyUI or AUTOMATIC1111, use --connector)"
        )
    try:
        fn = import_object(spec)
    except LookupError as exc:
        raise InvalidRequest(f"{exc} for handler {spec!r}") from None
    return Handler.wrap(fn, spec)


def import_object(spec: str) -> Any:
    """``package.module:name.attr`` → that object; LookupError saying what is missing."""
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:  # `--handler tasks:shout` from the folder holding tasks.py
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LookupError(f"cannot import {module_name!r}: {exc}") from None
    found: Any = module
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise LookupError(f"{module_name} has no {attr!r}") from None
    return found
