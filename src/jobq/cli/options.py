"""Shared pieces of the ``jobq`` command: options with ``JOBQ_*`` twins, values, exit codes."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from jobq.cli import logs
from jobq.client.reach import WORKER_SCHEMES, Unreachable, hub_endpoints
from jobq.config import DEFAULT_HUB
from jobq.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    JobFailed,
    JobqError,
    NotFound,
    Timeout,
    Unauthorized,
    Unavailable,
)

F = TypeVar("F", bound=Callable[..., Any])

#: Exit codes (documented in the README).
EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
EXIT_TIMEOUT = 5
EXIT_CONFLICT = 6
#: Not authorized: no token, a token the hub does not accept, or one without the right.
EXIT_UNAUTHORIZED = 7

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


#: What to do when the hub cannot be reached (after the reason, on stderr).
HUB_HINT = (
    "jobq: start a hub there (`jobq hub`, or `make run` in a checkout of jobq), or give the address "
    "of yours with --hub or JOBQ_HUB (tcp://HOST:PORT)"
)


def setup_logging(level: str, fmt: str = "text") -> None:
    """Logs on stderr, one format for the hub and the worker (``--log-format``: cli/logs.py)."""
    logs.setup(level, fmt)


def log_options(f: F) -> F:
    """``--log-level`` and ``--log-format`` (of ``jobq hub`` and ``jobq worker``)."""
    f = option(
        "--log-format",
        type=click.Choice(logs.FORMATS),
        default="text",
        show_default=True,
        help="text (logfmt: time=... level=... logger=... msg=...) or json (one object per line).",
    )(f)
    return option("--log-level", default="info", show_default=True, help="debug, info, warning or error.")(f)


def option(*decls: str, **kwargs: Any) -> Callable[[F], F]:
    """A click option whose environment twin is JOBQ_<LONG NAME>, shown in --help."""
    long = next(d for d in decls if d.startswith("--")).split("/")[0]
    kwargs.setdefault("envvar", "JOBQ_" + long[2:].upper().replace("-", "_"))
    kwargs.setdefault("show_envvar", True)
    return click.option(*decls, **kwargs)


def _hub_endpoints(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``HOST:PORT`` means ``tcp://HOST:PORT``; an address of no known form fails at once."""
    try:
        return ",".join(hub_endpoints(value, WORKER_SCHEMES))
    except InvalidRequest as exc:
        raise click.BadParameter(exc.message, ctx=ctx, param=param) from None


def hub_option(f: F) -> F:
    return option(
        "--hub",
        default=DEFAULT_HUB,
        show_default=True,
        callback=_hub_endpoints,
        help="Hub endpoint(s), comma-separated for failover: tcp://HOST:PORT (or HOST:PORT), ipc://PATH.",
    )(f)


def token_option(f: F) -> F:
    return option(
        "--token",
        default=None,
        help="Secret token the hub's --auth file accepts (jobq token create).",
    )(f)


def curve_options(f: F) -> F:
    """The CURVE keys that encrypt the connection to a ``?curve`` listener (Z85, or a file)."""
    f = option("--curve-secret-key", default=None, help="This peer's CURVE secret key (Z85 or a file).")(f)
    f = option("--curve-public-key", default=None, help="This peer's CURVE public key (Z85).")(f)
    return option("--curve-server-key", default=None, help="The hub's CURVE public key (Z85).")(f)


def timeout_option(f: F) -> F:
    return option(
        "--connect-timeout",
        type=float,
        default=10.0,
        show_default=True,
        help="Seconds to wait for the hub to answer.",
    )(f)


def client_options(f: F) -> F:
    """``--hub``, ``--connect-timeout`` and ``--token``: how a client command reaches the hub."""
    return hub_option(timeout_option(token_option(f)))


#: ``--json`` of the client commands (one object per line).
json_option = option(
    "--json", "as_json", is_flag=True, default=False, help="Print JSON (one object per line)."
)


def parse_value(text: str) -> Any:
    """``16`` → 16, ``2.5`` → 2.5, ``true`` → True, ``a,b`` → ["a", "b"], else the string."""
    if "," in text:
        return [parse_value(part) for part in text.split(",") if part]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_pairs(pairs: Iterable[str], what: str) -> dict[str, Any]:
    """Repeated ``KEY=VALUE`` → a dict of dotted keys; a repeated key collects a list."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=what)
        value = parse_value(raw.strip())
        if key in out:
            before = out[key] if isinstance(out[key], list) else [out[key]]
            out[key] = before + (value if isinstance(value, list) else [value])
        else:
            out[key] = value
    return out


def raw_pairs(pairs: Iterable[str], what: str) -> dict[str, str]:
    """``KEY=VALUE`` pairs kept as text (connector options convert their own values)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=what)
        out[key.strip()] = value
    return out


def given_options(ctx: click.Context) -> set[str]:
    """The parameters given on the command line or in the environment, not left at default."""
    defaults = (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP, None)
    return {name for name in ctx.params if ctx.get_parameter_source(name) not in defaults}


def exit_code(exc: JobqError) -> int:
    if isinstance(exc, Unauthorized | Forbidden):
        return EXIT_UNAUTHORIZED
    if isinstance(exc, Unavailable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, Timeout):
        return EXIT_TIMEOUT
    if isinstance(exc, JobFailed):
        return EXIT_JOB_FAILED
    if isinstance(exc, Conflict):
        return EXIT_CONFLICT
    if isinstance(exc, InvalidRequest):
        return EXIT_USAGE
    return EXIT_JOB_FAILED


def unreachable(exc: JobqError) -> bool:
    """The hub could not be reached at all (rather than refusing or being busy)."""
    return isinstance(exc, Unreachable) or (
        isinstance(exc, Unavailable) and exc.message.startswith("no answer from the hub")
    )


def one_line(message: str) -> str:
    """A reason as one line of text (a refusal is one line on stderr)."""
    return " ".join(message.split())


def run_async(fn: Callable[..., Coroutine[Any, Any, int | None]]) -> Callable[..., None]:
    """Run an async command body; jobq errors become a message on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            code = asyncio.run(fn(*args, **kwargs))
        except JobqError as exc:
            click.echo(f"jobq: {one_line(exc.message)}", err=True)
            if unreachable(exc):
                click.echo(HUB_HINT, err=True)
            sys.exit(exit_code(exc))
        except KeyboardInterrupt:
            sys.exit(130)
        sys.exit(code or EXIT_OK)

    return wrapper
