"""A DEALER connection to a hub, shared by the client and the worker SDKs.

Requests carry a ``rid`` and are matched with their replies, so any number may be outstanding.
Messages the hub sends unasked (events, jobs for a worker) go to ``on_push``. With several hub
endpoints the connection moves to the next one when asked to (``failover``).

``credential`` (a token) goes with every message. With ``curve_server_key`` (the hub's CURVE
public key) and this side's key pair the connection is CurveZMQ-encrypted, on either engine
(jobq's ZMTP, or libzmq's ``CURVE_SERVERKEY``/``PUBLICKEY``/``SECRETKEY`` options).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Callable, Sequence

import msgspec
import zmq

from jobq.errors import JobqError, Unavailable, error_from_code
from jobq.protocol import curve, native
from jobq.protocol.zmqio import AsyncSocket
from jobq.protocol.zmtp_io import DealerSocket

#: Where a connection hands the messages the hub sends unasked (events, jobs for a worker).
PushHandler = Callable[[native.Outbound], None]

log = logging.getLogger("jobq.connection")

_encode = msgspec.msgpack.Encoder().encode

#: Called once with a request's reply, or with the error that ended it.
ReplyCallback = Callable[[native.Outbound | JobqError], None]


#: Which ZeroMQ implementation the SDK uses: ``asyncio`` (jobq's own ZMTP on the event loop,
#: the default: no hand-off to an I/O thread per message) or ``libzmq`` (pyzmq).
ENGINE = os.environ.get("JOBQ_SDK_ENGINE", os.environ.get("JOBQ_ZMQ_ENGINE", "asyncio"))


def token_from_env(token: str | None) -> str | None:
    """``token``, or the environment's ``JOBQ_TOKEN`` when none is given ("" means none)."""
    if token is None:
        token = os.environ.get("JOBQ_TOKEN")
    return token or None


def endpoints_of(hub: str | Sequence[str]) -> list[str]:
    """``"tcp://a:5555,tcp://b:5555"`` or a list → a list of endpoints."""
    items = hub.split(",") if isinstance(hub, str) else list(hub)
    found = [item.strip() for item in items if item.strip()]
    if not found:
        raise ValueError("no hub endpoint given")
    return found


