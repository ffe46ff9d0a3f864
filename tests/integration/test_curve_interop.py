"""CURVE between jobq's asyncio ZMTP sockets and libzmq's (pyzmq), both ways, keys let in or not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils.monitor import parse_monitor_message

from jobq.protocol import curve, zmtp
from jobq.protocol.zmtp_io import DealerSocket, RouterSocket

SERVER_PUBLIC, SERVER_SECRET = zmq.curve_keypair()
CLIENT_PUBLIC, CLIENT_SECRET = zmq.curve_keypair()
STRANGER_PUBLIC, STRANGER_SECRET = zmq.curve_keypair()
TIMEOUT = 5.0


@pytest.fixture
async def ctx() -> AsyncIterator[zmq.asyncio.Context]:
    """A libzmq context whose sockets each test closes itself (``closing``)."""
    context = zmq.asyncio.Context()
    yield context
    context.destroy(linger=0)


class Sockets(list[zmq.asyncio.Socket]):
    def close(self) -> None:
        for sock in self:
            sock.close(linger=0)


async def until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for a condition")
        await asyncio.sleep(0.01)


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    except ConnectionResetError:  # closed with our bytes unread
        return True


async def monitor_event(monitor: zmq.asyncio.Socket, wanted: int) -> dict[str, Any]:
    """The next event of kind ``wanted`` on a libzmq socket's monitor."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        frames = await asyncio.wait_for(monitor.recv_multipart(), max(0.01, deadline - time.monotonic()))
        event: dict[str, Any] = dict(parse_monitor_message(frames))
        if event["event"] == wanted:
            return event


def allow_client(key: bytes) -> str | None:
    return "alice" if key == curve.decode_key(CLIENT_PUBLIC) else None


def libzmq_client(ctx: zmq.asyncio.Context, kind: int, public: bytes, secret: bytes) -> zmq.asyncio.Socket:
    sock = ctx.socket(kind)
    sock.curve_serverkey = SERVER_PUBLIC
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.setsockopt(zmq.LINGER, 0)
    return sock


async def test_libzmq_curve_clients_talk_to_our_curve_router(ctx: zmq.asyncio.Context) -> None:
    got: list[list[bytes]] = []
    gone: asyncio.Queue[bytes] = asyncio.Queue()
    router: RouterSocket

    def echo(frames: list[bytes]) -> None:
        got.append(frames)
        router.send(frames)

    router = RouterSocket(
        echo, curve_server=SERVER_SECRET, curve_authenticate=allow_client, on_disconnect=gone.put_nowait
    )
    assert router.curve_public_key == SERVER_PUBLIC.decode()
    endpoint = await router.bind("tcp://127.0.0.1:*")
    sockets = Sockets()
    try:
        dealer = libzmq_client(ctx, zmq.DEALER, CLIENT_PUBLIC, CLIENT_SECRET)
        sockets.append(dealer)
        dealer.setsockopt(zmq.IDENTITY, b"dealer-1")
        dealer.connect(endpoint)
        body = [b"JQ1", b"", bytes(range(256)), b"x" * 70_000]
        for _ in range(3):
            await dealer.send_multipart(body)
        for _ in range(3):
            assert await asyncio.wait_for(dealer.recv_multipart(), TIMEOUT) == body
        assert got[0] == [b"dealer-1", *body]
        credentials = router.peer_credentials(b"dealer-1")
        assert credentials is not None and credentials.principal == "alice"
        assert credentials.public_key_z85 == CLIENT_PUBLIC.decode()
        req = libzmq_client(ctx, zmq.REQ, CLIENT_PUBLIC, CLIENT_SECRET)
        sockets.append(req)
        req.connect(endpoint)
        await req.send_multipart([b"MDPC01", b"echo", b"hi"])
        assert await asyncio.wait_for(req.recv_multipart(), TIMEOUT) == [b"MDPC01", b"echo", b"hi"]
        dealer.close()
        assert await asyncio.wait_for(gone.get(), TIMEOUT) == b"dealer-1"
        assert router.peer_credentials(b"dealer-1") is None
        assert router.refused == 0
    finally:
        sockets.close()
        router.close()


async def test_our_curve_dealer_talks_to_a_libzmq_curve_router_with_zap(ctx: zmq.asyncio.Context) -> None:
    asked: list[bytes] = []

    class Keys:
        def callback(self, domain: str, key: bytes) -> bool:
            asked.append(key)
            return key == CLIENT_PUBLIC

    auth = AsyncioAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback("*", credentials_provider=Keys())
    router = ctx.socket(zmq.ROUTER)
    router.curve_server = True
    router.curve_secretkey = SERVER_SECRET
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    replies: asyncio.Queue[list[bytes]] = asyncio.Queue()
    dealer = DealerSocket(
        f"tcp://127.0.0.1:{port}",
        replies.put_nowait,
        identity=b"ours",
        curve_server_key=SERVER_PUBLIC,
        curve_public_key=CLIENT_PUBLIC,
        curve_secret_key=CLIENT_SECRET,
    )
    try:
        dealer.send([b"sent before connecting", b""])
        dealer.start()
        frames = await asyncio.wait_for(router.recv_multipart(copy=False), TIMEOUT)
        assert [f.bytes for f in frames] == [b"ours", b"sent before connecting", b""]
        assert frames[1].get("User-Id") == CLIENT_PUBLIC.decode()  # ZAP's user id: our key in Z85
        assert asked == [CLIENT_PUBLIC]
        big = bytes(range(256)) * 1000
        for i in range(50):
            await router.send_multipart([b"ours", b"%d" % i, big])
        for i in range(50):
            assert await asyncio.wait_for(replies.get(), TIMEOUT) == [b"%d" % i, big]
        dealer.send([b"after", b"x" * 300])
        assert await asyncio.wait_for(router.recv_multipart(), TIMEOUT) == [b"ours", b"after", b"x" * 300]
        assert dealer.connected and dealer.last_error is None
    finally:
        dealer.close()
        router.close(linger=0)
        auth.stop()


