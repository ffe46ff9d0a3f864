"""The HTTP door's translations, without a socket: bodies → JobSpec, frames ↔ JSON, the worker
SDK's WebSocket codec."""

from __future__ import annotations

import base64

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobq.core.model import Assignment
from jobq.doors.http import models as m
from jobq.protocol import native as jqp
from jobq.worker import ws_transport as wst


def test_emprops_requirements_map_onto_the_spec() -> None:
    body = b"""{"type": "svc", "payload": {"a": 1}, "customer_id": "c",
        "requirements": {"hardware": {"gpu_memory_gb": 8}, "customer_isolation": "loose",
                         "timeout_minutes": 1.5, "service_type": "svc", "models": ["m1"]},
        "requires": {"performance_tier": "gold"}, "run_at": "2030-01-01T00:00:00Z"}"""
    spec = m.spec_of(m.decode_job_request(body), 1000)
    assert spec.service == "svc" and spec.payload == [b'{"a": 1}'] and spec.content_type == "application/json"
    assert spec.isolation == "loose" and spec.timeout == 90.0 and spec.customer_id == "c"
    assert spec.requires == {"hardware": {"gpu_memory_gb": 8.0}, "models": ["m1"], "performance_tier": "gold"}
    assert spec.run_at == 1893456000.0


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (b"{}", ["type", "payload"]),
        (b'{"payload": 1, "a": 1, "b": 2}', ["type", "a", "b"]),
        (
            b'{"type": "x", "payload": 1, "requirements": {"hardware": {"ram_gb": "lots"}}}',
            ["requirements.hardware.ram_gb"],
        ),
        (
            b'{"type": "x", "payload": 1, "isolation": "none", "requirements": {"customer_isolation": "strict"}}',
            ["isolation"],
        ),
    ],
)
def test_errors_name_the_fields(body: bytes, fields: list[str]) -> None:
    with pytest.raises(m.FieldError) as caught:
        m.spec_of(m.decode_job_request(body), 1000)
    assert caught.value.fields == fields


@given(st.lists(st.binary(max_size=50), max_size=4))
def test_frames_survive_the_json_wire(frames: list[bytes]) -> None:
    value, encoding = m.frames_to_wire(frames)
    wire = msgspec.json.decode(msgspec.json.encode({"v": value}))["v"]
    back, _ = m.frames_from_wire(wire, encoding)
    if encoding == "json":  # the JSON text may be re-spaced, never its value
        assert [msgspec.json.decode(f) for f in back] == [msgspec.json.decode(f) for f in frames]
    else:
        assert back == frames
    raw, raw_encoding = m.raw_frames(frames) if frames else ([], "base64")
    assert m.frames_from_wire(raw, raw_encoding)[0] == frames


def test_worker_sdk_codec_round_trips() -> None:
    hello = wst.outbound(jqp.Hello(worker_id="w", services=["s"], slots=3, held=[(1, 2)]))
    assert hello is not None and hello["type"] == "register_worker" and hello["payload_format"] == "raw"
    done = wst.outbound(jqp.Done(results=[(5, 1, [b"\x00\xff", b""])]))
    assert done == {
        "type": "complete_jobs",
        "results": [{"job_id": 5, "token": 1, "result": ["AP8=", ""], "result_encoding": "base64"}],
    }
    assigned = wst.inbound(
        {
            "type": "job_assigned",
            "job_id": 5,
            "token": 2,
            "service": "s",
            "payload": base64.b64encode(b"\x01\x02").decode(),
            "payload_encoding": "base64",
            "attempt": 2,
        }
    )
    assert assigned == jqp.Assign(
        jobs=[Assignment(id=5, token=2, service="s", payload=[b"\x01\x02"], attempt=2)]
    )
    assert wst.inbound({"type": "cancel_job", "job_id": 5}) == jqp.CancelJobs(ids=[5])
    assert isinstance(wst.inbound({"type": "register_required", "reason": "x"}), jqp.Reconnect)
    assert wst.worker_url("http://h:8080") == "ws://h:8080/ws/worker"
    assert wst.worker_url("ws://h:8080/custom") == "ws://h:8080/custom"