class Connection:
    def __init__(
        self,
        hub: str | Sequence[str],
        *,
        on_push: PushHandler | None = None,
        identity: bytes | None = None,
        timeout: float = 10.0,
        credential: str | None = None,
        curve_server_key: str | bytes | None = None,
        curve_public_key: str | bytes | None = None,
        curve_secret_key: str | bytes | None = None,
    ) -> None:
        self.endpoints = endpoints_of(hub)
        self.credential = credential
        self._curve = _curve_keys(curve_server_key, curve_public_key, curve_secret_key)
        self.on_push = on_push
        self.identity = identity
        self.timeout = timeout
        self.engine = ENGINE
        self.context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._index = 0
        self._io: AsyncSocket | DealerSocket | None = None
        #: rid → (what to do with the reply or the failure, its timeout timer)
        self._pending: dict[int, tuple[ReplyCallback, asyncio.TimerHandle | None]] = {}
        self._rids = itertools.count(1)
        self.malformed = 0
        #: Called when the connection to the hub breaks (it died or restarted: whatever it knew
        #: of us, such as subscriptions, is gone). Set before ``open``; None: not watched.
        self.on_disconnect: Callable[[], None] | None = None
        self._monitor: AsyncSocket | None = None

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._index]

    def open(self) -> None:
        if self.engine != "libzmq":
            server, public, secret = self._curve or (None, None, None)
            dealer = DealerSocket(
                self.endpoint,
                self._on_frames,
                identity=self.identity or b"",
                on_disconnect=self._dropped,
                curve_server_key=server,
                curve_public_key=public,
                curve_secret_key=secret,
            )
            dealer.start()
            self._io = dealer
            return
        if self.context is None:
            self.context = zmq.Context()
        sock: zmq.Socket[bytes] = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        if self.identity is not None:
            sock.setsockopt(zmq.IDENTITY, self.identity)
        if self._curve is not None:
            server, public, secret = self._curve
            sock.setsockopt(zmq.CURVE_SERVERKEY, server.encode())
            sock.setsockopt(zmq.CURVE_PUBLICKEY, public.encode())
            sock.setsockopt(zmq.CURVE_SECRETKEY, secret.encode())
        sock.connect(self.endpoint)
        self._io = AsyncSocket(sock, self._on_frames)
        self._io.start()
        if self.on_disconnect is not None:
            self._monitor = AsyncSocket(sock.get_monitor_socket(zmq.EVENT_DISCONNECTED), self._on_monitor)
            self._monitor.start()

    def _on_monitor(self, frames: list[bytes]) -> None:
        if len(frames) == 2:
            self._dropped()

    def _dropped(self) -> None:
        if self.on_disconnect is not None:
            self.on_disconnect()

    def _close_socket(self) -> None:
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None
        if self._io is not None:
            self._io.close()
            self._io = None

    def close(self) -> None:
        self._close_socket()
        self._fail_pending(Unavailable("the connection was closed"))
        if self.context is not None:
            self.context.term()

    def failover(self) -> str:
        """Drop the socket and connect to the next endpoint (outstanding requests fail)."""
        self._close_socket()
        self._fail_pending(Unavailable(f"moved away from {self.endpoint}"))
        self._index = (self._index + 1) % len(self.endpoints)
        self.open()
        return self.endpoint

    def _fail_pending(self, error: JobqError) -> None:
        pending, self._pending = self._pending, {}
        for callback, timer in pending.values():
            if timer is not None:
                timer.cancel()
            callback(error)

    def next_rid(self) -> int:
        return next(self._rids)

    def send(self, message: native.Inbound) -> None:
        if self._io is None:
            raise Unavailable("not connected")
        if self.credential is not None:
            message.credential = self.credential
        self._io.send((native.HEADER, _encode(message)))

    def call(self, message: native.Inbound, callback: ReplyCallback, timeout: float | None = None) -> None:
        """Send a request (its ``rid`` set) and have ``callback`` called once with the reply,
        or with the error (the hub's, or Unavailable when it does not answer in time)."""
        rid: int = message.rid  # type: ignore[union-attr]
        limit = self.timeout if timeout is None else timeout
        timer = asyncio.get_running_loop().call_later(limit, self._expire, rid, limit)
        self._pending[rid] = (callback, timer)
        try:
            self.send(message)
        except JobqError as exc:
            self._pending.pop(rid, None)
            timer.cancel()
            callback(exc)

    def _expire(self, rid: int, limit: float) -> None:
        found = self._pending.pop(rid, None)
        if found is not None:
            found[0](Unavailable(f"no answer from the hub at {self.endpoint} within {limit:g}s"))

    async def request(self, message: native.Inbound, timeout: float | None = None) -> native.Outbound:
        """Send a request (its ``rid`` already set) and wait for the matching reply."""
        future: asyncio.Future[native.Outbound] = asyncio.get_running_loop().create_future()

        def settle(outcome: native.Outbound | JobqError) -> None:
            if future.done():
                return
            if isinstance(outcome, JobqError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        rid: int = message.rid  # type: ignore[union-attr]
        self.call(message, settle, timeout)
        try:
            return await future
        finally:
            found = self._pending.pop(rid, None)  # cancelled while waiting
            if found is not None and found[1] is not None:
                found[1].cancel()

    def _on_frames(self, frames: list[bytes]) -> None:
        if len(frames) != 2 or frames[0] != native.HEADER:
            self.malformed += 1
            return
        try:
            message = native.decode_outbound(frames[1])
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.malformed += 1
            log.warning("dropped a malformed message from the hub")
            return
        rid = getattr(message, "rid", None)
        if rid:
            found = self._pending.pop(rid, None)
            if found is not None:
                callback, timer = found
                if timer is not None:
                    timer.cancel()
                callback(
                    error_from_code(message.code, message.message)
                    if isinstance(message, native.Error)
                    else message
                )
            return
        if isinstance(message, native.Error):
            log.warning("hub reported: %s (%s)", message.message, message.code)
        if self.on_push is not None:
            self.on_push(message)


def _curve_keys(
    server: str | bytes | None, public: str | bytes | None, secret: str | bytes | None
) -> tuple[str, str, str] | None:
    """The CURVE keys in Z85 (server's public key, ours), checked; None without a server key."""
    if server is None:
        if public is not None or secret is not None:
            raise ValueError("CURVE client keys need curve_server_key (the hub's public key)")
        return None
    if secret is None:
        raise ValueError("a CURVE client needs curve_secret_key (its own key pair; jobq curve keygen)")
    ours = curve.encode_key(curve.public_key_for(secret))
    if public is not None and curve.encode_key(curve.decode_key(public)) != ours:
        raise ValueError("curve_public_key is not the public key of curve_secret_key")
    server_key = curve.encode_key(curve.decode_key(server, "CURVE server key"))
    return server_key, ours, curve.encode_key(curve.decode_key(secret, "CURVE secret key"))
