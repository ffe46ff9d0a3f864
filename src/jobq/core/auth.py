"""Who is calling and what they may do: roles, scopes and the one decision every door relies on.

A door establishes *who* speaks (a token, a CURVE key, a TLS listener, or a listener the
operator marked as trusted) and hands the hub a :class:`Principal`; the hub asks this module
*whether* that principal may do what it asks, once, whatever the door. Pure: no I/O, no clock.

Roles (docs/security.md):

- ``admin``: everything.
- ``client``: submits, and reads, waits for, cancels and retries the jobs it may see: those of
  its customers, or, with no customer named, those it submitted itself. Lists, events, stats
  and ``explain`` are narrowed to them.
- ``worker``: attaches and serves only the services its token names (all when none) and only
  the customers its token names; what a worker declares is intersected with that.
- ``monitor``: read-only views (stats, workers, the dashboard, metrics), never a payload or a
  result.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Literal

import msgspec

from jobq.core.matching import ALLOWED as ALLOWED_CUSTOMERS
from jobq.core.matching import flatten
from jobq.core.model import Job, JobSpec

Role = Literal["admin", "client", "worker", "monitor"]
ROLES: tuple[Role, ...] = ("admin", "client", "worker", "monitor")

#: Every secret token starts with this, so a leaked one is recognisable (secret scanners).
TOKEN_PREFIX = "jq_"


class Action(StrEnum):
    """What a caller asks the hub to do."""

    SUBMIT = "submit"
    READ = "read"  # get, wait, list, events, explain
    CANCEL = "cancel"
    RETRY = "retry"
    VIEW = "view"  # stats, workers, services, metrics, the dashboard
    WORK = "work"  # attach as a worker, take and finish attempts
    ADMIN = "admin"  # drain, evict, tokens


#: Which role may attempt which action at all (scopes narrow it further per job).
ALLOWED: dict[Role, frozenset[Action]] = {
    "admin": frozenset(Action),
    "client": frozenset({Action.SUBMIT, Action.READ, Action.CANCEL, Action.RETRY, Action.VIEW}),
    "worker": frozenset({Action.WORK}),
    "monitor": frozenset({Action.VIEW, Action.READ}),
}


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """A caller as the hub sees it."""

    #: The token's label, ``trusted:<listener>``, or ``local`` (no auth configured).
    name: str
    role: Role
    #: Customers it acts for; empty: none named (a client then sees only its own jobs; a
    #: worker may serve any customer).
    customers: frozenset[str] = frozenset()
    #: Services a worker may serve; empty: all.
    services: frozenset[str] = frozenset()

    def may(self, action: Action) -> bool:
        return action in ALLOWED[self.role]

    @property
    def sees_payloads(self) -> bool:
        """Monitors see what happens, never what is in it."""
        return self.role != "monitor"


#: The caller when no authentication is configured (a hub on loopback for one user): all rights.
LOCAL = Principal(name="local", role="admin")


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """A principal on one connection: what the hub checks, and what the audit log records."""

    principal: Principal
    #: The door it came through: ``zmq``, ``mdp``, ``line``, ``http``, ``ws`` (or ``local``).
    door: str = "local"
    #: Its address as the door sees it (``host:port``), for the audit log and rate limits.
    peer: str = ""

    @property
    def name(self) -> str:
        return self.principal.name

    @property
    def unrestricted(self) -> bool:
        """An admin: no scope to apply (the fast path when authentication is off)."""
        return self.principal.role == "admin"


#: In-process calls (tests, an embedded hub) and every door while authentication is off.
LOCAL_CALLER = Caller(principal=LOCAL)


def may_see(principal: Principal, job: Job) -> bool:
    """Whether ``principal`` may read this job (and so wait for it, or be told of it)."""
    if principal.role in ("admin", "monitor"):
        return True
    if principal.role != "client":
        return False
    if principal.customers:
        return job.customer_id in principal.customers
    return job.owner == principal.name


def may_touch(principal: Principal, job: Job, action: Action) -> bool:
    """Whether ``principal`` may cancel or retry this job."""
    return principal.may(action) and principal.role != "monitor" and may_see(principal, job)


def may_read_history(principal: Principal) -> bool:
    """Whether ``principal`` may read the hub's history (every customer's counts and
    latencies, ``core/history.py``): admins and monitors."""
    return principal.role in ("admin", "monitor")


def may_operate(principal: Principal) -> bool:
    """Whether ``principal`` may act on the queue or its workers as an operator (pause and
    resume a service, drain, resume and evict a worker): admins only."""
    return principal.may(Action.ADMIN)


def scoped_spec(principal: Principal, spec: JobSpec) -> JobSpec | str:
    """The spec as this principal may submit it (its owner and customer filled in), or the
    reason it may not. An admin's specs are taken as they are."""
    if principal.role == "admin":
        return spec
    if not principal.may(Action.SUBMIT):
        return f"a {principal.role} token cannot submit jobs"
    customer = spec.customer_id
    if principal.customers:
        if customer is None:
            if len(principal.customers) != 1:
                return "this token acts for several customers: name one with customer_id"
            (customer,) = principal.customers
        elif customer not in principal.customers:
            return f"this token may not submit for customer {customer!r}"
    key = spec.idempotency_key
    if key is not None:
        # Keys are per tenant: another caller's key never finds (and so never reveals) its job.
        key = f"{customer if principal.customers else principal.name}:{key}"
    return msgspec.structs.replace(spec, customer_id=customer, owner=principal.name, idempotency_key=key)


