"""``--config FILE`` and ``--print-config`` for ``jobq hub`` and ``jobq worker``.

A config file is TOML whose keys are the command's long option names (``lease-ttl`` or
``lease_ttl``), at the top level or in a ``[hub]`` / ``[worker]`` table::

    [hub]
    store = "sqlite:////var/lib/jobq/jobq.db"
    zmq = ["tcp://0.0.0.0:5555"]
    auth = "/etc/jobq/auth.json"
    customer-weight = { acme = 2, globex = 1 }

Precedence, highest first: a flag on the command line, its ``JOBQ_*`` environment twin, the
file, the built-in default. (The file becomes click's ``default_map``, so every value is
checked exactly as the flag's would be.) A repeatable option takes a list (or one value); a
``KEY=VALUE`` option (``customer-weight``, ``capability``, ``connector-option``) also takes a
table. ``jobq worker``'s file may also declare connector services (``[services.NAME]``) and the
connector-only keys of ``[worker]`` (``health_timeout``, ``health_failures``, ``capabilities``):
docs/connectors.md. ``--print-config`` prints the effective settings as TOML (each value's
origin in a comment; the token is never shown) and exits.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import click
from click.core import ParameterSource

from jobq.core.matching import flatten

F = TypeVar("F", bound=Callable[..., Any])

#: Keys of ``[worker]`` that are not flags: the connector settings (worker/connectors/config.py).
CONNECTOR_KEYS = ("health_timeout", "health_failures", "capabilities")
#: Options never read from a file nor printed.
_SKIP = {"config_file", "print_config", "help"}
#: Options whose value is a secret: printed as a comment only.
_SECRETS = {"token", "curve_secret_key"}

_META = "jobq.config"


class Loaded:
    """A config file as read: its path, its section, and what was not a flag."""

    def __init__(self, path: Path, section: str, extra: dict[str, Any]) -> None:
        self.path = path
        self.section = section
        #: Connector keys of ``[worker]`` and the ``services`` table (``jobq worker`` only).
        self.extra = extra

    @property
    def services(self) -> dict[str, Any] | None:
        found = self.extra.get("services")
        return found if isinstance(found, dict) else None

    def connector_document(self) -> dict[str, Any]:
        """What worker/connectors/config.py parses: ``[worker]`` connector keys, ``[services]``."""
        worker = {k: v for k, v in self.extra.items() if k in CONNECTOR_KEYS}
        return {"worker": worker, "services": self.services or {}}


def loaded(ctx: click.Context) -> Loaded | None:
    """The config file of this command, if one was given."""
    found = ctx.meta.get(_META)
    return found if isinstance(found, Loaded) else None


def _long_names(command: click.Command) -> dict[str, click.Option]:
    out: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in _SKIP:
            for decl in param.opts:
                if decl.startswith("--"):
                    out[decl[2:]] = param
    return out


def _pairs(table: Mapping[str, Any]) -> list[str]:
    """A ``KEY=VALUE`` option's table from a file → ``["KEY=VALUE", ...]`` (dotted keys)."""
    return [
        f"{k}={','.join(map(_text, v)) if isinstance(v, list) else _text(v)}"
        for k, v in flatten(dict(table)).items()
    ]


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _defaults(command: click.Command, table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The file's flag keys → click's ``default_map`` (parameter name → value)."""
    names = _long_names(command)
    out: dict[str, Any] = {}
    for key, value in table.items():
        option = names.get(key) or names.get(key.replace("_", "-"))
        if option is None or option.name is None:
            close = difflib.get_close_matches(key.replace("_", "-"), list(names), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise click.BadParameter(f"{where}: unknown key {key!r}{hint}", param_hint="--config")
        if option.multiple:
            if isinstance(value, Mapping):  # KEY=VALUE options: customer-weight, capability, ...
                value = _pairs(value)
            elif not isinstance(value, list):
                value = [value]
        elif isinstance(value, list | Mapping):
            raise click.BadParameter(f"{where}: {key} takes one value", param_hint="--config")
        out[option.name] = value
    return out


def _load(section: str) -> Callable[[click.Context, click.Parameter, Path | None], Path | None]:
    def load(ctx: click.Context, param: click.Parameter, path: Path | None) -> Path | None:
        if path is None:
            return None
        try:
            with path.open("rb") as f:
                document = tomllib.load(f)
        except OSError as exc:
            raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}", ctx, param) from None
        except tomllib.TOMLDecodeError as exc:
            raise click.BadParameter(f"{path} is not valid TOML: {exc}", ctx, param) from None
        table = dict(document.get(section, {})) if isinstance(document.get(section), dict) else {}
        top = {k: v for k, v in document.items() if k != section}
        extra: dict[str, Any] = {}
        if section == "worker":
            if "services" in top:
                extra["services"] = top.pop("services")
            for key in CONNECTOR_KEYS:
                if key in table:
                    extra[key] = table.pop(key)
        assert ctx.command is not None
        flags = _defaults(ctx.command, {**top, **table}, str(path))
        ctx.default_map = {**(ctx.default_map or {}), **flags}
        ctx.meta[_META] = Loaded(path, section, extra)
        return path

    return load


def config_options(section: str, *, help_extra: str = "") -> Callable[[F], F]:
    """``--config FILE`` (env ``JOBQ_<SECTION>_CONFIG``) and ``--print-config`` for a command
    whose settings are a ``[section]``; the command function gets ``config_file`` if it takes it."""

    def decorate(f: F) -> F:
        wants_file = "config_file" in inspect.signature(f).parameters

        @functools.wraps(f)
        def wrapper(*args: Any, print_config: bool, config_file: Path | None, **kwargs: Any) -> Any:
            if print_config:
                ctx = click.get_current_context()
                sys.stdout.write(effective_toml(ctx, section))
                ctx.exit(0)
            if wants_file:
                kwargs["config_file"] = config_file
            return f(*args, **kwargs)

        command = click.option(
            "--print-config",
            is_flag=True,
            default=False,
            help="Print the effective settings (flags, JOBQ_* environment, --config file, defaults) "
            "as TOML, and exit.",
        )(wrapper)
        command = click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            is_eager=True,
            expose_value=True,
            callback=_load(section),
            envvar=f"JOBQ_{section.upper()}_CONFIG",
            show_envvar=True,
            help=f"TOML file of settings: keys are the long option names, flags and JOBQ_* override "
            f"it{help_extra}.",
        )(command)
        return cast(F, command)

    return decorate


# ---------------------------------------------------------------- printing


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value), ensure_ascii=False)


def _key(key: str) -> str:
    bare = key.replace("-", "").replace("_", "")
    return key if bare.isalnum() and bare.isascii() else json.dumps(key)


def _origin(ctx: click.Context, name: str, found: Loaded | None) -> str:
    source = ctx.get_parameter_source(name)
    if source is ParameterSource.COMMANDLINE:
        return "  # command line"
    if source is ParameterSource.ENVIRONMENT:
        params = {p.name: p for p in ctx.command.params}
        envvar = getattr(params.get(name), "envvar", None)
        return f"  # environment ({envvar})" if isinstance(envvar, str) else "  # environment"
    if source is ParameterSource.DEFAULT_MAP and found is not None:
        return f"  # {found.path}"
    return ""


def _lines(
    ctx: click.Context, options: Iterable[tuple[str, click.Option]], found: Loaded | None
) -> list[str]:
    out = []
    for long, option in options:
        name = option.name
        assert name is not None
        value = ctx.params.get(name)
        origin = _origin(ctx, name, found)
        if name in _SECRETS and value is not None:
            out.append(f"# {long} = (set, not shown){origin}")
        elif value is None or value == ():
            out.append(f"# {long} = (not set)")
        else:
            out.append(f"{long} = {_toml(list(value) if isinstance(value, tuple) else value)}{origin}")
    return out


def effective_toml(ctx: click.Context, section: str) -> str:
    """The command's settings as TOML that ``--config`` reads back."""
    found = loaded(ctx)
    seen: set[str] = set()
    options = []
    for long, option in _long_names(ctx.command).items():
        if option.name not in seen:
            seen.add(str(option.name))
            options.append((long, option))
    lines = [f"[{section}]", *_lines(ctx, options, found)]
    if found is not None:
        for key in CONNECTOR_KEYS:
            if key in found.extra:
                lines.append(f"{key} = {_toml(found.extra[key])}  # {found.path}")
        for name, table in (found.services or {}).items():
            lines += ["", f"[services.{_key(str(name))}]"]
            lines += [f"{_key(str(k))} = {_toml(v)}" for k, v in dict(table).items()]
    return "\n".join(lines) + "\n"
