"""CurveZMQ (ZeroMQ RFC 26) as ZMTP's CURVE mechanism (RFC 25), without I/O.

Commands in → bytes to send out: :class:`ClientHandshake` (the DEALER's side) and
:class:`ServerHandshake` (the ROUTER's side) run one connection's handshake, then hand over a
:class:`MessageCodec` that boxes and unboxes its MESSAGE commands. The cryptography is NaCl's
crypto_box (Curve25519, XSalsa20, Poly1305) and crypto_secretbox, through PyNaCl (libsodium).
:mod:`jobq.protocol.zmtp_io` drives it; the bytes are those libzmq sends and expects.

Keys: C/c the client's long-term public/secret key, S/s the server's, C'/c' and S'/s' the
short-term ones each side makes for one connection. Box[X](A->B) is X boxed from A's secret key
to B's public key; nonces are 24 bytes, a 16-byte text prefix then an 8-byte big-endian counter
("short nonce", the prefixes below), or an 8-byte prefix then 16 random bytes ("long nonce")::

    C: HELLO     %x01 %x00, 72 zeros, C', short nonce, Box[64 zeros](C'->S)      (200 bytes)
    S: WELCOME   long nonce, Box[S' + cookie](S->C')                              (168 bytes)
                 cookie = long nonce + SecretBox[C' + s'](K), K a key used once
    C: INITIATE  cookie, short nonce, Box[C + vouch + metadata](C'->S')           (257+ bytes)
                 vouch = long nonce + Box[C' + S](C->S')
    S: READY     short nonce, Box[metadata](S'->C')           (or ERROR, the client refused)
    then both:  MESSAGE  short nonce, Box[flags + frame](C'->S' or S'->C')

Metadata is ZMTP's (Socket-Type, Identity). Each side counts its short nonces from 1 (the
client's HELLO is 1 and INITIATE 2; the server's READY is 1) and refuses a peer's nonce that
does not grow. A MESSAGE carries one frame: flags bit 0 MORE, bit 1 COMMAND (a ZMTP command,
PING/PONG, boxed like the rest). libzmq sends MESSAGE frames without ZMTP's COMMAND flag; so
does this module, and it reads them with or without it.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Sequence

import nacl.bindings
import nacl.exceptions
import nacl.utils
from nacl.public import Box, PrivateKey, PublicKey
from nacl.secret import SecretBox
from zmq.utils import z85

from jobq.protocol import zmtp

KEY_SIZE = 32
#: Handshake commands larger than this close the connection (INITIATE carries metadata).
MAX_HANDSHAKE_COMMAND = 64 * 1024
#: Bytes a MESSAGE command adds to the frame it carries: name, short nonce, MAC, flags.
MESSAGE_OVERHEAD = 8 + 8 + 16 + 1

#: Flags inside a MESSAGE box (libzmq's message flags, not ZMTP's frame flags).
MORE = 0x01
COMMAND = 0x02

_HELLO = b"CurveZMQHELLO---"
_INITIATE = b"CurveZMQINITIATE"
_READY = b"CurveZMQREADY---"
_MESSAGE_C = b"CurveZMQMESSAGEC"
_MESSAGE_S = b"CurveZMQMESSAGES"
_WELCOME = b"WELCOME-"
_COOKIE = b"COOKIE--"
_VOUCH = b"VOUCH---"
_MESSAGE_NAME = b"\x07MESSAGE"
_MAC = 16
_NONCE = struct.Struct(">Q")
_LONG_SIZE = struct.Struct(">Q")
_HELLO_BODY = 200 - 6
_WELCOME_BODY = 168 - 8
_INITIATE_MIN_BODY = 257 - 9

# crypto_box with a precomputed key (``Box.shared_key()``), for MESSAGE boxes: what Box.encrypt
# and Box.decrypt call, without the EncryptedMessage they wrap each result in.
_box = nacl.bindings.crypto_box_easy_afternm
_unbox = nacl.bindings.crypto_box_open_easy_afternm


class CurveError(zmtp.ProtocolViolation):
    """A CURVE handshake or MESSAGE that does not check out: the connection must be closed."""


class Refused(CurveError):
    """The server answered the handshake with ERROR (its reason: libzmq says "400")."""

    def __init__(self, reason: bytes) -> None:
        super().__init__(f"the server refused the CURVE handshake: {reason.decode('ascii', 'replace')}")
        self.reason = reason


# -- keys


def decode_key(key: str | bytes, what: str = "CURVE key") -> bytes:
    """A key as 32 raw bytes, from the 40-character Z85 text ``zmq.curve_keypair()`` gives or raw."""
    if isinstance(key, bytes) and len(key) == KEY_SIZE:
        return key
    if len(key) == 40:
        try:
            raw = z85.decode(key)
        except (KeyError, ValueError, struct.error):
            pass
        else:
            if len(raw) == KEY_SIZE:
                return raw
    raise ValueError(f"a {what} is 40 characters of Z85 or 32 raw bytes")


def encode_key(key: bytes) -> str:
    """32 raw bytes → the 40-character Z85 text libzmq's tools print."""
    return z85.encode(decode_key(key)).decode("ascii")


