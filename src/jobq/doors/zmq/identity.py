"""Who speaks on a connection of the ZeroMQ door: the one place its protocols establish it.

A message's caller is, in this order:

1. the principal of the token the message carries (the native protocol's ``credential``);
2. else the principal of the connection's CURVE key (a ``?curve`` listener, keys from the auth
   file);
3. else the listener's trusted principal (``?trusted=ROLE...``);
4. else, without ``--auth``, the local admin; with ``--auth``, nobody: ``Unauthorized``.

The hub decides what the caller may do; this only says who it is. Callers are remembered per
connection and credential (the guard already remembers tokens), forgotten when the connection
closes or a token or key is revoked.
"""

from __future__ import annotations

import msgspec

from jobq.core.auth import Caller
from jobq.doors.zmq.router import Peer, Sender
from jobq.hub.hub import Hub

#: Routes remembered at most before the memo starts over, and credentials per route.
MAX_ROUTES = 50_000
MAX_CREDENTIALS = 8


class Callers:
    def __init__(self, hub: Hub, router: Sender, door: str) -> None:
        self.hub = hub
        self.router = router
        self.door = door
        self._memo: dict[bytes, tuple[Peer, dict[str | None, Caller]]] = {}
        hub.on_revoke(lambda _names: self._memo.clear())
        router.on_disconnect(self.forget)

    def caller(self, route: bytes, credential: str | None = None) -> Caller:
        """The caller behind a message being handled; raises Unauthorized (audited)."""
        return self.identify(route, credential)[0]

    def identify(self, route: bytes, credential: str | None = None) -> tuple[Caller, Peer]:
        """The caller behind a message being handled, and its connection."""
        peer = self.router.peer(route)
        entry = self._memo.get(route)
        if entry is None or entry[0] is not peer:
            if len(self._memo) >= MAX_ROUTES:
                self._memo.clear()
            entry = self._memo[route] = (peer, {})
        callers = entry[1]
        found = callers.get(credential)
        if found is None:
            found = self._establish(peer, credential)
            if len(callers) < MAX_CREDENTIALS:
                callers[credential] = found
        return found, peer

    def _establish(self, peer: Peer, credential: str | None) -> Caller:
        keyed = peer.curve
        if not credential and isinstance(keyed, Caller) and self.hub.guard.still_valid(keyed.principal):
            return msgspec.structs.replace(keyed, door=self.door, peer=peer.address)
        return self.hub.authenticate(
            credential, door=self.door, peer=peer.address, trusted=peer.listener.trusted
        )

    @staticmethod
    def principal_of(peer: Peer) -> str | None:
        """Who a connection is without a token: its CURVE key's or its listener's principal."""
        keyed = peer.curve
        if isinstance(keyed, Caller):
            return keyed.principal.name
        trusted = peer.listener.trusted
        return None if trusted is None else trusted.name

    def forget(self, route: bytes) -> None:
        self._memo.pop(route, None)


__all__ = ["Callers"]
