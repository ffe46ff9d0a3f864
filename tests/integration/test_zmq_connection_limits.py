"""Issue 12, finding 7 at the ZeroMQ door: connections that never greet must not lock others out.

Before, a TCP connection to the ZeroMQ port that never sent a ZMTP greeting stayed open for
ever (jobq's ZMTP engine had a handshake timeout for CURVE only): with the hub's open-file
limit at 400, 400 silent connections from 127.0.0.2 left a real client without a pong. Now a
connection not through its greeting and handshake within ``--zmq-handshake-timeout`` is closed,
one client address holds at most ``--zmq-max-per-peer`` connections and the door at most
``--zmq-max-connections``; past them a new connection is closed at once. Real hub processes on
free loopback ports; 127.0.0.2 is the other user.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import zmq

from jobq.protocol import native, zmtp
from tests.helpers import DOORS_OFF, Proc, free_port, jobq_command, start_hub, wait_for_hub

OTHER = "127.0.0.2"


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def drain(sock: socket.socket) -> tuple[bytes, bool]:
    """What the hub has sent so far, and whether the connection is still open."""
    sock.setblocking(False)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
        return data, False
    except BlockingIOError:
        return data, True
    except OSError:
        return data, False
    finally:
        sock.setblocking(True)


def closed_within(socks: list[socket.socket], seconds: float) -> int:
    """How many of ``socks`` the hub closes within ``seconds`` (what it sent is dropped)."""
    deadline = time.monotonic() + seconds
    left = list(socks)
    while left and time.monotonic() < deadline:
        left = [s for s in left if drain(s)[1]]
        time.sleep(0.05)
    return len(socks) - len(left)


def silent(stack: ExitStack, port: int, count: int, source: str = OTHER) -> list[socket.socket]:
    return [stack.enter_context(connect(port, source)) for _ in range(count)]


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


Dealer = Callable[[str], "zmq.Socket[bytes]"]


@pytest.fixture
def dealer() -> Iterator[Dealer]:
    """Makes pyzmq DEALERs connected to an endpoint; all closed after the test."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    made: list[zmq.Socket[bytes]] = []

    def make(endpoint: str) -> zmq.Socket[bytes]:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        made.append(sock)
        return sock

    yield make
    for sock in made:
        sock.close()
    ctx.term()


@pytest.mark.parametrize("engine", ["asyncio", "libzmq"])
def test_connections_that_never_greet_are_closed(
    tmp_path: Path, procs: list[Proc], engine: str, dealer: Dealer
) -> None:
    hub, endpoint = start_hub(tmp_path, extra=["--zmq-engine", engine, "--zmq-handshake-timeout", "1"])
    procs.append(hub)
    port = port_of(endpoint)
    # A real client, through its handshake: it stays, however long it is quiet.
    client = dealer(endpoint)
    with ExitStack() as stack:
        mute = silent(stack, port, 20)
        half = stack.enter_context(connect(port, OTHER))
        half.sendall(zmtp.greeting(as_server=False))  # a greeting, but never its READY
        started = time.monotonic()
        assert closed_within([*mute, half], 6) == 21
        assert 0.8 < time.monotonic() - started < 5
    time.sleep(0.5)
    client.send_multipart([b"JQ1", _ping()])
    assert client.poll(5000), "the client that greeted in time was cut too"
    wait_for_hub(endpoint, timeout=5)
    assert "Traceback" not in hub.output()


def test_a_curve_handshake_that_stalls_is_closed(tmp_path: Path, procs: list[Proc]) -> None:
    _, secret = zmq.curve_keypair()
    port = free_port()
    hub, _ = start_hub(
        tmp_path,
        extra=[
            "--zmq",
            f"tcp://127.0.0.1:{port}?curve",
            "--curve-secret",
            secret.decode(),
            "--zmq-handshake-timeout",
            "1",
        ],
    )
    procs.append(hub)
    with ExitStack() as stack:
        mute = silent(stack, port, 5)
        greeted = stack.enter_context(connect(port, OTHER))
        greeted.sendall(zmtp.greeting(as_server=False, mechanism=zmtp.MECHANISM_CURVE))  # no HELLO
        assert closed_within([*mute, greeted], 5) == 6
    assert "Traceback" not in hub.output()


def test_one_address_cannot_take_every_connection(tmp_path: Path, procs: list[Proc], dealer: Dealer) -> None:
    hub, endpoint = start_hub(tmp_path, extra=["--zmq-max-per-peer", "5", "--zmq-handshake-timeout", "60"])
    procs.append(hub)
    port = port_of(endpoint)
    with ExitStack() as stack:
        held = silent(stack, port, 5)
        time.sleep(0.3)
        seen = [drain(s) for s in held]
        assert all(is_open and data.startswith(zmtp.SIGNATURE_HEAD) for data, is_open in seen)
        extra = silent(stack, port, 3)
        assert closed_within(extra, 2) == 3
        assert [drain(s)[0] for s in extra] == [b""] * 3  # closed at once: not even a greeting
        # Another address is served; so are several real clients of one address.
        clients = [dealer(endpoint) for _ in range(5)]
        for client in clients:
            client.send_multipart([b"JQ1", _ping()])
        assert all(client.poll(5000) for client in clients)
        # A place given back can be taken again.
        held[0].close()
        time.sleep(0.3)
        again = stack.enter_context(connect(port, OTHER))
        time.sleep(0.3)
        data, is_open = drain(again)
        assert is_open and data.startswith(zmtp.SIGNATURE_HEAD)
    assert "Traceback" not in hub.output()


def test_the_door_holds_at_most_its_total(tmp_path: Path, procs: list[Proc]) -> None:
    options = ["--zmq-max-connections", "8", "--zmq-max-per-peer", "0", "--zmq-handshake-timeout", "1.5"]
    hub, endpoint = start_hub(tmp_path, extra=options)
    procs.append(hub)
    port = port_of(endpoint)
    with ExitStack() as stack:
        silent(stack, port, 8)
        time.sleep(0.3)
        mine = stack.enter_context(connect(port))
        assert closed_within([mine], 1) == 1 and drain(mine)[0] == b""
        # The silent ones are gone after the handshake timeout; the door is open again.
        wait_for_hub(endpoint, timeout=10)


def test_silent_connections_exhausting_descriptors_lock_nobody_out(tmp_path: Path, procs: list[Proc]) -> None:
    """The fuzz harness's reproduction: the hub's open-file limit at 200 (the fuzz had 400), as
    many silent connections from 127.0.0.2. The default per-peer limit (256) is beyond the
    descriptors here: the handshake timeout frees them."""
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    command = " ".join(
        jobq_command(
            "hub",
            "--store",
            f"sqlite:///{tmp_path}/j.db",
            "--zmq",
            endpoint,
            *DOORS_OFF,
            "--zmq-handshake-timeout",
            "2",
        )
    )
    hub = Proc(["bash", "-c", f"ulimit -n 200; exec {command}"], tmp_path / "hub.log")
    procs.append(hub)
    wait_for_hub(endpoint, hub)
    with ExitStack() as stack:
        mute = silent(stack, port, 200)
        wait_for_hub(endpoint, hub, timeout=10)  # no pong before: never
        assert closed_within(mute, 10) == 200
    wait_for_hub(endpoint, hub, timeout=5)


def _ping() -> bytes:
    return native.encode(native.Ping(rid=1))
