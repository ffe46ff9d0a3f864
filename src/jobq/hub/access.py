"""What a caller may see and do, applied to the hub's answers: the one place doors rely on.

The rules are the core's (``core/auth.py``); here they meet jobs, listings and event streams.
An unrestricted caller (an admin, or every caller while the hub runs without ``--auth``) takes
none of these paths: the checks cost nothing when authentication is off.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from jobq.core.auth import Action, Caller, Principal, may_operate, may_read_history, may_see, may_touch
from jobq.core.errors import Forbidden
from jobq.core.model import Job, JobEvent, JobFilter
from jobq.hub.events import Subscriber
from jobq.hub.guard import AuditLog


class Access:
    """Checks that refuse with ``Forbidden`` and write the refusal to the audit log."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def refuse(self, caller: Caller, action: str, target: str, reason: str) -> Forbidden:
        self.audit.write("refused", caller, action, target, reason)
        return Forbidden(f"not allowed: {reason}")

    def require(self, caller: Caller, action: Action, target: str = "") -> None:
        """The caller's role allows ``action`` at all."""
        if not caller.principal.may(action):
            raise self.refuse(
                caller, action.value, target, f"a {caller.principal.role} token cannot {action.value}"
            )

    def operator(self, caller: Caller, action: str, target: str, what: str) -> None:
        """An operator's ``action`` on ``target`` (pause a service, drain a worker: ``what``
        names their kind, ``services`` or ``workers``): ``may_operate``."""
        if not may_operate(caller.principal):
            raise self.refuse(caller, action, target, f"only an admin token may {action} {what}")

    def history(self, caller: Caller) -> None:
        """The hub's history: ``may_read_history``."""
        if not caller.unrestricted and not may_read_history(caller.principal):
            role = caller.principal.role
            raise self.refuse(caller, "view", "history", f"a {role} token cannot read the history")

    def readable(self, caller: Caller, job: Job) -> Job:
        """The job as ``caller`` may see it (a monitor never sees payloads or results)."""
        if caller.unrestricted:
            return job
        principal = caller.principal
        if not may_see(principal, job):
            raise self.refuse(caller, "read", f"job {job.id}", f"job {job.id} is not one of yours")
        return job if principal.sees_payloads else without_data(job)

    def touchable(self, caller: Caller, job: Job, action: Action) -> None:
        if not caller.unrestricted and not may_touch(caller.principal, job, action):
            raise self.refuse(
                caller,
                action.value,
                f"job {job.id}",
                f"a {caller.principal.role} token cannot {action.value} job {job.id}",
            )

    def scoped_query(self, caller: Caller, query: JobFilter) -> JobFilter:
        """A listing narrowed to what ``caller`` may see."""
        principal = caller.principal
        if principal.role in ("admin", "monitor"):
            return query
        self.require(caller, Action.READ, "jobs")
        if principal.customers:
            if query.customer_id is not None:
                if query.customer_id not in principal.customers:
                    raise self.refuse(
                        caller,
                        "read",
                        f"customer {query.customer_id}",
                        "this token does not act for that customer",
                    )
                return query
            return msgspec.structs.replace(query, customers=sorted(principal.customers))
        return msgspec.structs.replace(query, owner=principal.name)


def without_data(job: Job) -> Job:
    """The job with neither payload nor result (what a monitor sees)."""
    if not job.payload and job.result is None:
        return job
    return msgspec.structs.replace(job, payload=[], result=None)


def event_visible(principal: Principal, event: JobEvent) -> bool:
    """``may_see`` for an event: a worker token hears of no job (not even its customers')."""
    if principal.role in ("admin", "monitor"):
        return True
    if principal.role != "client":
        return False
    if principal.customers:
        return event.customer_id in principal.customers
    return event.owner == principal.name


class ScopedSubscriber:
    """A subscriber that hears only what its caller may see (and, for a monitor, no results).
    Equal to, and hashed like, the subscriber it wraps, so ``unwatch(inner)`` finds it."""

    def __init__(self, inner: Subscriber, principal: Principal) -> None:
        self.inner = inner
        self.principal = principal

    def __hash__(self) -> int:
        return hash(self.inner)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ScopedSubscriber):
            return bool(self.inner == other.inner)
        return bool(self.inner == other)

    def push(self, events: list[JobEvent]) -> None:
        principal = self.principal
        shown: Iterable[JobEvent] = (e for e in events if event_visible(principal, e))
        if not principal.sees_payloads:
            shown = (msgspec.structs.replace(e, result=None, partial=None) for e in shown)
        kept = list(shown)
        if kept:
            self.inner.push(kept)


def scoped(subscriber: Subscriber, caller: Caller) -> Subscriber:
    return subscriber if caller.unrestricted else ScopedSubscriber(subscriber, caller.principal)


__all__ = ["Access", "ScopedSubscriber", "event_visible", "scoped", "without_data"]
