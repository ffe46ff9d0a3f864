"""One root error for jobq, and the wire-facing errors every door reports.

Each error says whose fault it was (the caller's input, a missing thing, a conflict with the
job's state, or the hub) and carries a stable ``code`` that every door maps onto its own
wire (a native ``error`` message, an HTTP status, an ``ERR`` line).
"""

from __future__ import annotations


class JobqError(Exception):
    """Root of every error jobq raises on purpose."""

    code = "internal"
    #: The HTTP status an HTTP door should answer with.
    http_status = 500

    def __init__(self, message: str = "", *, hint: str | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()
        self.hint = hint


class InvalidRequest(JobqError):
    """The request is malformed or violates a limit; the caller must change it."""

    code = "invalid"
    http_status = 400


class PayloadTooLarge(InvalidRequest):
    """The payload, frame or message is larger than the configured limit."""

    code = "too_large"
    http_status = 413


class NotFound(JobqError):
    """No such job, worker or service."""

    code = "not_found"
    http_status = 404


class Unauthorized(JobqError):
    """No credential, or one the hub does not accept (unknown, revoked, or too many failures
    from this address)."""

    code = "unauthorized"
    http_status = 401


class Forbidden(JobqError):
    """The caller is known but may not do this (its role or scope does not allow it)."""

    code = "forbidden"
    http_status = 403


class Conflict(JobqError):
    """The operation does not fit the job's current state."""

    code = "conflict"
    http_status = 409


class InvalidTransition(Conflict):
    """A state transition that the job model forbids."""

    code = "invalid_transition"


class LeaseLost(Conflict):
    """The attempt no longer holds the job's lease; its result or progress is refused."""

    code = "lease_lost"


class Unavailable(JobqError):
    """The hub or its store cannot be reached right now; try again later."""

    code = "unavailable"
    http_status = 503


class Timeout(JobqError):
    """The operation did not finish within the time allowed."""

    code = "timeout"
    http_status = 504


class JobFailed(JobqError):
    """The job ended without a result (failed or cancelled)."""

    code = "job_failed"
    http_status = 409


_BY_CODE: dict[str, type[JobqError]] = {
    cls.code: cls
    for cls in (
        JobqError,
        InvalidRequest,
        PayloadTooLarge,
        NotFound,
        Unauthorized,
        Forbidden,
        Conflict,
        InvalidTransition,
        LeaseLost,
        Unavailable,
        Timeout,
        JobFailed,
    )
}


def error_from_code(code: str, message: str) -> JobqError:
    """Rebuild the error a peer reported by its wire code (unknown codes become the root)."""
    return _BY_CODE.get(code, JobqError)(message)