async def test_an_unknown_client_key_is_refused_by_our_router(ctx: zmq.asyncio.Context) -> None:
    got: list[list[bytes]] = []
    router = RouterSocket(got.append, curve_server=SERVER_SECRET, curve_authenticate=allow_client)
    endpoint = await router.bind("tcp://127.0.0.1:*")
    sockets = Sockets()
    try:
        stranger = libzmq_client(ctx, zmq.DEALER, STRANGER_PUBLIC, STRANGER_SECRET)
        monitor = stranger.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        sockets += (monitor, stranger)
        stranger.connect(endpoint)
        await stranger.send_multipart([b"let me in"])
        event = await monitor_event(monitor, zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        assert event["value"] == 400  # our ERROR "400", as a ZAP refusal reads in libzmq
        await until(lambda: router.refused >= 1)
        ours = DealerSocket(
            endpoint, got.append, curve_server_key=SERVER_PUBLIC, curve_secret_key=STRANGER_SECRET
        )
        ours.start()
        try:
            await until(lambda: ours.last_error is not None)
            assert "400" in str(ours.last_error) and not ours.connected
        finally:
            ours.close()
        assert got == [] and router.peers == {}
    finally:
        sockets.close()
        router.close()


async def test_our_dealer_with_an_unknown_key_is_refused_by_libzmq(ctx: zmq.asyncio.Context) -> None:
    auth = AsyncioAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=".")  # an empty directory of allowed keys
    router = ctx.socket(zmq.ROUTER)
    router.curve_server = True
    router.curve_secretkey = SERVER_SECRET
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = DealerSocket(
        f"tcp://127.0.0.1:{port}",
        lambda f: None,
        curve_server_key=SERVER_PUBLIC,
        curve_secret_key=STRANGER_SECRET,
    )
    try:
        dealer.send([b"let me in"])
        dealer.start()
        await until(lambda: dealer.last_error is not None)
        assert "refused" in str(dealer.last_error) and "400" in str(dealer.last_error)
        assert not dealer.connected
        events = router.getsockopt(zmq.EVENTS)
        assert isinstance(events, int) and not events & zmq.POLLIN  # nothing got through
    finally:
        dealer.close()
        router.close(linger=0)
        auth.stop()


async def test_a_null_peer_on_a_curve_listener_is_refused_and_vice_versa(ctx: zmq.asyncio.Context) -> None:
    got: list[list[bytes]] = []
    router = RouterSocket(got.append, curve_server=SERVER_SECRET)
    endpoint = await router.bind("tcp://127.0.0.1:*")
    null_router = RouterSocket(got.append)
    null_endpoint = await null_router.bind("tcp://127.0.0.1:*")
    sockets = Sockets()
    try:
        plain = ctx.socket(zmq.DEALER)
        monitor = plain.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
        sockets += (monitor, plain)
        plain.connect(endpoint)
        await plain.send_multipart([b"in the clear"])
        event = await monitor_event(monitor, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
        assert event["value"] == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
        ours_plain = DealerSocket(endpoint, got.append)
        ours_curve = DealerSocket(
            null_endpoint, got.append, curve_server_key=SERVER_PUBLIC, curve_secret_key=CLIENT_SECRET
        )
        ours_plain.start()
        ours_curve.start()
        try:
            ours_plain.send([b"in the clear"])
            ours_curve.send([b"secret"])
            await until(lambda: router.refused >= 2 and ours_curve.last_error is not None)
            assert "mechanism" in str(ours_curve.last_error)
            assert not ours_plain.connected and not ours_curve.connected
        finally:
            ours_plain.close()
            ours_curve.close()
        assert got == [] and router.peers == {} and null_router.peers == {}
    finally:
        sockets.close()
        router.close()
        null_router.close()


async def test_our_dealer_and_router_with_curve_and_a_wrong_server_key() -> None:
    got: asyncio.Queue[list[bytes]] = asyncio.Queue()
    replies: asyncio.Queue[list[bytes]] = asyncio.Queue()
    router = RouterSocket(got.put_nowait, curve_server=curve.decode_key(SERVER_SECRET))
    endpoint = await router.bind("tcp://127.0.0.1:*")
    good = DealerSocket(
        endpoint,
        replies.put_nowait,
        identity=b"w1",
        curve_server_key=SERVER_PUBLIC,
        curve_secret_key=CLIENT_SECRET,
    )
    wrong = DealerSocket(
        endpoint, got.put_nowait, curve_server_key=STRANGER_PUBLIC, curve_secret_key=CLIENT_SECRET
    )
    try:
        good.start()
        wrong.start()
        good.send([b"one", b"two"])
        assert await asyncio.wait_for(got.get(), TIMEOUT) == [b"w1", b"one", b"two"]
        credentials = router.peer_credentials(b"w1")
        assert credentials is not None and credentials.principal is None  # no callback: any key
        router.send([b"w1", b"back"])
        assert await asyncio.wait_for(replies.get(), TIMEOUT) == [b"back"]
        await until(lambda: wrong.last_error is not None and router.refused >= 1)
        assert "closed the connection" in str(wrong.last_error)
        assert got.empty()
    finally:
        good.close()
        wrong.close()
        router.close()


async def test_a_silent_or_oversized_handshake_is_cut_off() -> None:
    router = RouterSocket(lambda f: None, curve_server=SERVER_SECRET, handshake_timeout=0.2)
    endpoint = await router.bind("tcp://127.0.0.1:*")
    port = int(endpoint.rsplit(":", 1)[1])
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        greeting = await asyncio.wait_for(reader.readexactly(64), TIMEOUT)
        assert greeting[12:17] == b"CURVE" and greeting[32] == 1  # as-server
        assert await closed_by_peer(reader)  # said nothing: closed
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            zmtp.greeting(False, zmtp.MECHANISM_CURVE) + zmtp.encode_command(b"HELLO", bytes(1 << 20))
        )
        await asyncio.wait_for(reader.readexactly(64), TIMEOUT)
        assert await closed_by_peer(reader)
        writer.close()
        assert router.refused == 2
    finally:
        router.close()


