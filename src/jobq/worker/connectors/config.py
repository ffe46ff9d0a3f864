"""``worker.toml``: which services a worker serves, each through which connector, with which
options, validated before the worker connects (errors name the key)::

    [worker]
    hub = "tcp://127.0.0.1:5555"
    health_interval = 5.0

    [services.comfyui]
    connector = "comfyui"
    url = "http://127.0.0.1:8188"
    concurrency = 1

Keys of a service table other than ``connector``, ``concurrency`` and ``capabilities`` are the
connector's own options (``docs/connectors.md`` lists them per connector).
"""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from jobq.core.matching import flatten
from jobq.worker.connectors.base import Connector, Option
from jobq.worker.connectors.manager import ConnectorManager
from jobq.worker.connectors.registry import ConfigError, load

WORKER_KEYS: dict[str, Option] = {
    "hub": Option(str, None, "hub endpoint(s), comma-separated"),
    "name": Option(str, None, "worker name (default: the host name)"),
    "prefetch": Option(int, 0, "extra jobs the hub may push ahead of free slots", minimum=0),
    "grace": Option(float, 30.0, "seconds running jobs may finish after SIGTERM", minimum=0),
    "health_interval": Option(float, 5.0, "seconds between health checks", minimum=0.05),
    "health_timeout": Option(float, 5.0, "seconds a health check may take", minimum=0.05),
    "health_failures": Option(int, 2, "failed checks in a row before a service counts as down", minimum=1),
    "capabilities": Option(dict, {}, "capabilities of the whole worker"),
}

SERVICE_KEYS: dict[str, Option] = {
    "connector": Option(str, help="the connector type (http, websocket, comfyui, a1111, simulation, ...)"),
    "concurrency": Option(int, 1, "jobs of this service run at once", minimum=1),
    "capabilities": Option(dict, {}, "capabilities this service adds to the worker's"),
}


@dataclass(slots=True)
class ServiceConfig:
    name: str
    connector: type[Connector]
    options: dict[str, Any]
    concurrency: int = 1
    capabilities: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Connector:
        return self.connector(self.name, self.options)


@dataclass(slots=True)
class WorkerConfig:
    services: list[ServiceConfig]
    hub: str | None = None
    name: str | None = None
    prefetch: int = 0
    grace: float = 30.0
    health_interval: float = 5.0
    health_timeout: float = 5.0
    health_failures: int = 2
    capabilities: dict[str, Any] = field(default_factory=dict)

    @property
    def concurrency(self) -> int:
        return sum(s.concurrency for s in self.services)


# ---------------------------------------------------------------- values


def at(where: str, key: str) -> str:
    """How an error names a key: ``worker.toml: services.x.url``, ``--connector-option url``."""
    return f"{where} {key}" if where.startswith("--") else f"{where}.{key}"


def _hint(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _from_text(text: str, opt: Option, where: str) -> Any:
    kind = opt.kind
    try:
        if kind is str:
            return text
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is bool:
            lowered = text.strip().lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise ValueError(text)
        if kind is list:
            return [part.strip() for part in text.split(",") if part.strip()]
        if kind is dict:
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError(text)
            return value
    except ValueError:
        pass
    raise ConfigError(f"{where}: {text!r} is not {_kind_name(kind)}")


def _kind_name(kind: type) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table (JSON object)",
    }.get(kind, kind.__name__)


def coerce(value: Any, opt: Option, where: str, *, from_text: bool = False) -> Any:
    """``value`` as the option's kind, or a :class:`ConfigError` naming ``where``."""
    if from_text and isinstance(value, str):
        value = _from_text(value, opt, where)
    kind = opt.kind
    ok = (
        isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is not float
        else isinstance(value, int | float) and not isinstance(value, bool)
    )
    if not ok:
        raise ConfigError(f"{where}: {value!r} is not {_kind_name(kind)}")
    if kind is float:
        value = float(value)
    if opt.choices and value not in opt.choices:
        raise ConfigError(
            f"{where}: {value!r} is not one of {', '.join(opt.choices)}{_hint(value, opt.choices)}"
        )
    if opt.minimum is not None and value < opt.minimum:
        raise ConfigError(f"{where}: {value!r} is below the minimum {opt.minimum:g}")
    return value


