"""Bad input at the native door: random frames never crash the hub or disturb other clients."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
import zmq
import zmq.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobq import Client
from jobq.core.model import JobSpec
from jobq.doors.zmq.router import ZmqRouter
from jobq.errors import InvalidRequest, PayloadTooLarge
from jobq.protocol import native
from tests.helpers import running_hub

TAGS = [
    "submit",
    "get",
    "wait",
    "cancel",
    "retry",
    "list",
    "subscribe",
    "unsubscribe",
    "info",
    "ping",
    "hello",
    "hb",
    "slots",
    "done",
    "fail",
    "progress",
    "release",
    "bye",
    "nonsense",
]
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70).filter(lambda i: -(2**63) <= i < 2**64)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda tag, rest: msgspec.msgpack.encode([tag, *rest]),
        st.sampled_from(TAGS),
        st.lists(msgpack_values, max_size=6),
    ),
)
messages = st.one_of(
    st.lists(st.binary(max_size=50), min_size=0, max_size=4),
    st.builds(lambda body: [native.HEADER, body], bodies),
    st.builds(
        lambda body, extra: [native.HEADER, body, *extra],
        bodies,
        st.lists(st.binary(max_size=10), min_size=1, max_size=3),
    ),
)


async def send_all(endpoint: str, batch: list[list[bytes]]) -> list[Any]:
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    replies = []
    try:
        for frames in batch:
            if frames:
                await sock.send_multipart(frames)
        while await sock.poll(200):
            replies.append(await sock.recv_multipart())
    finally:
        sock.close()
        ctx.term()
    return replies


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(messages, min_size=1, max_size=8))
def test_random_frames_never_hurt_the_hub(batch: list[list[bytes]]) -> None:
    async def scenario() -> None:
        async with running_hub() as server:
            endpoint = server.door(ZmqRouter).endpoints[0]
            async with Client(endpoint, timeout=5) as good:
                before = await good.submit("svc", b"keep me")
                replies = await send_all(endpoint, batch)
                for reply in replies:  # anything the hub answered is a well-formed JQ1 message
                    assert reply[0] == native.HEADER
                    native.decode_outbound(reply[1])
                assert await good.ping() == "hub"
                job = await good.status(before)
                assert job is not None and job.payload == [] and job.state == "queued"
                after = await good.submit("svc", b"still works")
                assert after > before

    asyncio.run(scenario())


async def test_malformed_messages_get_an_error_reply() -> None:
    async with running_hub() as server:
        endpoint = server.door(ZmqRouter).endpoints[0]
        replies = await send_all(
            endpoint,
            [
                [native.HEADER, b"\xc1garbage"],
                [native.HEADER, msgspec.msgpack.encode(["submit", "not-an-int", []])],
                [native.HEADER, msgspec.msgpack.encode(["submit", 7, [{"service": ""}]])],
                [native.HEADER, msgspec.msgpack.encode(["submit", 8, [{"service": "x", "bogus": 1}]])],
                [native.HEADER, b"a", b"b"],
            ],
        )
        errors = [native.decode_outbound(r[1]) for r in replies]
        assert all(isinstance(e, native.Error) for e in errors)
        assert {e.code for e in errors if isinstance(e, native.Error)} == {"invalid"}
        assert any(isinstance(e, native.Error) and e.rid == 7 and "service" in e.message for e in errors)


async def test_oversized_payload_is_refused_with_a_reason() -> None:
    async with running_hub(max_payload=1000) as server:
        endpoint = server.door(ZmqRouter).endpoints[0]
        async with Client(endpoint) as client:
            with pytest.raises(PayloadTooLarge, match="limit is 1000"):
                await client.submit("svc", b"x" * 1001)
            assert await client.submit("svc", b"x" * 1000) > 0


async def test_a_refused_spec_fails_alone_in_its_submit() -> None:
    async with running_hub() as server:
        endpoint = server.door(ZmqRouter).endpoints[0]
        specs = [{"service": "a"}, {"service": "b", "max_attempts": 0}, {"service": "c"}]
        replies = await send_all(
            endpoint,
            [
                [native.HEADER, msgspec.msgpack.encode(["submit", 1, specs])],
                [native.HEADER, msgspec.msgpack.encode(["submit", 2, [{"service": "d"}]])],
            ],
        )
        by_rid = {msgspec.msgpack.decode(body)[1]: body for _, body in replies}
        reply = native.decode_outbound(by_rid[1])
        assert isinstance(reply, native.Accepted)
        assert [state for _, state, _ in reply.jobs] == ["queued", "queued"]
        [(index, code, message)] = reply.errors
        assert (index, code) == (1, "invalid") and "max_attempts" in message
        # Without a refusal the reply has no errors field at all: [accepted, rid, jobs].
        assert len(msgspec.msgpack.decode(by_rid[2])) == 3
        async with Client(endpoint) as client:
            jobs = await client.jobs()
            assert sorted(job.service for job in jobs) == ["a", "c", "d"]
            with pytest.raises(InvalidRequest, match="max_attempts"):
                await client.submit_many([JobSpec(service="e"), JobSpec(service="f", max_attempts=0)])
