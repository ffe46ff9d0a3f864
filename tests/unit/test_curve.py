"""CurveZMQ's codec on its own: a client's and a server's state machines wired together in memory."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import nacl.utils
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.public import Box, PrivateKey, PublicKey

from jobq.protocol import curve, zmtp

SERVER_PUBLIC, SERVER_SECRET = curve.generate_keypair()
CLIENT_PUBLIC, CLIENT_SECRET = curve.generate_keypair()
CLIENT_METADATA = zmtp.properties(b"DEALER", b"me")
SERVER_METADATA = zmtp.properties(b"ROUTER")


def commands(data: bytes) -> list[zmtp.Command]:
    """What a CURVE peer's parser makes of ``data`` (after the greeting)."""
    parser = zmtp.Parser(mechanism=zmtp.MECHANISM_CURVE, commands_only=True, max_frame=1 << 24)
    found, messages = parser.feed(zmtp.greeting(False, zmtp.MECHANISM_CURVE) + data)
    assert not messages and not parser._buffer
    return found


def one(data: bytes) -> zmtp.Command:
    [command] = commands(data)
    return command


@dataclass
class Pair:
    client: curve.ClientHandshake
    server: curve.ServerHandshake
    sizes: dict[bytes, int]

    @property
    def client_codec(self) -> curve.MessageCodec:
        assert self.client.codec is not None
        return self.client.codec

    @property
    def server_codec(self) -> curve.MessageCodec:
        assert self.server.codec is not None
        return self.server.codec


def handshake(max_message: int = 1 << 20) -> Pair:
    client = curve.ClientHandshake(SERVER_PUBLIC, CLIENT_SECRET, CLIENT_METADATA, max_message=max_message)
    server = curve.ServerHandshake(SERVER_SECRET, max_message=max_message)
    sizes: dict[bytes, int] = {}
    hello = one(client.hello())
    welcome = one(server.receive(hello))
    initiate = one(client.receive(welcome))
    assert server.receive(initiate) == b""
    ready = one(server.accept(SERVER_METADATA))
    assert client.receive(ready) == b""
    for command in (hello, welcome, initiate, ready):
        sizes[command.name] = 1 + len(command.name) + len(command.body)
    return Pair(client, server, sizes)


def test_keys_are_z85_text_or_raw_bytes() -> None:
    public, secret = zmq.curve_keypair()
    raw = curve.decode_key(public)
    assert len(raw) == 32
    assert curve.decode_key(public.decode()) == raw == curve.decode_key(raw)
    assert curve.encode_key(raw) == public.decode()
    assert curve.public_key_for(secret) == raw
    assert curve.decode_key(zmq.curve_public(CLIENT_SECRET.encode())) == curve.decode_key(CLIENT_PUBLIC)
    for bad in ("#" * 40, "short", b"\x00" * 31, "~" * 40):
        with pytest.raises(ValueError, match="Z85"):
            curve.decode_key(bad)


def test_the_handshake_gives_each_side_the_other_and_commands_have_rfc_26_sizes() -> None:
    pair = handshake()
    assert pair.server.client_key == curve.decode_key(CLIENT_PUBLIC)
    assert pair.server.peer_properties == {b"socket-type": b"DEALER", b"identity": b"me"}
    assert pair.client.peer_properties == {b"socket-type": b"ROUTER"}
    assert pair.sizes == {
        b"HELLO": 200,
        b"WELCOME": 168,
        b"INITIATE": 257 + len(CLIENT_METADATA),
        b"READY": 30 + len(SERVER_METADATA),
    }


def test_hello_is_laid_out_as_rfc_26_says() -> None:
    client = curve.ClientHandshake(SERVER_PUBLIC, CLIENT_SECRET, b"")
    data = client.hello()
    assert data[:2] == bytes([zmtp.COMMAND, 200])  # a short command frame
    hello = one(data).body
    assert hello[:2] == b"\x01\x00" and hello[2:74] == bytes(72)
    client_short = hello[74:106]
    assert hello[106:114] == struct.pack(">Q", 1)  # the first short nonce
    box = Box(PrivateKey(curve.decode_key(SERVER_SECRET)), PublicKey(client_short))
    assert box.decrypt(hello[114:], b"CurveZMQHELLO---" + hello[106:114]) == bytes(64)