def validate(
    raw: Mapping[str, Any],
    spec: Mapping[str, Option],
    where: str,
    *,
    from_text: bool = False,
    what: str = "",
) -> dict[str, Any]:
    """Every key known, every value of its kind, every required key there; defaults filled."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        opt = spec.get(key)
        if opt is None:
            known = ", ".join(sorted(spec)) or "none"
            raise ConfigError(
                f"{at(where, key)}: unknown key{' for ' + what if what else ''}{_hint(key, spec)}; "
                f"known keys: {known}"
            )
        out[key] = coerce(value, opt, at(where, key), from_text=from_text)
    for key, opt in spec.items():
        if key not in out:
            if opt.required:
                raise ConfigError(f"{at(where, key)}: required{' for ' + what if what else ''} ({opt.help})")
            out[key] = opt.default
    return out


def nest(pairs: Mapping[str, Any]) -> dict[str, Any]:
    """``{"headers.Authorization": "x"}`` → ``{"headers": {"Authorization": "x"}}`` (one level,
    for table-valued options given on the command line)."""
    out: dict[str, Any] = {}
    for key, value in pairs.items():
        head, dot, rest = key.partition(".")
        if dot and rest:
            table = out.setdefault(head, {})
            if isinstance(table, dict):
                table[rest] = value
                continue
        out[key] = value
    return out


# ---------------------------------------------------------------- services and files


def service(name: str, table: Mapping[str, Any], where: str, *, from_text: bool = False) -> ServiceConfig:
    if not name or not isinstance(name, str):
        raise ConfigError(f"{where}: a service needs a name")
    if not isinstance(table, Mapping):
        raise ConfigError(f'{where}: must be a table with at least connector = "..."')
    connector_name = table.get("connector")
    if not isinstance(connector_name, str):
        raise ConfigError(
            f"{at(where, 'connector')}: required "
            "(http, websocket, comfyui, a1111, simulation or module:Class)"
        )
    cls = load(connector_name, at(where, "connector"))
    own = {k: v for k, v in table.items() if k in SERVICE_KEYS}
    rest = {k: v for k, v in table.items() if k not in SERVICE_KEYS}
    common = validate(own, SERVICE_KEYS, where, from_text=from_text)
    spec = dict(cls.options)
    options = validate(rest, spec, where, from_text=from_text, what=f"the {connector_name} connector")
    concurrency = common["concurrency"]
    if not cls.parallel and concurrency > 1:
        raise ConfigError(
            f"{at(where, 'concurrency')}: the {connector_name} connector runs one job at a time per service "
            f"(its progress is global); use 1"
        )
    return ServiceConfig(
        name=name,
        connector=cls,
        options=options,
        concurrency=concurrency,
        capabilities=flatten(dict(common["capabilities"])),
    )


def parse(data: Mapping[str, Any], source: str = "worker.toml") -> WorkerConfig:
    """A parsed TOML document → a validated :class:`WorkerConfig`."""
    known = {"worker", "services"}
    for key in data:
        if key not in known:
            raise ConfigError(
                f"{source}: {key}: unknown key{_hint(key, known)}; use [worker] and [services.NAME]"
            )
    worker_table = data.get("worker", {})
    if not isinstance(worker_table, Mapping):
        raise ConfigError(f"{source}: worker: must be a table")
    common = validate(worker_table, WORKER_KEYS, f"{source}: worker")
    services_table = data.get("services")
    if not isinstance(services_table, Mapping) or not services_table:
        raise ConfigError(f"{source}: services: declare at least one [services.NAME] with a connector")
    services = [
        service(str(name), table, f"{source}: services.{name}") for name, table in services_table.items()
    ]
    return WorkerConfig(
        services=services,
        hub=common["hub"],
        name=common["name"],
        prefetch=common["prefetch"],
        grace=common["grace"],
        health_interval=common["health_interval"],
        health_timeout=common["health_timeout"],
        health_failures=common["health_failures"],
        capabilities=flatten(dict(common["capabilities"])),
    )


def load_file(path: Path) -> WorkerConfig:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, str(path))


def from_cli(
    services: Iterable[str], connector: str, pairs: Mapping[str, str], concurrency: int
) -> list[ServiceConfig]:
    """``--service NAME --connector TYPE --connector-option KEY=VALUE ...`` → service configs."""
    options = nest(pairs)
    out = []
    for name in services:
        table = {"connector": connector, **options}
        if concurrency != 1:
            table["concurrency"] = str(concurrency)
        out.append(service(name, table, "--connector-option", from_text=True))
    return out


class SupportsConnectors(Protocol):
    """What :func:`install` needs of a worker (the runtime's ``Worker``)."""

    connectors: ConnectorManager

    def add_connector(
        self,
        service: str,
        connector: Connector,
        *,
        concurrency: int = 1,
        capabilities: Mapping[str, Any] | None = None,
    ) -> None: ...


def install(
    worker: SupportsConnectors,
    cfg: WorkerConfig,
    *,
    interval: float | None = None,
    failures: int | None = None,
) -> str:
    """Build ``cfg``'s connectors into ``worker`` (health checking as configured, ``interval`` and
    ``failures`` overriding it); returns a one-line description of what it serves."""
    manager = worker.connectors
    manager.interval = interval if interval is not None else cfg.health_interval
    manager.timeout = min(cfg.health_timeout, max(manager.interval, 0.5))
    manager.failures = failures if failures is not None else cfg.health_failures
    for svc in cfg.services:
        worker.add_connector(
            svc.name, svc.build(), concurrency=svc.concurrency, capabilities=svc.capabilities
        )
    return ", ".join(
        f"{s.name} ({s.connector.kind or s.connector.__name__} connector, concurrency {s.concurrency})"
        for s in cfg.services
    )
