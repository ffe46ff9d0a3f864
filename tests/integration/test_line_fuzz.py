"""Random bytes into both kinds of listener of a real hub process: every reply is one of the
protocols' replies, the hub stays up, and a job of another service is left untouched."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobq.client.client import Client
from jobq.core.model import Job
from jobq.core.states import JobState
from tests.helpers import free_port, start_hub

REPLY = re.compile(
    r"(ID \d+|JOB_ID \d+|JOB \d+ .*|\d+ .*|EMPTY|NOJOB|OK|ERR|ERR line too long .*|ERR line is not valid UTF-8"
    r"|waiting|running|completed|failed|cancelled|unknown)"
)

FRAGMENTS = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"JOB fuzzed\n",
            b"SUBMIT fuzzed\n",
            b"FETCH\n",
            b"REQUEST\n",
            b"DONE 1\n",
            b"ACK 1\n",
            b"FAIL 1\n",
            b"STATUS 1\n",
            b"STATUS 99999999999999999999999999\n",
            b"DONE 18446744073709551616\n",
            # Ids at and past the stores' signed 64-bit limit (issue 12, finding 8).
            b"STATUS 9223372036854775807\n",
            b"STATUS 9223372036854775808\n",
            b"DONE 9223372036854775807 result\n",
            b"ACK 9223372036854775808\n",
            b"FAIL 18446744073709551615 oops\n",
            b"STATUS -9223372036854775808\n",
            b"DONE 0\n",
            b"QUIT\n",
            b"\r\n",
            b"\n",
            b"\xff\xfe\n",
            b"job\n",
            b"JOB \x00\x01\x02\n",
            b"x" * 5000,
        ]
    ),
)


def _exchange(address: tuple[str, int], data: bytes) -> bytes | None:
    """Send everything, say we are done, read until the hub closes; None if the hub cut us off
    early (QUIT or an over-long line) so the connection was reset."""
    with socket.create_connection(address, timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return None
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            return None
        return out


def test_random_bytes_into_the_listeners(tmp_path: Path) -> None:
    plain, compat = free_port(), free_port()
    hub, endpoint = start_hub(
        tmp_path,
        extra=[
            "--line",
            f"127.0.0.1:{plain}",
            "--line",
            f"127.0.0.1:{compat}/dsjq-compat",
            "--line-max-line",
            "4096",
        ],
    )
    try:
        sentinel = asyncio.run(_submit_sentinel(endpoint))

        @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.lists(FRAGMENTS, max_size=12), st.booleans())
        def fuzz(fragments: list[bytes], to_compat: bool) -> None:
            out = _exchange(("127.0.0.1", compat if to_compat else plain), b"".join(fragments))
            assert hub.alive(), hub.output()
            if out is None:
                return
            assert out == b"" or out.endswith(b"\n"), out
            for line in out.split(b"\n")[:-1]:
                assert REPLY.fullmatch(line.decode()), line

        fuzz()
        assert _exchange(("127.0.0.1", plain), b"JOB after the storm\n") is not None
        job = asyncio.run(_get(endpoint, sentinel))
        assert job.state is JobState.QUEUED and job.payload == [b"keep me"] and job.attempts == 0
        assert hub.alive()
        assert "Traceback" not in hub.output()
        assert "internal error" not in hub.output()
        assert "level=error" not in hub.output()
    finally:
        hub.close()


async def _submit_sentinel(endpoint: str) -> int:
    async with Client(endpoint) as client:
        return await client.submit("other", "keep me")


async def _get(endpoint: str, job_id: int) -> Job:
    async with Client(endpoint) as client:
        job = await client.status(job_id, payload=True)
    assert job is not None
    return job
