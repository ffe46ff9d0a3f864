"""Connectors: the worker drives the services people run (ComfyUI, AUTOMATIC1111, any HTTP or
WebSocket service) instead of running user Python. See ``docs/connectors.md``.

Built-ins: ``http``, ``websocket``, ``comfyui``, ``a1111``, ``simulation``. Others load from the
``jobq.connectors`` entry point group or as ``package.module:Class``.
"""

from jobq.worker.connectors.base import Connector, Health, Option, ServiceUnavailable
from jobq.worker.connectors.config import ServiceConfig, WorkerConfig, load_file
from jobq.worker.connectors.manager import ConnectorManager
from jobq.worker.connectors.registry import ENTRY_POINT_GROUP, ConfigError, available, load

__all__ = [
    "ENTRY_POINT_GROUP",
    "ConfigError",
    "Connector",
    "ConnectorManager",
    "Health",
    "Option",
    "ServiceConfig",
    "ServiceUnavailable",
    "WorkerConfig",
    "available",
    "load",
    "load_file",
]
