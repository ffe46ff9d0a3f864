"""Issue 12, finding 7 at the line door: idle or slow connections must not lock other users out.

Before, a line connection that sent nothing was kept for ever, and nothing stopped one client
address from holding every place (``--line-max-connections``): 100 silent connections from
127.0.0.2 left a client on 127.0.0.1 with ``ERR too many connections`` for as long as they
stayed. Now one address holds at most ``--line-max-per-peer`` connections, a connection that
holds no job is closed after ``--line-idle-timeout`` of silence, and a line must arrive whole
within ``--line-partial-timeout``. Real hub processes on free loopback ports; 127.0.0.2 is the
other user.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.helpers import Proc, free_port, start_hub

OTHER = "127.0.0.2"


@contextmanager
def line_hub(tmp: Path, procs: list[Proc], *options: str) -> Iterator[tuple[int, int]]:
    """A hub with a document listener and a dsjq-compat one: their ports."""
    plain, compat = free_port(), free_port()
    hub, _ = start_hub(
        tmp, extra=["--line", f"127.0.0.1:{plain}", "--line", f"127.0.0.1:{compat}/dsjq-compat", *options]
    )
    procs.append(hub)
    yield plain, compat
    assert "Traceback" not in hub.output()


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def ask(sock: socket.socket, command: str) -> str:
    sock.sendall(command.encode() + b"\n")
    return line(sock)


def line(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        assert chunk, f"closed instead of a reply (got {data!r})"
        data += chunk
    return data[:-1].decode()


def rest(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything until the hub closes the connection (fails if it does not within ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def drain(sock: socket.socket) -> tuple[bytes, bool]:
    """What the hub has sent so far, and whether the connection is still open."""
    sock.setblocking(False)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
        return data, False
    except BlockingIOError:
        return data, True
    except OSError:
        return data, False
    finally:
        sock.setblocking(True)


def still_open(sock: socket.socket) -> bool:
    data, is_open = drain(sock)
    assert data == b"", data
    return is_open


def open_many(stack: ExitStack, port: int, count: int, source: str) -> list[socket.socket]:
    return [stack.enter_context(connect(port, source)) for _ in range(count)]


def test_idle_connections_from_one_address_leave_room_for_others(tmp_path: Path, procs: list[Proc]) -> None:
    # The fuzz harness's reproduction, with the defaults but --line-max-connections 100.
    with line_hub(tmp_path, procs, "--line-max-connections", "100") as (port, _), ExitStack() as stack:
        idle = open_many(stack, port, 100, OTHER)
        time.sleep(0.5)
        client = stack.enter_context(connect(port))
        assert ask(client, "JOB from another user") == "ID 1"
        seen = [drain(s) for s in idle]
        refused = [data for data, is_open in seen if not is_open]
        assert len(refused) == 100 - 64  # the default per-peer limit
        assert set(refused) == {
            b"ERR too many connections from your address (the limit is 64 per client address)\n"
        }
        assert {data for data, is_open in seen if is_open} == {b""}
        assert ask(client, "STATUS 1") == "waiting"


def test_one_address_gets_at_most_its_share(tmp_path: Path, procs: list[Proc]) -> None:
    options = ("--line-max-connections", "20", "--line-max-per-peer", "5")
    with line_hub(tmp_path, procs, *options) as (port, compat), ExitStack() as stack:
        held = open_many(stack, port, 5, OTHER)
        time.sleep(0.3)
        assert all(still_open(s) for s in held)
        extra = stack.enter_context(connect(port, OTHER))
        assert (
            rest(extra) == b"ERR too many connections from your address (the limit is 5 per client address)\n"
        )
        extra = stack.enter_context(connect(compat, OTHER))  # every listener together, either dialect
        assert rest(extra).startswith(b"ERR too many connections from your address")
        assert ask(held[0], "JOB one of the five") == "ID 1"
        mine = open_many(stack, port, 5, "127.0.0.1")
        assert [ask(s, "STATUS 1") for s in mine] == ["waiting"] * 5
        held[1].close()  # its place is free again
        time.sleep(0.3)
        again = stack.enter_context(connect(port, OTHER))
        assert ask(again, "STATUS 1") == "waiting"
        # The total still holds, whatever the address.
        more = open_many(stack, port, 5, "127.0.0.3") + open_many(stack, port, 5, "127.0.0.4")
        assert all(ask(s, "STATUS 1") == "waiting" for s in more)
        late = stack.enter_context(connect(port, "127.0.0.5"))
        assert rest(late) == b"ERR too many connections (the limit is 20)\n"


def test_idle_connections_are_closed_and_the_door_opens_again(tmp_path: Path, procs: list[Proc]) -> None:
    options = ("--line-max-connections", "10", "--line-max-per-peer", "0", "--line-idle-timeout", "1")
    with line_hub(tmp_path, procs, *options) as (port, compat), ExitStack() as stack:
        idle = [*open_many(stack, port, 9, OTHER), stack.enter_context(connect(compat, OTHER))]
        time.sleep(0.3)
        locked_out = stack.enter_context(connect(port))
        assert rest(locked_out) == b"ERR too many connections (the limit is 10)\n"
        started = time.monotonic()
        for sock in idle:  # both dialects hear why
            assert rest(sock, timeout=5) == b"ERR idle: nothing received for 1s\n"
        assert 0.5 < time.monotonic() - started < 4
        client = stack.enter_context(connect(port))
        assert ask(client, "JOB served") == "ID 1"


def test_a_talking_connection_and_a_worker_holding_a_job_are_not_idle(
    tmp_path: Path, procs: list[Proc]
) -> None:
    with line_hub(tmp_path, procs, "--line-idle-timeout", "1") as (port, _), ExitStack() as stack:
        talker = stack.enter_context(connect(port))
        worker = stack.enter_context(connect(port))
        assert ask(talker, "JOB work") == "ID 1"
        assert ask(worker, "FETCH") == "JOB 1 work"
        for _ in range(8):  # 2.4 s: more than twice the idle timeout
            time.sleep(0.3)
            assert ask(talker, "STATUS 1") == "running"
        # The worker said nothing for 2.4 s but holds its job: --line-lease governs it.
        assert still_open(worker)
        assert ask(worker, "DONE 1 result") == "OK"
        # Holding nothing now, it is idle like any other connection.
        assert rest(worker, timeout=5) == b"ERR idle: nothing received for 1s\n"


def test_a_line_sent_a_byte_at_a_time_is_cut(tmp_path: Path, procs: list[Proc]) -> None:
    options = ("--line-partial-timeout", "1", "--line-idle-timeout", "0")
    with line_hub(tmp_path, procs, *options) as (port, _), ExitStack() as stack:
        slow = stack.enter_context(connect(port, OTHER))
        steady = stack.enter_context(connect(port))
        slow.sendall(b"JOB a slow")
        started = time.monotonic()
        heard, is_open = b"", True
        while is_open and time.monotonic() - started < 6:  # never idle: a byte every 0.25 s
            time.sleep(0.25)
            assert ask(steady, "STATUS 1") == "unknown"  # a whole line at a time: fine
            try:
                slow.sendall(b"w")
            except OSError:
                pass
            data, is_open = drain(slow)
            heard += data
        assert not is_open and time.monotonic() - started < 4
        assert heard == b"ERR line not received whole within 1s\n"
        assert ask(steady, "JOB still served") == "ID 1"


def test_the_slow_line_reply(tmp_path: Path, procs: list[Proc]) -> None:
    with line_hub(tmp_path, procs, "--line-partial-timeout", "0.5") as (port, _), ExitStack() as stack:
        slow = stack.enter_context(connect(port))
        slow.sendall(b"JOB complete\nJOB half a li")
        assert line(slow) == "ID 1"
        assert rest(slow, timeout=5) == b"ERR line not received whole within 0.5s\n"
        fine = _lines_in_pieces(stack, port, [b"JOB in ", b"pieces\nJOB ", b"again\n"], pause=0.3)
        assert fine == ["ID 2", "ID 3"]


def _lines_in_pieces(stack: ExitStack, port: int, pieces: Sequence[bytes], pause: float) -> list[str]:
    """Each line arrives whole within the limit, though over several reads: it is fine."""
    sock = stack.enter_context(connect(port))
    for piece in pieces:
        sock.sendall(piece)
        time.sleep(pause)
    return [line(sock), line(sock)]
