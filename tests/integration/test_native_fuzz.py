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

TAGS = [*native.INBOUND_TAGS, "nonsense"]
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70).filter(lambda i: -(2**63) <= i < 2**64)
    | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, -(2**63), 0, -1])
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
def test_random_frames_never_hurt_the_hub(
    batch: list[list[bytes]], tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING")
    caplog.clear()

    async def scenario() -> None:
        async with running_hub(store=f"sqlite:///{tmp_path / 'fuzz.db'}") as server:
            endpoint = server.door(ZmqRouter).endpoints[0]
            async with Client(endpoint, timeout=5) as good:
                before = await good.submit("svc", b"keep me")
                replies = await send_all(endpoint, batch)
                for reply in replies:  # anything the hub answered is a well-formed JQ1 message
                    assert reply[0] == native.HEADER
                    message = native.decode_outbound(reply[1])
                    assert not isinstance(message, native.Error) or message.code != "internal", message
                assert await good.ping() == "hub"
                job = await good.status(before)
                assert job is not None and job.payload == [] and job.state == "queued"
                after = await good.submit("svc", b"still works")
                assert after > before

    asyncio.run(scenario())
    bad = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL") or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]


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


# ---------------------------------------------------------------- every field at its extremes

_BIG = [2**63, 2**64 - 1, 2**63 - 1, -(2**63), -1, 0]
_FLOATS = [float("nan"), float("inf"), float("-inf"), 1e308, -1.0, 0.0]
_ANY: list[Any] = [None, 2**64 - 1, -(2**63), float("nan"), "", b"\x00", [], {}, [[[[]]]], {"a": {"b": 1}}]


def _base(t: msgspec.inspect.Type) -> Any:
    """A valid value of this type (the other fields of a message being probed)."""
    if isinstance(t, msgspec.inspect.IntType):
        return 1
    if isinstance(t, msgspec.inspect.FloatType):
        return 0.1
    if isinstance(t, msgspec.inspect.StrType):
        return "svc"
    if isinstance(t, msgspec.inspect.BytesType):
        return b"x"
    if isinstance(t, msgspec.inspect.ListType):
        return [_base(t.item_type)]
    if isinstance(t, msgspec.inspect.TupleType):
        return [_base(item) for item in t.item_types]
    if isinstance(t, msgspec.inspect.DictType | msgspec.inspect.AnyType):
        return {}
    if isinstance(t, msgspec.inspect.UnionType):
        return _base(next(x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)))
    if isinstance(t, msgspec.inspect.LiteralType):
        return t.values[0]
    if isinstance(t, msgspec.inspect.EnumType):
        return next(iter(t.cls)).value
    if isinstance(t, msgspec.inspect.StructType):
        return {f.encode_name: _base(f.type) for f in t.fields if f.required}
    return None


def _nasty(t: msgspec.inspect.Type, depth: int = 0) -> list[Any]:
    """Values of (or near) this type at its limits."""
    if isinstance(t, msgspec.inspect.IntType):
        return _BIG
    if isinstance(t, msgspec.inspect.FloatType):
        return _FLOATS + _BIG[:2]
    if isinstance(t, msgspec.inspect.StrType):
        return ["", "x" * 70_000, "\x00\n\r", "é" * 300]
    if isinstance(t, msgspec.inspect.BytesType):
        return [b"", b"\x00" * 300]
    if isinstance(t, msgspec.inspect.ListType):
        return [[], *([v] for v in _nasty(t.item_type, depth + 1)), [_base(t.item_type)] * 2000]
    if isinstance(t, msgspec.inspect.TupleType):
        base = [_base(item) for item in t.item_types]
        return [
            [*base[:i], v, *base[i + 1 :]]
            for i, item in enumerate(t.item_types)
            for v in _nasty(item, depth + 1)
        ]
    if isinstance(t, msgspec.inspect.DictType):
        keys = ["", "a.b", "x" * 300, "hardware.gpu_memory_gb"]
        return [{}, *({k: v} for k in keys for v in _nasty(t.value_type, depth + 1)[:6])]
    if isinstance(t, msgspec.inspect.AnyType):
        return _ANY
    if isinstance(t, msgspec.inspect.UnionType):
        return [v for x in t.types for v in _nasty(x, depth)]
    if isinstance(t, msgspec.inspect.LiteralType):
        return [*t.values, "bogus"]
    if isinstance(t, msgspec.inspect.EnumType):
        return [*(m.value for m in t.cls), "bogus"]
    if isinstance(t, msgspec.inspect.StructType):
        base = _base(t)
        if depth > 1:
            return [base]
        return [{**base, f.encode_name: v} for f in t.fields for v in _nasty(f.type, depth + 1)]
    return [None]


def _extreme_messages() -> list[list[bytes]]:
    out: list[list[bytes]] = []
    for kind in native.Inbound.__args__:
        info = msgspec.inspect.type_info(kind)
        assert isinstance(info, msgspec.inspect.StructType)
        fields = list(info.fields)
        base = [_base(f.type) for f in fields]
        if kind is native.Info:
            base[1] = "explain"
        for i, field in enumerate(fields):
            if field.name == "credential":
                continue
            for value in _nasty(field.type):
                body = [info.tag, *base[:i], value, *base[i + 1 :]]
                out.append([native.HEADER, msgspec.msgpack.encode(body)])
    return out


async def test_every_field_at_its_extremes_is_answered_without_internal_errors(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Ids, tokens, offsets past 2**63, NaN and infinite numbers, huge and empty strings, odd
    nesting, in every field of every message: answered (``invalid`` and the like), never
    ``internal``, never a traceback in the hub's log (issue 12, finding 8)."""
    caplog.set_level("WARNING")
    batch = _extreme_messages()
    assert len(batch) > 500
    async with running_hub(store=f"sqlite:///{tmp_path / 'jobq.db'}", max_wait=1.0) as server:
        endpoint = server.door(ZmqRouter).endpoints[0]
        async with Client(endpoint, timeout=5) as good:
            await good.submit("svc", b"a job with id 1")
            replies = await send_all(endpoint, batch)
            codes = {}
            for reply in replies:
                message = native.decode_outbound(reply[1])
                if isinstance(message, native.Error):
                    codes[message.code] = message.message
            assert "internal" not in codes, codes["internal"]
            assert await good.ping() == "hub"
    bad = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL") or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]
