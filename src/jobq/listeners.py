"""Listener addresses with their security options, and the rule about exposing them.

A listener is either authenticated (callers present a token, a CURVE key) or explicitly
*trusted*: its peers act with the role and scope the operator wrote in its address, so legacy
peers that cannot send credentials (Majordomo, DSJQ, work-queue programs) work unmodified.
Options follow the address as a query string (docs/security.md)::

    tcp://127.0.0.1:5556?trusted=worker&service=echo     ZeroMQ, peers act as echo workers
    tcp://0.0.0.0:5557?curve                             ZeroMQ with CURVE encryption
    127.0.0.1:50000?trusted=client&customer=acme         a line listener for acme's clients
    0.0.0.0:50002?tls                                    a line listener over TLS

``trusted=ROLE`` (admin, client, worker, monitor) with ``customer=ID`` and ``service=NAME``
(each repeatable) naming the scope. A trusted listener on an address other than loopback, or
any listener on such an address while the hub has no ``--auth``, is refused unless the operator
passes ``--insecure``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import parse_qs

from jobq.core.auth import ROLES, Principal
from jobq.core.errors import InvalidRequest

_KNOWN = {"trusted", "customer", "service", "curve", "tls"}


@dataclass(frozen=True, slots=True)
class Listener:
    """One address a door binds, with its options."""

    #: The address without its options (``tcp://HOST:PORT`` or ``HOST:PORT[/dsjq-compat]``).
    address: str
    #: Who its peers are when they send no credential; None: they must authenticate.
    trusted: Principal | None = None
    #: ZeroMQ: CURVE encryption required (clients' keys must be in the auth file).
    curve: bool = False
    #: Line: TLS with the hub's certificate.
    tls: bool = False

    @property
    def host(self) -> str:
        rest = self.address.split("://", 1)[-1]
        hostport = rest.split("/", 1)[0]
        if hostport.startswith("["):
            return hostport[1 : hostport.index("]")]
        return hostport.rsplit(":", 1)[0]

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name, ``*`` or ``0.0.0.0``-like wildcard: reachable from outside


def parse_listener(text: str) -> Listener:
    """``ADDRESS[?OPTIONS]`` → a Listener; raises InvalidRequest naming what is wrong."""
    address, _, query = text.partition("?")
    if not query:
        return Listener(address=address)
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - _KNOWN)
    if unknown:
        raise InvalidRequest(
            f"{text}: unknown listener option {unknown[0]!r}; known: {', '.join(sorted(_KNOWN))}"
        )
    trusted = None
    role = options.get("trusted", [None])[-1]
    if role is not None:
        if role not in ROLES:
            raise InvalidRequest(f"{text}: trusted= takes a role: {', '.join(ROLES)}")
        trusted = Principal(
            name=f"trusted:{address}",
            role=role,
            customers=frozenset(c for c in options.get("customer", []) if c),
            services=frozenset(s for s in options.get("service", []) if s),
        )
    elif "customer" in options or "service" in options:
        raise InvalidRequest(f"{text}: customer= and service= scope a trusted listener; add trusted=ROLE")
    return Listener(address=address, trusted=trusted, curve="curve" in options, tls="tls" in options)


def check_exposure(listeners: list[Listener], *, auth: bool, insecure: bool) -> None:
    """Refuse, in one line, to expose the hub beyond this machine without authentication, or
    to trust peers on such an address, unless the operator insists (``--insecure``)."""
    if insecure:
        return
    for listener in listeners:
        if listener.loopback:
            continue
        if not auth:
            raise InvalidRequest(
                f"refusing to listen on {listener.address} without --auth: anyone who reaches it could "
                "read and run every job (create tokens with `jobq token create`, or pass --insecure)"
            )
        if listener.trusted is not None:
            raise InvalidRequest(
                f"refusing to trust every peer on {listener.address}, which is not a loopback address "
                "(pass --insecure to do it anyway)"
            )


__all__ = ["Listener", "check_exposure", "is_loopback", "parse_listener"]