def generate_keypair() -> tuple[str, str]:
    """A new long-term key pair, (public, secret), in Z85 as ``zmq.curve_keypair()``."""
    secret = PrivateKey.generate()
    return encode_key(bytes(secret.public_key)), encode_key(bytes(secret))


def public_key_for(secret_key: str | bytes) -> bytes:
    """The public key (raw) that goes with a secret key."""
    return bytes(PrivateKey(decode_key(secret_key, "CURVE secret key")).public_key)


def _private(key: PrivateKey | str | bytes) -> PrivateKey:
    return key if isinstance(key, PrivateKey) else PrivateKey(decode_key(key, "CURVE secret key"))


def _public(key: PublicKey | str | bytes) -> PublicKey:
    return key if isinstance(key, PublicKey) else PublicKey(decode_key(key, "CURVE public key"))


def error_reason(body: bytes) -> bytes:
    """The reason an ERROR command gives."""
    return body[1 : 1 + body[0]] if body else b""


def error_command(reason: bytes) -> bytes:
    """The ERROR command a server refuses a client with (libzmq's reason is a ZAP status code)."""
    reason = reason[:255]
    return zmtp.encode_command(b"ERROR", bytes([len(reason)]) + reason)


# -- messages


class MessageCodec:
    """One secured connection's MESSAGE commands: frames → boxes, boxes → messages."""

    __slots__ = (
        "_frames",
        "_key",
        "_recv_nonce",
        "_recv_prefix",
        "_send_nonce",
        "_send_prefix",
        "_size",
        "max_message",
    )

    def __init__(
        self, shared_key: bytes, *, server: bool, send_nonce: int, recv_nonce: int, max_message: int
    ) -> None:
        self._key = shared_key
        self._send_prefix = _MESSAGE_S if server else _MESSAGE_C
        self._recv_prefix = _MESSAGE_C if server else _MESSAGE_S
        self._send_nonce = send_nonce
        self._recv_nonce = recv_nonce
        self.max_message = max_message
        self._frames: list[bytes] = []
        self._size = 0

    def encode(self, frames: Sequence[bytes]) -> bytes:
        """One message (at least one frame) as MESSAGE commands on the wire."""
        key = self._key
        prefix = self._send_prefix
        nonce = self._send_nonce
        parts: list[bytes] = []
        last = len(frames) - 1
        for i, frame in enumerate(frames):
            short = _NONCE.pack(nonce)
            nonce += 1
            boxed = _box((b"\x01" if i < last else b"\x00") + frame, prefix + short, key)
            size = 16 + len(boxed)
            parts.append(bytes((0, size)) if size < 256 else b"\x02" + _LONG_SIZE.pack(size))
            parts += (_MESSAGE_NAME, short, boxed)
        self._send_nonce = nonce
        return b"".join(parts)

    def encode_command(self, name: bytes, body: bytes = b"") -> bytes:
        """A ZMTP command (PING, PONG) boxed as a MESSAGE."""
        short = _NONCE.pack(self._send_nonce)
        self._send_nonce += 1
        boxed = _box(bytes((COMMAND, len(name))) + name + body, self._send_prefix + short, self._key)
        size = 16 + len(boxed)
        header = bytes((0, size)) if size < 256 else b"\x02" + _LONG_SIZE.pack(size)
        return header + _MESSAGE_NAME + short + boxed

    def unbox(self, commands: list[zmtp.Command]) -> tuple[list[list[bytes]], list[zmtp.Command]]:
        """MESSAGE commands as they came → the messages they complete, and the boxed commands."""
        messages: list[list[bytes]] = []
        inner: list[zmtp.Command] = []
        key = self._key
        prefix = self._recv_prefix
        frames = self._frames
        for command in commands:
            body = command.body
            if command.name != b"MESSAGE":
                raise CurveError(f"a {command.name[:32]!r} command on a secured connection")
            if len(body) < 8 + _MAC + 1:
                raise CurveError("a MESSAGE too short to hold a box")
            (nonce,) = _NONCE.unpack_from(body)
            if nonce <= self._recv_nonce:
                raise CurveError("a MESSAGE whose nonce does not grow (replayed or reordered)")
            try:
                plain = _unbox(body[8:], prefix + body[:8], key)
            except nacl.exceptions.CryptoError:
                raise CurveError("a MESSAGE box that does not open (tampered with?)") from None
            self._recv_nonce = nonce
            flags = plain[0]
            if flags & COMMAND:
                if frames:
                    raise CurveError("a command inside a multi-frame message")
                name_stop = 2 + plain[1] if len(plain) > 1 else 1
                inner.append(zmtp.Command(plain[2:name_stop], plain[name_stop:]))
                continue
            frame = plain[1:]
            if self._size + len(frame) > self.max_message:
                raise CurveError(f"message larger than {self.max_message} bytes")
            frames.append(frame)
            if flags & MORE:
                self._size += len(frame) + zmtp.FRAME_COST
            else:
                messages.append(frames)
                frames = self._frames = []
                self._size = 0
        return messages, inner


