"""The ZMTP 3.1 codec on its own: bytes in, events out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobq.protocol import zmtp


def handshake(socket_type: bytes = b"DEALER", identity: bytes = b"") -> bytes:
    return zmtp.greeting(as_server=False) + zmtp.ready(socket_type, identity)


def test_greeting_and_ready_then_messages() -> None:
    parser = zmtp.Parser()
    commands, messages = parser.feed(handshake(identity=b"me") + zmtp.encode_message([b"a", b"", b"c"]))
    assert parser.greeted and parser.peer_version == (3, 1)
    assert [c.name for c in commands] == [b"READY"]
    props = zmtp.parse_properties(commands[0].body)
    assert props == {b"socket-type": b"DEALER", b"identity": b"me"}
    assert messages == [[b"a", b"", b"c"]]


@given(
    messages=st.lists(st.lists(st.binary(max_size=600), min_size=1, max_size=5), min_size=1, max_size=5),
    cut=st.integers(1, 50),
)
def test_any_split_of_the_stream_gives_the_same_messages(messages: list[list[bytes]], cut: int) -> None:
    data = handshake() + zmtp.encode_messages(messages)
    parser = zmtp.Parser()
    got: list[list[bytes]] = []
    for start in range(0, len(data), cut):
        _, done = parser.feed(data[start : start + cut])
        got.extend(done)
    assert got == messages


def test_long_frames_use_eight_byte_sizes() -> None:
    encoded = zmtp.encode_message([b"x" * 300])
    assert encoded[0] == zmtp.LONG and int.from_bytes(encoded[1:9], "big") == 300


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET / HTTP/1.1\r\n", "bad signature"),
        (b"\xff" + bytes(8) + b"\x7f\x02" + bytes(53), "ZMTP 2.x"),
        (b"\xff" + bytes(8) + b"\x7f\x03\x00" + b"PLAIN".ljust(20, b"\x00") + bytes(32), "PLAIN"),
    ],
)
def test_what_is_not_zmtp3_null_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(zmtp.ProtocolViolation, match=reason):
        zmtp.Parser().feed(data)


def test_messages_over_the_limit_are_refused() -> None:
    parser = zmtp.Parser(max_message=1000)
    parser.feed(handshake())
    with pytest.raises(zmtp.ProtocolViolation, match="larger than 1000"):
        parser.feed(zmtp.encode_message([b"x" * 600, b"y" * 600]))


def test_reserved_flags_are_refused() -> None:
    parser = zmtp.Parser()
    parser.feed(handshake())
    with pytest.raises(zmtp.ProtocolViolation, match="reserved"):
        parser.feed(b"\x10\x01a")


def test_a_message_of_countless_empty_frames_is_bounded_too() -> None:
    parser = zmtp.Parser(max_message=1000)
    parser.feed(handshake())
    with pytest.raises(zmtp.ProtocolViolation, match="larger than 1000"):
        parser.feed(b"\x01\x00" * 100)  # empty frames, each with MORE
    parser = zmtp.Parser(max_message=1000)
    parser.feed(handshake())
    one_frame_at_the_limit = [b"x" * 1000]
    assert parser.feed(zmtp.encode_message(one_frame_at_the_limit))[1] == [one_frame_at_the_limit]
