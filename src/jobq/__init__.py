"""jobq: a distributed job queue. One hub, many doors, one queue.

The public API: :class:`Client` (async) and :class:`SyncClient` to submit and follow jobs,
:class:`Worker` to run them, :class:`JobContext` as handlers see a job, and the errors.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobq.client.client import Client
    from jobq.client.sync import SyncClient
    from jobq.core.model import Job, JobEvent, JobSpec
    from jobq.core.states import JobState
    from jobq.errors import (
        Conflict,
        InvalidRequest,
        JobFailed,
        JobqError,
        LeaseLost,
        NotFound,
        Timeout,
        Unavailable,
    )
    from jobq.worker.context import HandlerError, JobCancelled, JobContext
    from jobq.worker.runtime import Worker

#: Where each public name lives: imported when first used (PEP 562), so that ``import jobq``
#: (and every ``jobq`` command, which imports the package first) pays only for what it uses.
_PUBLIC = {
    "Client": "jobq.client.client",
    "SyncClient": "jobq.client.sync",
    "Job": "jobq.core.model",
    "JobEvent": "jobq.core.model",
    "JobSpec": "jobq.core.model",
    "JobState": "jobq.core.states",
    "Conflict": "jobq.errors",
    "InvalidRequest": "jobq.errors",
    "JobFailed": "jobq.errors",
    "JobqError": "jobq.errors",
    "LeaseLost": "jobq.errors",
    "NotFound": "jobq.errors",
    "Timeout": "jobq.errors",
    "Unavailable": "jobq.errors",
    "HandlerError": "jobq.worker.context",
    "JobCancelled": "jobq.worker.context",
    "JobContext": "jobq.worker.context",
    "Worker": "jobq.worker.runtime",
}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'jobq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "Client",
    "Conflict",
    "HandlerError",
    "InvalidRequest",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobEvent",
    "JobFailed",
    "JobSpec",
    "JobState",
    "JobqError",
    "LeaseLost",
    "NotFound",
    "SyncClient",
    "Timeout",
    "Unavailable",
    "Worker",
    "__version__",
]