# -- handshakes


class ClientHandshake:
    """The client's side: :meth:`hello` to start, then :meth:`receive` each command the server
    sends until :attr:`codec` is set (the server is then who it must be)."""

    def __init__(
        self,
        server_key: PublicKey | str | bytes,
        secret_key: PrivateKey | str | bytes,
        metadata: bytes,
        *,
        max_message: int = 64 * 1024 * 1024,
    ) -> None:
        self._server = _public(server_key)
        self._secret = _private(secret_key)
        self._metadata = metadata
        self._short = PrivateKey.generate()
        self._hello_box: Box | None = None
        self._session: Box | None = None
        self._state = "hello"
        self.max_message = max_message
        self.codec: MessageCodec | None = None
        self.peer_properties: dict[bytes, bytes] = {}

    def hello(self) -> bytes:
        """The HELLO command, the client's first."""
        if self._state != "hello":
            raise CurveError("HELLO was sent already")
        self._hello_box = box = Box(self._short, self._server)
        short = _NONCE.pack(1)
        signature = box.encrypt(bytes(64), _HELLO + short).ciphertext
        self._state = "welcome"
        body = b"\x01\x00" + bytes(72) + bytes(self._short.public_key) + short + signature
        return zmtp.encode_command(b"HELLO", body)

    def receive(self, command: zmtp.Command) -> bytes:
        """One command from the server → what to send back (b"" for none)."""
        name = command.name
        if name == b"ERROR" and self._state in ("welcome", "ready"):
            self._state = "failed"
            raise Refused(error_reason(command.body))
        try:
            if name == b"WELCOME" and self._state == "welcome":
                return self._welcome(command.body)
            if name == b"READY" and self._state == "ready":
                self._ready(command.body)
                return b""
        except nacl.exceptions.CryptoError:
            self._state = "failed"
            raise CurveError(f"the server's {name.decode()} does not open: not the server we trust") from None
        self._state = "failed"
        raise CurveError(f"a {name[:32]!r} command where the CURVE handshake does not expect it")

    def _welcome(self, body: bytes) -> bytes:
        if len(body) != _WELCOME_BODY or self._hello_box is None:
            raise CurveError("a malformed WELCOME")
        plain = self._hello_box.decrypt(body[16:], _WELCOME + body[:16])
        server_short = PublicKey(plain[:32])
        cookie = plain[32:128]
        self._hello_box = None
        self._session = session = Box(self._short, server_short)
        vouch_nonce = nacl.utils.random(16)
        vouch = Box(self._secret, server_short).encrypt(
            bytes(self._short.public_key) + bytes(self._server), _VOUCH + vouch_nonce
        )
        inner = bytes(self._secret.public_key) + vouch_nonce + vouch.ciphertext + self._metadata
        short = _NONCE.pack(2)
        boxed = session.encrypt(inner, _INITIATE + short).ciphertext
        self._state = "ready"
        return zmtp.encode_command(b"INITIATE", cookie + short + boxed)

    def _ready(self, body: bytes) -> None:
        if len(body) < 8 + _MAC or self._session is None:
            raise CurveError("a malformed READY")
        (nonce,) = _NONCE.unpack_from(body)
        metadata = self._session.decrypt(body[8:], _READY + body[:8])
        self.peer_properties = zmtp.parse_properties(metadata)
        self.codec = MessageCodec(
            self._session.shared_key(),
            server=False,
            send_nonce=3,
            recv_nonce=nonce,
            max_message=self.max_message,
        )
        self._state = "done"


