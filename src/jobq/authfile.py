"""The auth file: the tokens (as hashes) and CURVE client keys a hub accepts.

``jobq token create|list|revoke|allow-key --auth FILE`` edit it; ``jobq hub --auth FILE`` reads it and
reads it again whenever it changes (a revoked token stops working within a second). It holds
no secret: only SHA-256 hashes of tokens and CURVE *public* keys. It is JSON::

    {"version": 1,
     "tokens": [{"name": "ci", "role": "client", "hash": "sha256:…",
                 "customers": ["acme"], "services": [], "created": 1764600000.0}],
     "curve": [{"name": "gpu-7", "role": "worker", "public_key": "<40 Z85 chars>",
                "customers": [], "services": ["render"]}]}

Written atomically (a temporary file renamed over it) with mode 0600.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import tempfile
import time
from pathlib import Path

import msgspec
from zmq.utils import z85

from jobq.core.auth import ROLES, Principal, Role, new_token, token_hash
from jobq.core.errors import InvalidRequest, NotFound


class _Entry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a token and a CURVE key have alike: a name, a role and its scope."""

    name: str
    role: Role
    customers: list[str] = msgspec.field(default_factory=list)
    services: list[str] = msgspec.field(default_factory=list)
    created: float = 0.0

    def principal(self) -> Principal:
        return Principal(
            name=self.name,
            role=self.role,
            customers=frozenset(self.customers),
            services=frozenset(self.services),
        )


class TokenEntry(_Entry, kw_only=True, omit_defaults=True):
    #: ``sha256:`` and the hex digest of the token; the token itself is never stored.
    hash: str


class CurveEntry(_Entry, kw_only=True, omit_defaults=True):
    #: The client's CURVE public key, Z85-encoded (40 characters), as zmq.curve_keypair() gives.
    public_key: str


class AuthFile(msgspec.Struct, kw_only=True):
    version: int = 1
    tokens: list[TokenEntry] = msgspec.field(default_factory=list)
    curve: list[CurveEntry] = msgspec.field(default_factory=list)


class AuthTable:
    """The file as the hub looks callers up in it: by token hash and by CURVE public key."""

    def __init__(self, data: AuthFile) -> None:
        self.by_hash = {entry.hash: entry.principal() for entry in data.tokens}
        self.by_curve_key = {entry.public_key: entry.principal() for entry in data.curve}
        self.names = {entry.name for entry in data.tokens} | {entry.name for entry in data.curve}

    def principal(self, token: str) -> Principal | None:
        return self.by_hash.get(token_hash(token))