def test_messages_go_both_ways_multipart_and_in_order() -> None:
    pair = handshake()
    sent = [[b"JQ1", b"", bytes(range(256)), b"x" * 70_000], [b""], [b"one"]]
    wire = b"".join(pair.client_codec.encode(m) for m in sent)
    assert pair.server_codec.unbox(commands(wire)) == (sent, [])
    back = pair.server_codec.encode([b"reply", b"y" * 300])
    assert pair.client_codec.unbox(commands(back)) == ([[b"reply", b"y" * 300]], [])


def test_message_frames_carry_no_zmtp_command_flag_and_nonces_count_up() -> None:
    pair = handshake()
    data = pair.client_codec.encode([b"a", b"b"])
    assert data[0] == 0  # as libzmq sends them: neither MORE nor COMMAND on the frame
    nonces = [struct.unpack(">Q", c.body[:8])[0] for c in commands(data)]
    assert nonces == [3, 4]  # HELLO was 1, INITIATE 2
    server_data = pair.server_codec.encode([b"c"])
    assert [struct.unpack(">Q", c.body[:8])[0] for c in commands(server_data)] == [2]  # READY was 1


def test_a_frame_split_anywhere_is_put_back_together() -> None:
    pair = handshake()
    data = pair.client_codec.encode([b"a" * 300, b"b"])
    parser = zmtp.Parser(mechanism=zmtp.MECHANISM_CURVE, commands_only=True, max_frame=1 << 20)
    got: list[zmtp.Command] = []
    stream = zmtp.greeting(False, zmtp.MECHANISM_CURVE) + data
    for start in range(0, len(stream), 7):
        got += parser.feed(stream[start : start + 7])[0]
    assert pair.server_codec.unbox(got) == ([[b"a" * 300, b"b"]], [])


def test_a_tampered_box_is_refused() -> None:
    pair = handshake()
    [command] = commands(pair.client_codec.encode([b"pay 10 euros"]))
    body = bytearray(command.body)
    body[-1] ^= 0x01
    with pytest.raises(curve.CurveError, match="does not open"):
        pair.server_codec.unbox([zmtp.Command(b"MESSAGE", bytes(body))])


def test_a_replayed_or_reordered_message_is_refused() -> None:
    pair = handshake()
    first, second = commands(pair.client_codec.encode([b"a"]) + pair.client_codec.encode([b"b"]))
    assert pair.server_codec.unbox([first]) == ([[b"a"]], [])
    with pytest.raises(curve.CurveError, match="nonce does not grow"):
        pair.server_codec.unbox([first])
    other = handshake()
    first, second = commands(other.client_codec.encode([b"a"]) + other.client_codec.encode([b"b"]))
    other.server_codec.unbox([second])
    with pytest.raises(curve.CurveError, match="nonce does not grow"):
        other.server_codec.unbox([first])


def test_a_box_from_the_other_direction_is_refused() -> None:
    pair = handshake()
    # The server's own MESSAGE, reflected back at it: another nonce prefix, so it does not open.
    [reflected] = commands(pair.server_codec.encode([b"x"]) + pair.server_codec.encode([b"y"]))[1:]
    with pytest.raises(curve.CurveError, match="does not open"):
        pair.server_codec.unbox([reflected])


def test_a_client_with_the_wrong_server_key_fails() -> None:
    other_public, _ = curve.generate_keypair()
    client = curve.ClientHandshake(other_public, CLIENT_SECRET, CLIENT_METADATA)
    server = curve.ServerHandshake(SERVER_SECRET)
    with pytest.raises(curve.CurveError, match="wrong server key"):
        server.receive(one(client.hello()))


