"""Who is speaking: the hub's one place for authentication, and its audit log.

Doors hand the guard what a peer presented (a token, a CURVE key) and the listener it came
through; the guard answers with a :class:`~jobq.core.auth.Caller` or refuses with
``Unauthorized``. What a caller may then do is the hub's decision (``core/auth.py``).

- The auth file is read again when it changes (checked at most every half second, on
  lookups and by the hub's clock): a revoked token stops working within a second, and the
  hub closes what it had opened for it (``on_revoke``).
- Failed authentications are limited per peer host: after :data:`MAX_FAILURES` within
  :data:`FAILURE_WINDOW` seconds, that host is refused for :data:`LOCKOUT` seconds, valid
  token or not.
- The audit log gets one JSON line per refused call and per admin action: time, event,
  principal, role, door, peer, action, target, reason. Never a token, never a payload.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from jobq.authfile import Watched
from jobq.core.auth import LOCAL_CALLER, Caller, Principal
from jobq.core.errors import InvalidRequest, Unauthorized

log = logging.getLogger("jobq.hub.guard")

#: Failed authentications from one host within FAILURE_WINDOW seconds before it is locked out.
MAX_FAILURES = 20
FAILURE_WINDOW = 60.0
#: Seconds a host that failed too often is refused.
LOCKOUT = 60.0


class AuditLog:
    """JSON lines to a file (appended) or to stderr (``-``); nowhere when not configured."""

    def __init__(self, where: str | None) -> None:
        self._out: IO[str] | None
        if not where:
            self._out = None
        elif where == "-":
            self._out = sys.stderr
        else:
            self._out = Path(where).open("a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def write(
        self,
        event: str,
        caller: Caller | None,
        action: str,
        target: str = "",
        reason: str = "",
        *,
        door: str = "",
        peer: str = "",
    ) -> None:
        """One record; ``caller`` None for a peer that did not authenticate (``door``, ``peer``)."""
        if self._out is None:
            return
        now = time.time()
        record: dict[str, Any] = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z",
            "event": event,
            "principal": caller.principal.name if caller else "anonymous",
            "role": caller.principal.role if caller else "",
            "door": caller.door if caller else door,
            "peer": caller.peer if caller else peer,
            "action": action,
        }
        if target:
            record["target"] = target
        if reason:
            record["reason"] = reason
        self._out.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._out is not None and self._out is not sys.stderr:
            self._out.close()


class Guard:
    def __init__(
        self,
        auth_path: str | None,
        audit: str | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._watched = Watched(Path(auth_path)) if auth_path else None
        self.audit = AuditLog(audit)
        self._monotonic = monotonic
        #: token → principal, so a known token is not hashed again (cleared on every reload).
        self._known: dict[str, Principal] = {}
        self._failures: dict[str, list[float]] = {}
        self._locked: dict[str, float] = {}
        self._names: set[str] = set(self._watched.table.names) if self._watched else set()
        self._revoke_listeners: list[Callable[[set[str]], None]] = []

    @property
    def enabled(self) -> bool:
        """True when the hub was started with ``--auth``."""
        return self._watched is not None

    def on_revoke(self, listener: Callable[[set[str]], None]) -> None:
        """Call ``listener(names)`` when tokens or keys with these names leave the auth file."""
        self._revoke_listeners.append(listener)

    def refresh(self, *, stat_now: bool = False) -> None:
        """Reread the auth file if it changed (looked at every half second, or at once with
        ``stat_now``); tell listeners which names it lost."""
        if self._watched is None:
            return
        try:
            changed = self._watched.refresh(stat_now=stat_now)
        except InvalidRequest as exc:
            log.error("auth file not reloaded, the previous one stays in force: %s", exc.message)
            return
        if not changed:
            return
        self._known.clear()
        names = set(self._watched.table.names)
        gone, self._names = self._names - names, names
        if gone:
            log.info("auth file changed: %d token(s) or key(s) revoked", len(gone))
            for listener in self._revoke_listeners:
                listener(gone)

    def still_valid(self, principal: Principal) -> bool:
        """False once the token or key behind ``principal`` was revoked."""
        return not self.enabled or principal.name in self._names or principal.name.startswith("trusted:")

    def authenticate(
        self, token: str | None, *, door: str, peer: str = "", trusted: Principal | None = None
    ) -> Caller:
        """The caller behind what a peer presented. ``trusted``: the listener's principal for
        peers that send no token. Without ``--auth``, a peer without a token is the local
        admin (the hub then listens on loopback only)."""
        if not token:
            if trusted is not None:
                return Caller(principal=trusted, door=door, peer=peer)
            if self._watched is None:
                return (
                    LOCAL_CALLER
                    if not peer
                    else Caller(principal=LOCAL_CALLER.principal, door=door, peer=peer)
                )
            raise self.refuse_unknown(
                door,
                peer,
                "no token: this listener needs one (--token, JOBQ_TOKEN, or Authorization: Bearer)",
            )
        if self._watched is None:
            return Caller(principal=trusted or LOCAL_CALLER.principal, door=door, peer=peer)
        host = peer.rsplit(":", 1)[0]
        now = self._monotonic()
        until = self._locked.get(host) if self._locked else None
        if until is None:
            principal = self._known.get(token)
            if principal is not None:
                return Caller(principal=principal, door=door, peer=peer)
        else:
            if now < until:
                raise self.refuse_unknown(
                    door, peer, f"too many failed attempts from {host}; wait {until - now:.0f}s"
                )
            del self._locked[host]
        self.refresh(stat_now=True)  # a token created a moment ago is in the file already
        principal = self._watched.table.principal(token)
        if principal is None:
            self._failed(host, now)
            raise self.refuse_unknown(door, peer, "unknown or revoked token")
        self._known[token] = principal
        return Caller(principal=principal, door=door, peer=peer)

    def curve_caller(self, public_key_z85: str, *, door: str, peer: str = "") -> Caller | None:
        """The caller a CURVE client key stands for, or None when the auth file does not list it."""
        if self._watched is None:
            return None
        self.refresh()
        principal = self._watched.table.by_curve_key.get(public_key_z85)
        return None if principal is None else Caller(principal=principal, door=door, peer=peer)

    def _failed(self, host: str, now: float) -> None:
        recent = [t for t in self._failures.get(host, ()) if now - t < FAILURE_WINDOW]
        recent.append(now)
        if len(recent) >= MAX_FAILURES:
            self._locked[host] = now + LOCKOUT
            self._failures.pop(host, None)
            log.warning("%s locked out for %.0fs after %d failed authentications", host, LOCKOUT, len(recent))
        else:
            self._failures[host] = recent
        if len(self._failures) > 10_000:  # bounded: forget the stalest hosts
            for stale in list(self._failures)[:5_000]:
                del self._failures[stale]

    def refuse_unknown(self, door: str, peer: str, reason: str) -> Unauthorized:
        self.audit.write("refused", None, "authenticate", reason=reason, door=door, peer=peer)
        return Unauthorized(f"not authorized: {reason}")


__all__ = ["FAILURE_WINDOW", "LOCKOUT", "MAX_FAILURES", "AuditLog", "Guard"]