def may_serve(principal: Principal, services: Iterable[str]) -> str | None:
    """None when ``principal`` may attach as a worker of these services, else the reason."""
    if not principal.may(Action.WORK):
        return f"a {principal.role} token cannot attach as a worker"
    if principal.services:
        refused = sorted(set(services) - principal.services)
        if refused:
            return f"this token may not serve {', '.join(refused)}"
    return None


def scoped_capabilities(principal: Principal, capabilities: dict[str, Any]) -> dict[str, Any] | str:
    """The capabilities a worker attaches with under this principal, or why it may not: a
    token naming customers makes the worker serve those customers only. A worker that declares
    ``customer_access.allowed_customers`` must declare only customers of its token (declaring
    A with a B-only token is refused, so A's jobs never reach it); one that declares none is
    given its token's."""
    if principal.role == "admin" or not principal.customers:
        return capabilities
    declared = flatten(capabilities).get(ALLOWED_CUSTOMERS)
    if declared is None or declared == [] or declared == "":
        return {**capabilities, ALLOWED_CUSTOMERS: sorted(principal.customers)}
    if isinstance(declared, str):
        names = {declared}
    elif isinstance(declared, list | tuple) and all(isinstance(c, str) for c in declared):
        names = set(declared)
    else:  # a number or a boolean names no customer (and must not crash the attach)
        return f"{ALLOWED_CUSTOMERS} must name customers: a string or a list of strings"
    outside = sorted(names - principal.customers)
    if outside:
        return f"this token may not serve customer {outside[0]!r}"
    return capabilities


# ---------------------------------------------------------------- tokens


def new_token() -> str:
    """A fresh secret token (256 bits of randomness)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the auth file keeps instead of the token. Tokens are long random strings, so a
    plain SHA-256 is enough (no password-style slow hash is needed to resist guessing)."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)


__all__ = [
    "ALLOWED",
    "LOCAL",
    "LOCAL_CALLER",
    "ROLES",
    "TOKEN_PREFIX",
    "Action",
    "Caller",
    "Principal",
    "Role",
    "may_operate",
    "may_read_history",
    "may_see",
    "may_serve",
    "may_touch",
    "new_token",
    "same_hash",
    "scoped_capabilities",
    "scoped_spec",
    "token_hash",
]