def test_a_tampered_welcome_fails_the_client() -> None:
    client = curve.ClientHandshake(SERVER_PUBLIC, CLIENT_SECRET, CLIENT_METADATA)
    server = curve.ServerHandshake(SERVER_SECRET)
    welcome = one(server.receive(one(client.hello())))
    forged = zmtp.Command(b"WELCOME", welcome.body[:-1] + bytes([welcome.body[-1] ^ 1]))
    with pytest.raises(curve.CurveError, match="not the server we trust"):
        client.receive(forged)


def test_a_refused_client_hears_why() -> None:
    client = curve.ClientHandshake(SERVER_PUBLIC, CLIENT_SECRET, CLIENT_METADATA)
    server = curve.ServerHandshake(SERVER_SECRET)
    client.receive(one(server.receive(one(client.hello()))))
    with pytest.raises(curve.Refused, match="400") as refused:
        client.receive(one(server.refuse()))
    assert refused.value.reason == b"400"


def test_a_cookie_is_good_for_its_own_connection_only() -> None:
    client_a = curve.ClientHandshake(SERVER_PUBLIC, CLIENT_SECRET, CLIENT_METADATA)
    server_a = curve.ServerHandshake(SERVER_SECRET)
    initiate_a = one(client_a.receive(one(server_a.receive(one(client_a.hello())))))
    client_b = curve.ClientHandshake(SERVER_PUBLIC, CLIENT_SECRET, CLIENT_METADATA)
    server_b = curve.ServerHandshake(SERVER_SECRET)
    server_b.receive(one(client_b.hello()))
    with pytest.raises(curve.CurveError, match="does not open"):
        server_b.receive(initiate_a)


def test_a_vouch_for_another_server_is_refused() -> None:
    """A client's vouch names the server it meant: one relayed to another server fails."""
    client_short = PrivateKey.generate()
    client_secret = PrivateKey(curve.decode_key(CLIENT_SECRET))
    server_public = PublicKey(curve.decode_key(SERVER_PUBLIC))
    hello_box = Box(client_short, server_public)
    hello = (
        b"\x01\x00"
        + bytes(72)
        + bytes(client_short.public_key)
        + struct.pack(">Q", 1)
        + hello_box.encrypt(bytes(64), b"CurveZMQHELLO---" + struct.pack(">Q", 1)).ciphertext
    )
    server = curve.ServerHandshake(SERVER_SECRET)
    welcome = one(server.receive(zmtp.Command(b"HELLO", hello))).body
    plain = hello_box.decrypt(welcome[16:], b"WELCOME-" + welcome[:16])
    server_short, cookie = PublicKey(plain[:32]), plain[32:]
    vouch_nonce = nacl.utils.random(16)
    elsewhere = curve.decode_key(curve.generate_keypair()[0])
    vouch = Box(client_secret, server_short).encrypt(
        bytes(client_short.public_key) + elsewhere, b"VOUCH---" + vouch_nonce
    )
    inner = bytes(client_secret.public_key) + vouch_nonce + vouch.ciphertext
    nonce = struct.pack(">Q", 2)
    box = Box(client_short, server_short).encrypt(inner, b"CurveZMQINITIATE" + nonce).ciphertext
    with pytest.raises(curve.CurveError, match="vouch"):
        server.receive(zmtp.Command(b"INITIATE", cookie + nonce + box))


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (zmtp.Command(b"INITIATE", bytes(300)), "does not expect"),
        (zmtp.Command(b"MESSAGE", bytes(40)), "does not expect"),
        (zmtp.Command(b"HELLO", bytes(193)), "malformed HELLO"),
        (zmtp.Command(b"HELLO", b"\x02\x00" + bytes(192)), "malformed HELLO"),
        (zmtp.Command(b"HELLO", b"\x01\x00" + bytes(192)), "does not open"),
    ],
)
def test_a_server_refuses_what_the_handshake_does_not_expect(command: zmtp.Command, reason: str) -> None:
    with pytest.raises(curve.CurveError, match=reason):
        curve.ServerHandshake(SERVER_SECRET).receive(command)


