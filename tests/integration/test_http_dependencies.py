"""Dependencies over REST (``POST /api/jobs`` with ``after``, ``after_policy``, ``ref``): a real
hub process with its HTTP door, no worker (the dependents wait)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.http_helpers import start_http_hub


@pytest.fixture
def api(tmp_path: Path) -> Iterator[httpx.Client]:
    hub = start_http_hub(tmp_path)
    try:
        with httpx.Client(base_url=hub.url, timeout=20) as client:
            yield client
    finally:
        hub.proc.close()


def test_dependents_over_rest(api: httpx.Client) -> None:
    first = api.post("/api/jobs", json={"type": "echo", "payload": "a"}).json()["job_id"]
    made = api.post(
        "/api/jobs", json={"type": "echo", "payload": "b", "after": [first], "after_policy": "always"}
    )
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "waiting" and made.json()["queue_position"] is None
    view = api.get(f"/api/jobs/{made.json()['job_id']}").json()
    assert view["status"] == "waiting" and view["after"] == [first] and view["after_policy"] == "always"
    explained = api.get(f"/api/jobs/{made.json()['job_id']}/explain").json()
    assert explained["summary"] == f"waits for job {first} (queued)"
    assert [j["job_id"] for j in api.get("/api/jobs", params={"status": "waiting"}).json()["jobs"]] == [
        made.json()["job_id"]
    ]
    # A batch naming its jobs by ref, in any order; one naming a cycle is refused whole.
    batch = api.post(
        "/api/jobs/batch",
        json={
            "jobs": [
                {"type": "echo", "payload": 2, "after": ["one"]},
                {"type": "echo", "payload": 1, "ref": "one"},
            ]
        },
    )
    assert batch.status_code == 201, batch.text
    second, one = batch.json()["jobs"]
    assert second["status"] == "waiting" and one["status"] == "queued" and one["job_id"] < second["job_id"]
    cycle = api.post(
        "/api/jobs/batch",
        json={
            "jobs": [
                {"type": "echo", "payload": 1, "ref": "x", "after": ["y"]},
                {"type": "echo", "payload": 2, "ref": "y", "after": ["x"]},
            ]
        },
    )
    assert cycle.status_code == 400 and "dependency cycle: 'x' → 'y' → 'x'" in cycle.text
    unknown = api.post("/api/jobs", json={"type": "echo", "payload": 1, "after": [999999]})
    assert unknown.status_code == 404 and "no job 999999" in unknown.text
    bad = api.post(
        "/api/jobs", json={"type": "echo", "payload": 1, "after": [first], "after_policy": "sometimes"}
    )
    assert bad.status_code == 400
    twice = api.post("/api/jobs", json={"type": "echo", "payload": 1, "after": [first, first]})
    assert twice.status_code == 400 and "twice" in twice.text
    # Cancelling the prerequisite: the 'always' dependent is queued, the ref'd one is untouched.
    assert api.delete(f"/api/jobs/{first}").status_code == 200
    assert api.get(f"/api/jobs/{made.json()['job_id']}").json()["status"] == "queued"
