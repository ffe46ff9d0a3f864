"""jobq: a distributed job queue. One hub, many doors, one queue.

The public API: :class:`Client` (async) and :class:`SyncClient` to submit and follow jobs,
:class:`Worker` to run them, :class:`JobContext` as handlers see a job, and the errors.
"""

from __future__ import annotations

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