def test_a_second_hello_or_a_short_initiate_is_refused() -> None:
    client = curve.ClientHandshake(SERVER_PUBLIC, CLIENT_SECRET, CLIENT_METADATA)
    server = curve.ServerHandshake(SERVER_SECRET)
    hello = one(client.hello())
    server.receive(hello)
    with pytest.raises(curve.CurveError, match="does not expect"):
        server.receive(hello)
    server = curve.ServerHandshake(SERVER_SECRET)
    server.receive(hello)
    with pytest.raises(curve.CurveError, match="malformed INITIATE"):
        server.receive(zmtp.Command(b"INITIATE", bytes(247)))


def test_boxed_commands_come_out_apart_from_messages() -> None:
    pair = handshake()
    data = pair.client_codec.encode_command(b"PING", b"\x00\x0ahi") + pair.client_codec.encode([b"m"])
    messages, boxed = pair.server_codec.unbox(commands(data))
    assert messages == [[b"m"]]
    assert boxed == [zmtp.Command(b"PING", b"\x00\x0ahi")]


def test_messages_over_the_limit_are_refused() -> None:
    pair = handshake(max_message=1000)
    data = pair.client_codec.encode([b"x" * 600, b"y" * 600])
    with pytest.raises(curve.CurveError, match="larger than 1000"):
        pair.server_codec.unbox(commands(data))


def test_a_message_of_countless_empty_frames_is_bounded_too() -> None:
    pair = handshake(max_message=1000)
    data = pair.client_codec.encode([b""] * 100)
    with pytest.raises(curve.CurveError, match="larger than 1000"):
        pair.server_codec.unbox(commands(data))
    pair = handshake(max_message=1000)
    assert pair.server_codec.unbox(commands(pair.client_codec.encode([b"x" * 1000]))) == ([[b"x" * 1000]], [])


def test_the_parser_reads_a_curve_stream_as_commands_within_bounds() -> None:
    null_peer = zmtp.greeting(False) + zmtp.ready(b"DEALER")
    with pytest.raises(zmtp.ProtocolViolation, match="NULL"):
        zmtp.Parser(mechanism=zmtp.MECHANISM_CURVE, commands_only=True).feed(null_peer)
    parser = zmtp.Parser(mechanism=zmtp.MECHANISM_CURVE, commands_only=True, one_command=True, max_frame=300)
    two = zmtp.encode_command(b"HELLO", bytes(194)) + zmtp.encode_command(b"HELLO", bytes(10))
    found, _ = parser.feed(zmtp.greeting(False, zmtp.MECHANISM_CURVE) + two)
    assert [len(c.body) for c in found] == [194]
    assert [len(c.body) for c in parser.feed(b"")[0]] == [10]
    with pytest.raises(zmtp.ProtocolViolation, match="larger than 300"):
        parser.feed(zmtp.encode_command(b"INITIATE", bytes(400))[:20])  # refused on its header alone
    for broken in (b"\x04\x00", b"\x04\x03\x08IN"):
        fresh = zmtp.Parser(mechanism=zmtp.MECHANISM_CURVE, commands_only=True)
        with pytest.raises(zmtp.ProtocolViolation, match="whole name"):
            fresh.feed(zmtp.greeting(False, zmtp.MECHANISM_CURVE) + broken)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from([b"HELLO", b"INITIATE", b"WELCOME", b"READY", b"ERROR", b"MESSAGE", b""]),
    body=st.one_of(st.binary(max_size=400), st.integers(0, 400).map(bytes)),
    stage=st.integers(0, 2),
)
def test_garbage_anywhere_only_ever_fails_as_a_protocol_violation(
    name: bytes, body: bytes, stage: int
) -> None:
    client = curve.ClientHandshake(SERVER_PUBLIC, CLIENT_SECRET, CLIENT_METADATA)
    server = curve.ServerHandshake(SERVER_SECRET)
    garbage = zmtp.Command(name, body)
    try:
        if stage == 0:
            server.receive(garbage)
        elif stage == 1:
            server.receive(one(client.hello()))
            try:
                client.receive(garbage)
            finally:
                server.receive(garbage)
        else:
            pair = handshake()
            pair.server_codec.unbox([garbage])
            pair.client_codec.unbox([garbage])
    except zmtp.ProtocolViolation:
        pass