def test_keys_are_checked_when_the_sockets_are_made() -> None:
    with pytest.raises(ValueError, match="Z85"):
        RouterSocket(lambda f: None, curve_server="not a key")
    with pytest.raises(ValueError, match="curve_server"):
        RouterSocket(lambda f: None, curve_authenticate=allow_client)
    with pytest.raises(ValueError, match="curve_secret_key"):
        DealerSocket("tcp://127.0.0.1:1", lambda f: None, curve_server_key=SERVER_PUBLIC)
    with pytest.raises(ValueError, match="not the public key"):
        DealerSocket(
            "tcp://127.0.0.1:1",
            lambda f: None,
            curve_server_key=SERVER_PUBLIC,
            curve_public_key=STRANGER_PUBLIC,
            curve_secret_key=CLIENT_SECRET,
        )


class RawClient:
    """A CURVE client made of the codec and a TCP stream, to see each command go by."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = zmtp.Parser(mechanism=zmtp.MECHANISM_CURVE, commands_only=True, max_frame=1 << 20)
        self.pending: list[zmtp.Command] = []

    async def command(self) -> zmtp.Command:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            assert data, "closed"
            self.pending += self.parser.feed(data)[0]
        return self.pending.pop(0)

    async def handshake(self) -> curve.MessageCodec:
        client = curve.ClientHandshake(SERVER_PUBLIC, CLIENT_SECRET, zmtp.properties(b"DEALER", b"raw"))
        self.writer.write(zmtp.greeting(False, zmtp.MECHANISM_CURVE) + client.hello())
        self.writer.write(client.receive(await self.command()))
        assert client.receive(await self.command()) == b"" and client.codec is not None
        return client.codec


async def test_a_boxed_ping_gets_a_boxed_pong_and_messages_flow() -> None:
    got: asyncio.Queue[list[bytes]] = asyncio.Queue()
    router = RouterSocket(got.put_nowait, curve_server=SERVER_SECRET)
    endpoint = await router.bind("tcp://127.0.0.1:*")
    try:
        raw = RawClient(*await asyncio.open_connection("127.0.0.1", int(endpoint.rsplit(":", 1)[1])))
        codec = await raw.handshake()
        raw.writer.write(codec.encode_command(b"PING", b"\x00\x64ctx") + codec.encode([b"a", b"b"]))
        assert codec.unbox([await raw.command()]) == ([], [zmtp.Command(b"PONG", b"ctx")])
        assert await asyncio.wait_for(got.get(), TIMEOUT) == [b"raw", b"a", b"b"]
        router.send([b"raw", b"c"])
        assert codec.unbox([await raw.command()]) == ([[b"c"]], [])
        raw.writer.close()
    finally:
        router.close()


async def test_closing_the_router_closes_connections_in_their_handshake() -> None:
    router = RouterSocket(lambda f: None, curve_server=SERVER_SECRET)
    endpoint = await router.bind("tcp://127.0.0.1:*")
    reader, writer = await asyncio.open_connection("127.0.0.1", int(endpoint.rsplit(":", 1)[1]))
    await asyncio.wait_for(reader.readexactly(64), TIMEOUT)  # the greeting: the router has it
    router.close()
    assert await closed_by_peer(reader)
    writer.close()