class ServerHandshake:
    """The server's side: :meth:`receive` HELLO (→ WELCOME) and INITIATE (→ b""); then
    :attr:`client_key` is the client's long-term key, and :meth:`accept` (→ READY, and
    :attr:`codec`) or :meth:`refuse` (→ ERROR) ends it."""

    def __init__(self, secret_key: PrivateKey | str | bytes, *, max_message: int = 64 * 1024 * 1024) -> None:
        self._secret = _private(secret_key)
        self.public_key = bytes(self._secret.public_key)
        self.max_message = max_message
        self._state = "hello"
        self._recv_nonce = 0
        self._client_short = b""
        self._short: PrivateKey | None = None
        self._cookie_key: SecretBox | None = None
        self._session: Box | None = None
        self.client_key: bytes | None = None
        self.peer_properties: dict[bytes, bytes] = {}
        self.codec: MessageCodec | None = None

    def receive(self, command: zmtp.Command) -> bytes:
        """One command from the client → what to send back (b"" for none)."""
        name = command.name
        try:
            if name == b"HELLO" and self._state == "hello":
                return self._hello(command.body)
            if name == b"INITIATE" and self._state == "initiate":
                self._initiate(command.body)
                return b""
        except nacl.exceptions.CryptoError:
            self._state = "failed"
            raise CurveError(f"the client's {name.decode()} does not open (wrong server key?)") from None
        self._state = "failed"
        raise CurveError(f"a {name[:32]!r} command where the CURVE handshake does not expect it")

    def _hello(self, body: bytes) -> bytes:
        if len(body) != _HELLO_BODY or body[:2] != b"\x01\x00":
            raise CurveError("a malformed HELLO (or a CurveZMQ version other than 1.0)")
        client_short = body[74:106]
        (self._recv_nonce,) = _NONCE.unpack_from(body, 106)
        box = Box(self._secret, PublicKey(client_short))
        if box.decrypt(body[114:], _HELLO + body[106:114]) != bytes(64):
            raise CurveError("a HELLO whose signature box does not hold zeros")
        self._client_short = client_short
        self._short = short = PrivateKey.generate()
        self._cookie_key = SecretBox(nacl.utils.random(SecretBox.KEY_SIZE))
        cookie_nonce = nacl.utils.random(16)
        cookie = self._cookie_key.encrypt(client_short + bytes(short), _COOKIE + cookie_nonce).ciphertext
        welcome_nonce = nacl.utils.random(16)
        welcome = box.encrypt(bytes(short.public_key) + cookie_nonce + cookie, _WELCOME + welcome_nonce)
        self._state = "initiate"
        return zmtp.encode_command(b"WELCOME", welcome_nonce + welcome.ciphertext)

    def _initiate(self, body: bytes) -> None:
        if len(body) < _INITIATE_MIN_BODY or self._cookie_key is None or self._short is None:
            raise CurveError("a malformed INITIATE")
        cookie = self._cookie_key.decrypt(body[16:96], _COOKIE + body[:16])
        short = self._short
        if not hmac.compare_digest(cookie, self._client_short + bytes(short)):
            raise CurveError("an INITIATE with a cookie that is not this connection's")
        self._cookie_key = None  # used once (RFC 26: forget it once INITIATE is valid)
        (nonce,) = _NONCE.unpack_from(body, 96)
        if nonce <= self._recv_nonce:
            raise CurveError("an INITIATE whose nonce does not grow")
        session = Box(short, PublicKey(self._client_short))
        plain = session.decrypt(body[104:], _INITIATE + body[96:104])
        client_key = plain[:32]
        vouch = Box(short, PublicKey(client_key)).decrypt(plain[48:128], _VOUCH + plain[32:48])
        if not hmac.compare_digest(vouch, self._client_short + self.public_key):
            raise CurveError("an INITIATE whose vouch is not for this connection and server")
        self.peer_properties = zmtp.parse_properties(plain[128:])
        self._recv_nonce = nonce
        self._session = session
        self._short = None
        self.client_key = client_key
        self._state = "authenticate"

    def accept(self, metadata: bytes) -> bytes:
        """The client may in: the READY command (with this side's metadata)."""
        if self._state != "authenticate" or self._session is None:
            raise CurveError("nothing to accept: the handshake has not reached INITIATE")
        short = _NONCE.pack(1)
        boxed = self._session.encrypt(metadata, _READY + short).ciphertext
        self.codec = MessageCodec(
            self._session.shared_key(),
            server=True,
            send_nonce=2,
            recv_nonce=self._recv_nonce,
            max_message=self.max_message,
        )
        self._state = "done"
        return zmtp.encode_command(b"READY", short + boxed)

    def refuse(self, reason: bytes = b"400") -> bytes:
        """The client may not in: the ERROR command (libzmq's ZAP refusal says "400")."""
        self._state = "failed"
        self._session = None
        return error_command(reason)