def read(path: Path) -> AuthFile:
    """The file's contents; an absent file is empty. Raises InvalidRequest when it is not a
    valid auth file (with what is wrong)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return AuthFile()
    try:
        return msgspec.json.decode(raw, type=AuthFile)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"{path} is not a jobq auth file: {exc}") from None


def write(path: Path, data: AuthFile) -> None:
    """Replace the file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(msgspec.json.format(msgspec.json.encode(data), indent=2) + b"\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _taken(data: AuthFile) -> set[str]:
    return {entry.name for entry in data.tokens} | {entry.name for entry in data.curve}


def create_token(
    path: Path,
    role: str,
    *,
    customers: list[str] | None = None,
    services: list[str] | None = None,
    name: str | None = None,
) -> tuple[str, TokenEntry]:
    """Add a token to the file; returns the secret (shown once, never stored) and its entry."""
    if role not in ROLES:
        raise InvalidRequest(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    data = read(path)
    taken = _taken(data)
    if name is None:
        name = next(f"{role}-{n}" for n in range(1, len(taken) + 2) if f"{role}-{n}" not in taken)
    elif name in taken:
        raise InvalidRequest(f"a token named {name!r} exists already; revoke it first or pick another name")
    secret = new_token()
    entry = TokenEntry(
        name=name,
        role=role,
        hash=token_hash(secret),
        customers=sorted(set(customers or [])),
        services=sorted(set(services or [])),
        created=round(time.time(), 3),
    )
    data.tokens.append(entry)
    write(path, data)
    return secret, entry


# ---------------------------------------------------------------- CURVE keys


def z85_key(text: str, what: str = "CURVE key") -> str:
    """``text`` if it is a CURVE key as ZeroMQ writes them (40 Z85 characters, 32 bytes), else
    InvalidRequest saying what is wrong (never echoing a secret)."""
    key = text.strip()
    if len(key) != 40:
        raise InvalidRequest(f"a {what} is 40 Z85 characters (jobq curve keygen); this one has {len(key)}")
    try:
        raw = z85.decode(key.encode("ascii"))
    except (UnicodeEncodeError, ValueError, KeyError, IndexError, struct.error):
        raise InvalidRequest(
            f"a {what} is 40 Z85 characters (jobq curve keygen); this one is not Z85"
        ) from None
    if len(raw) != 32:
        raise InvalidRequest(f"a {what} decodes to 32 bytes")
    return key


#: ``secret-key = "…"`` in a ZeroMQ certificate file (zmq.auth.create_certificates, czmq zcert).
_ZPL_KEY = re.compile(r'^\s*(secret|public)-key\s*=\s*"([^"]{40})"\s*$', re.MULTILINE)


def curve_key(value: str, *, secret: bool = True) -> str:
    """A CURVE key given as itself (Z85) or as a file holding it: the key alone on a line, or a
    ZeroMQ certificate file (``secret-key = "…"``; ``public-key`` when ``secret`` is False)."""
    what = "CURVE secret key" if secret else "CURVE public key"
    text = value.strip()
    if len(text) == 40 and not Path(text).exists():
        return z85_key(text, what)
    try:
        content = Path(text).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{what}: not 40 Z85 characters, nor a readable file ({exc})") from None
    wanted = "secret" if secret else "public"
    for kind, key in _ZPL_KEY.findall(content):
        if kind == wanted:
            return z85_key(key, what)
    return z85_key(content, f"{what} in {text}")


def allow_key(
    path: Path,
    public_key: str,
    role: str,
    *,
    name: str,
    customers: list[str] | None = None,
    services: list[str] | None = None,
) -> CurveEntry:
    """Let a CURVE client with this public key in, as ``role`` with this scope."""
    if role not in ROLES:
        raise InvalidRequest(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    key = z85_key(public_key, "CURVE public key")
    data = read(path)
    if name in _taken(data):
        raise InvalidRequest(
            f"a token or key named {name!r} exists already; revoke it first or pick another name"
        )
    clash = next((entry.name for entry in data.curve if entry.public_key == key), None)
    if clash is not None:
        raise InvalidRequest(f"this public key is in the file already, as {clash!r}")
    entry = CurveEntry(
        name=name,
        role=role,
        public_key=key,
        customers=sorted(set(customers or [])),
        services=sorted(set(services or [])),
        created=round(time.time(), 3),
    )
    data.curve.append(entry)
    write(path, data)
    return entry


def revoke(path: Path, name: str) -> None:
    data = read(path)
    kept = [entry for entry in data.tokens if entry.name != name]
    kept_curve = [entry for entry in data.curve if entry.name != name]
    if len(kept) == len(data.tokens) and len(kept_curve) == len(data.curve):
        raise NotFound(f"no token named {name!r} in {path}")
    data.tokens, data.curve = kept, kept_curve
    write(path, data)


class Watched:
    """The auth file as a running hub sees it: read again when its modification time or size
    changes (checked at most every ``interval`` seconds, on lookups and by the hub's clock)."""

    def __init__(self, path: Path, interval: float = 0.5) -> None:
        self.path = path
        self.interval = interval
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self.table = AuthTable(AuthFile())
        self.refresh(force=True)

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def refresh(self, *, force: bool = False, stat_now: bool = False) -> bool:
        """Reread the file if it changed; True when it did. A file that became invalid keeps
        the previous table (and raises, so the caller can log it)."""
        now = time.monotonic()
        if not force and not stat_now and now - self._checked < self.interval:
            return False
        self._checked = now
        stamp = self._stat()
        if stamp == self._stamp and not force:
            return False
        table = AuthTable(read(self.path))
        self._stamp = stamp
        self.table = table
        return True


__all__ = [
    "AuthFile",
    "AuthTable",
    "CurveEntry",
    "TokenEntry",
    "Watched",
    "allow_key",
    "create_token",
    "curve_key",
    "read",
    "revoke",
    "write",
    "z85_key",
]
