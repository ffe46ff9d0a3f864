"""Finding a connector class by name: the built-ins, the ``jobq.connectors`` entry point group,
or ``package.module:Class``."""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points
from typing import Any

from jobq.errors import InvalidRequest
from jobq.worker.connectors.base import Connector
from jobq.worker.handlers import import_object

#: Entry point group third-party packages register connectors in.
ENTRY_POINT_GROUP = "jobq.connectors"

BUILTIN: dict[str, str] = {
    "http": "jobq.worker.connectors.http:HttpConnector",
    "websocket": "jobq.worker.connectors.websocket:WebSocketConnector",
    "comfyui": "jobq.worker.connectors.comfyui:ComfyUIConnector",
    "a1111": "jobq.worker.connectors.a1111:A1111Connector",
    "simulation": "jobq.worker.connectors.simulation:SimulationConnector",
}


class ConfigError(InvalidRequest):
    """A worker configuration that cannot run; the message names the key."""


def _import(spec: str, where: str) -> Any:
    try:
        return import_object(spec)
    except LookupError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _entry_point(name: str) -> Any | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    return None


def available() -> list[str]:
    """Connector type names: the built-ins and the installed entry points."""
    names = set(BUILTIN)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def load(name: str, where: str = "connector") -> type[Connector]:
    """The connector class called ``name``; :class:`ConfigError` naming ``where`` otherwise."""
    if not name:
        raise ConfigError(f"{where}: missing (one of {', '.join(available())} or module:Class)")
    if name in BUILTIN:
        cls = _import(BUILTIN[name], where)
    elif ":" in name:
        cls = _import(name, where)
    else:
        try:
            cls = _entry_point(name)
        except Exception as exc:  # a broken third-party package
            raise ConfigError(f"{where}: the {ENTRY_POINT_GROUP} entry point {name!r} failed: {exc}") from exc
        if cls is None:
            close = difflib.get_close_matches(name, available(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{where}: unknown connector {name!r}{hint}; use one of {', '.join(available())}, "
                f"a {ENTRY_POINT_GROUP} entry point or module:Class"
            )
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ConfigError(f"{where}: {name!r} is not a jobq.worker.connectors.Connector subclass")
    return cls
