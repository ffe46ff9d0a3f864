"""jobq's errors, where users import them from (``from jobq.errors import JobFailed``).

They are defined in the core (:mod:`jobq.core.errors`), which every layer may import; this
module is their public name.
"""

from jobq.core.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    InvalidTransition,
    JobFailed,
    JobqError,
    LeaseLost,
    NotFound,
    PayloadTooLarge,
    Timeout,
    Unauthorized,
    Unavailable,
    error_from_code,
)

__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "InvalidTransition",
    "JobFailed",
    "JobqError",
    "LeaseLost",
    "NotFound",
    "PayloadTooLarge",
    "Timeout",
    "Unauthorized",
    "Unavailable",
    "error_from_code",
]
