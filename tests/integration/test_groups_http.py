"""Groups over REST (a real hub process with --auth): ``POST /api/jobs`` with ``expand``
answers with the group; ``GET /api/groups/{id}``, ``/members``, ``POST .../cancel``; a client
sees and cancels only its own groups; bad expansions are 400 with the reason."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.helpers import Proc
from tests.http_helpers import start_http_hub
from tests.integration.zmqauth import standard_tokens


def test_groups_over_rest(tmp_path: Path, procs: list[Proc]) -> None:
    tokens = standard_tokens(tmp_path)
    hub = start_http_hub(tmp_path, ["--auth", str(tokens.path)])
    procs.append(hub.proc)
    a = httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {tokens['client-a']}"}, timeout=10)
    b = httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {tokens['client-b']}"}, timeout=10)
    with a, b:
        check(a, b)


def check(a: httpx.Client, b: httpx.Client) -> None:
    body = {
        "type": "nobody",
        "payload": {"pipeline": "p"},
        "expand": {"plate": "1..2", "well": "A01..A03"},
        "finalize": {"type": "concat", "payload": {"separator": ","}},
        "group_policy": "all_ended",
    }
    created = a.post("/api/jobs", json=body)
    assert created.status_code == 201, created.text
    answer = created.json()
    group, members = answer["group"], answer["members"]
    assert answer["created"] is True and group["total"] == 6 and members[0] == group["id"] + 1
    view = a.get(f"/api/groups/{group['id']}").json()
    assert {"id", "state", "total", "counts", "progress"} <= set(view)
    assert view["state"] == "running" and view["counts"] == {"queued": 6} and view["progress"] == 0.0
    listed = a.get(f"/api/groups/{group['id']}/members", params={"limit": 4}).json()
    assert [job["job_id"] for job in listed["jobs"]] == members[:4]
    # customer B's client neither sees nor cancels it
    assert b.get(f"/api/groups/{group['id']}").status_code == 403
    assert b.post(f"/api/groups/{group['id']}/cancel", json={}).status_code == 403
    assert a.get("/api/groups/999999").status_code == 404
    cancelled = a.post(f"/api/groups/{group['id']}/cancel", json={})
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["counts"] == {"cancelled": 6}
    again = a.post(f"/api/groups/{group['id']}/cancel", json={})
    assert again.status_code == 409, again.text
    # refused with the reason
    too_big = a.post("/api/jobs", json={**body, "expand": {"a": "1..1000", "b": "1..1000"}})
    assert too_big.status_code == 400 and "the limit is 100,000" in too_big.json()["message"]
    reversed_range = a.post("/api/jobs", json={**body, "expand": {"a": "9..1"}})
    assert reversed_range.status_code == 400 and "smaller bound first" in reversed_range.json()["message"]
    not_object = a.post("/api/jobs", json={**body, "payload": [1, 2]})
    assert not_object.status_code == 400 and "it is an array" in not_object.json()["message"]
    unknown = a.post("/api/jobs", json={**body, "group": 1})
    assert unknown.status_code == 400
