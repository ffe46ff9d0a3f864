"""The hub-wide retention settings (`--result-ttl`, `--failed-ttl`) reach the store: a hub
process forgets finished jobs when they say, on every store kind."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobq import JobState, SyncClient
from tests.helpers import Proc, start_hub, start_worker
from tests.redis_helpers import Namespace, require_redis


def forgotten(client: SyncClient, job_id: int, timeout: float = 10.0) -> float:
    """Seconds until the hub no longer knows the job."""
    start = time.monotonic()
    while client.status(job_id) is not None:
        assert time.monotonic() - start < timeout, f"job {job_id} still kept"
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_failed_and_completed_jobs_are_forgotten_as_the_hub_is_told(
    tmp_path: Path, procs: list[Proc], kind: str
) -> None:
    namespace = None
    if kind == "redis":
        require_redis()
        namespace = Namespace()
    store = namespace.url if namespace is not None else f"sqlite:///{tmp_path / 'jobq.db'}"
    try:
        hub, endpoint = start_hub(tmp_path, store=store, extra=["--failed-ttl", "1", "--result-ttl", "3"])
        procs.append(hub)
        procs.append(start_worker(tmp_path, endpoint, service="bad", handler="fail", concurrency=1))
        procs.append(start_worker(tmp_path, endpoint, service="good", handler="echo", concurrency=1))
        with SyncClient(endpoint) as client:
            failed = client.submit("bad", b"x", max_attempts=1)
            done = client.submit("good", b"x")
            kept = client.submit("good", b"x", result_ttl=60)
            assert client.wait(failed, 20).state is JobState.FAILED
            assert client.wait(done, 20).state is JobState.COMPLETED
            assert client.wait(kept, 20).state is JobState.COMPLETED
            assert forgotten(client, failed) < 2.5  # --failed-ttl 1 (not the default 7 days)
            forgotten(client, done)  # --result-ttl 3
            job = client.status(kept)  # its own result_ttl wins for a completed job
            assert job is not None and job.state is JobState.COMPLETED
    finally:
        if namespace is not None:
            namespace.cleanup()
