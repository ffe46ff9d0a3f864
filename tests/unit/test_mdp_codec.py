"""The Majordomo codec, frames in and frames out, no sockets (jobq.protocol.mdp)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobq.protocol import mdp
from jobq.protocol.mdp import Framing

frames_st = st.lists(st.binary(max_size=64), max_size=6)
framings = st.sampled_from(
    [
        Framing(1, True),
        Framing(1, False),
        Framing(2, False),
        Framing(2, True),
        Framing(2, True, majortomo=True),
        Framing(2, False, majortomo=True),
    ]
)


# ---------------------------------------------------------------- what peers send, as the RFCs write it


def test_rfc7_client_request_as_a_req_socket_sends_it() -> None:
    msg = mdp.parse([b"", b"MDPC01", b"echo", b"a", b"", b"\xff"])
    assert msg == mdp.Request(Framing(1, True), b"echo", [b"a", b"", b"\xff"])


def test_rfc18_client_request_without_leading_empty_frame() -> None:
    msg = mdp.parse([b"MDPC02", b"\x01", b"echo", b"body"])
    assert msg == mdp.Request(Framing(2, False), b"echo", [b"body"])


def test_majortomo_client_request_numbers_request_2() -> None:
    msg = mdp.parse([b"", b"MDPC02", b"\x02", b"echo", b"body"])
    assert msg == mdp.Request(Framing(2, True, majortomo=True), b"echo", [b"body"])


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([b"", b"MDPW01", b"\x01", b"svc"], mdp.Ready(Framing(1, True), b"svc")),
        ([b"", b"MDPW01", b"\x03", b"addr", b"", b"r"], mdp.Reply(Framing(1, True), b"addr", [b"r"])),
        ([b"", b"MDPW01", b"\x04"], mdp.Heartbeat(Framing(1, True))),
        ([b"", b"MDPW01", b"\x05"], mdp.Disconnect(Framing(1, True))),
        ([b"MDPW02", b"\x01", b"svc"], mdp.Ready(Framing(2, False), b"svc")),
        ([b"MDPW02", b"\x03", b"a", b"", b"p"], mdp.Reply(Framing(2, False), b"a", [b"p"], final=False)),
        ([b"MDPW02", b"\x04", b"a", b"", b"f"], mdp.Reply(Framing(2, False), b"a", [b"f"])),
        ([b"MDPW02", b"\x05"], mdp.Heartbeat(Framing(2, False))),
        ([b"MDPW02", b"\x06"], mdp.Disconnect(Framing(2, False))),
        ([b"", b"MDPW02", b"\x04", b"a", b""], mdp.Reply(Framing(2, True), b"a", [])),
    ],
)
def test_worker_commands(frames: list[bytes], expected: mdp.Message) -> None:
    assert mdp.parse(frames) == expected


@pytest.mark.parametrize(
    "frames",
    [
        [b"MDPC01"],  # no service
        [b"", b"MDPC02"],  # no command
        [b"MDPC02", b"\x03", b"svc"],  # a FINAL sent by a client
        [b"MDPC02", b"\x01"],  # no service
        [b"", b"MDPW01"],  # no command
        [b"", b"MDPW01", b"\x02", b"a", b"", b"b"],  # REQUEST from a worker
        [b"", b"MDPW01", b"\x06"],  # not an MDP/0.1 command
        [b"", b"MDPW01", b"\x01"],  # READY without a service
        [b"", b"MDPW01", b"\x01", b""],  # READY with an empty service
        [b"", b"MDPW01", b"\x03", b"addr"],  # REPLY without the empty frame
        [b"", b"MDPW01", b"\x03", b"addr", b"x", b"body"],  # REPLY with a non-empty delimiter
        [b"MDPW02", b"\x07"],
        [b"MDPW02", b""],
    ],
)
def test_invalid_mdp_messages_are_recognised_as_invalid(frames: list[bytes]) -> None:
    msg = mdp.parse(frames)
    assert isinstance(msg, mdp.Invalid)
    assert msg.worker == (b"MDPW01" in frames or b"MDPW02" in frames)


@pytest.mark.parametrize(
    "frames", [[], [b""], [b"", b""], [b"JQ1", b"x"], [b"mdpc01"], [b"", b"", b"MDPC01"], [b"x", b"MDPC01"]]
)
def test_not_majordomo(frames: list[bytes]) -> None:
    assert mdp.parse(frames) is None


# ---------------------------------------------------------------- what the broker sends


def test_replies_in_each_dialect() -> None:
    body = [b"x", b""]
    assert mdp.reply_frames(Framing(1, True), b"s", body) == [b"", b"MDPC01", b"s", b"x", b""]
    assert mdp.reply_frames(Framing(1, False), b"s", body) == [b"MDPC01", b"s", b"x", b""]
    assert mdp.reply_frames(Framing(1, True), b"s", body, final=False) is None
    assert mdp.reply_frames(Framing(2, False), b"s", body) == [b"MDPC02", b"\x03", b"s", b"x", b""]
    assert mdp.reply_frames(Framing(2, False), b"s", body, final=False) == [
        b"MDPC02",
        b"\x02",
        b"s",
        b"x",
        b"",
    ]
    mt = Framing(2, True, majortomo=True)
    assert mdp.reply_frames(mt, b"s", body) == [b"", b"MDPC02", b"\x04", b"x", b""]
    assert mdp.reply_frames(mt, b"s", body, final=False) == [b"", b"MDPC02", b"\x03", b"x", b""]


def test_worker_bound_messages() -> None:
    assert mdp.request_frames(Framing(1, True), b"a", [b"b"]) == [b"", b"MDPW01", b"\x02", b"a", b"", b"b"]
    assert mdp.request_frames(Framing(2, False), b"a", []) == [b"MDPW02", b"\x02", b"a", b""]
    assert mdp.heartbeat_frames(Framing(1, True)) == [b"", b"MDPW01", b"\x04"]
    assert mdp.heartbeat_frames(Framing(2, False)) == [b"MDPW02", b"\x05"]
    assert mdp.disconnect_frames(Framing(1, False)) == [b"MDPW01", b"\x05"]
    assert mdp.disconnect_frames(Framing(2, True)) == [b"", b"MDPW02", b"\x06"]


# ---------------------------------------------------------------- properties


@given(framings, st.binary(min_size=0, max_size=40), frames_st)
def test_client_requests_round_trip(framing: Framing, service: bytes, body: list[bytes]) -> None:
    if framing.version == 1:
        framing = Framing(1, framing.lead)
    assert mdp.parse(mdp.client_request_frames(framing, service, body)) == mdp.Request(framing, service, body)


@given(framings, st.binary(max_size=16), frames_st, st.booleans())
def test_worker_replies_round_trip(framing: Framing, address: bytes, body: list[bytes], final: bool) -> None:
    framing = Framing(framing.version, framing.lead)
    if framing.version == 1:
        final = True
    frames = mdp.worker_reply_frames(framing, address, body, final=final)
    assert mdp.parse(frames) == mdp.Reply(framing, address, body, final=final)


@given(st.lists(st.binary(max_size=12), max_size=8))
def test_anything_parses_to_a_message_or_none(frames: list[bytes]) -> None:
    msg = mdp.parse(frames)
    assert msg is None or isinstance(
        msg, mdp.Request | mdp.Ready | mdp.Reply | mdp.Heartbeat | mdp.Disconnect | mdp.Invalid
    )


@given(
    st.sampled_from([b"MDPC01", b"MDPW01", b"MDPC02", b"MDPW02"]),
    st.booleans(),
    st.lists(st.binary(max_size=3), max_size=6),
)
def test_anything_after_a_header_is_ours(header: bytes, lead: bool, rest: list[bytes]) -> None:
    msg = mdp.parse([b""] * lead + [header, *rest])
    assert msg is not None
    assert msg.framing.lead == lead
