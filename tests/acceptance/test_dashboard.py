"""The dashboard in a real browser: Playwright (Python) driving Debian's chromium (installed by
`make install`; Playwright never downloads a browser here) against a real hub process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from jobq import authfile
from tests.helpers import Proc, start_worker
from tests.http_helpers import HttpHub, chromium, page_errors, start_http_hub


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[HttpHub, Proc]]:
    started = start_http_hub(tmp_path)
    worker = start_worker(
        tmp_path, started.endpoint, service="echo", handler="tests.handlers:upper", name="dash-w"
    )
    yield started, worker
    worker.close()
    started.proc.close()


@pytest.fixture
def page() -> Iterator[Page]:
    with chromium() as browser:
        yield browser.new_page(viewport={"width": 1440, "height": 900})


def test_dashboard_shows_jobs_live_and_cancels_one(
    hub: tuple[HttpHub, Proc], page: Page, tmp_path: Path
) -> None:
    server, _ = hub
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(server.url + "/")
    expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
    expect(page.locator(".worker")).to_have_count(1, timeout=15_000)  # the ZeroMQ worker

    with httpx.Client(base_url=server.url, timeout=20) as api:
        done = api.post(
            "/api/jobs", json={"type": "echo", "payload": "shown live", "payload_encoding": "text"}
        )
        waiting = api.post("/api/jobs", json={"type": "nobody-runs-this", "payload": {"n": 1}, "priority": 5})
        done_id, waiting_id = done.json()["job_id"], waiting.json()["job_id"]

        row = page.locator(f'#jobs tr[data-job-id="{done_id}"]')
        expect(row.locator("td.status")).to_have_text("completed", timeout=20_000)
        other = page.locator(f'#jobs tr[data-job-id="{waiting_id}"]')
        expect(other.locator("td.status")).to_have_text("queued", timeout=20_000)

        other.click()
        detail = page.locator("#detail")
        expect(detail).to_be_visible()
        expect(page.locator("#d-explain")).to_contain_text("no connected worker serves nobody-runs-this")
        page.locator("#btn-cancel").click()
        expect(page.locator("#d-status")).to_have_text("cancelled", timeout=10_000)
        expect(other.locator("td.status")).to_have_text("cancelled", timeout=10_000)
        assert api.get(f"/api/jobs/{waiting_id}").json()["status"] == "cancelled"
        assert api.get(f"/api/jobs/{done_id}").json()["result"] == "SHOWN LIVE"

        deadline = time.monotonic() + 10  # the queue and throughput figures arrive each second
        while "echo" not in page.locator("#services").inner_text() and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        expect(page.locator("#services")).to_contain_text("echo")

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000
    print(f"dashboard screenshot: {shot}")
    assert not errors, errors


def test_dashboard_asks_for_a_token_once_and_keeps_it_for_the_tab(
    tmp_path: Path, page: Page, procs: list[Proc]
) -> None:
    """With --auth the page asks for a token (a wrong one is refused with the hub's reason),
    then runs on a monitor token: live data, no actions, and a reload does not ask again.
    The hub's Content-Security-Policy holds: the browser reports no violation."""
    auth = tmp_path / "auth.json"
    monitor, _ = authfile.create_token(auth, "monitor", name="dash")
    admin, _ = authfile.create_token(auth, "admin", name="ops")
    worker, _ = authfile.create_token(auth, "worker", services=["echo"], name="dash-worker")
    server = start_http_hub(tmp_path, ["--auth", str(auth)])
    procs.append(server.proc)
    procs.append(
        start_worker(
            tmp_path,
            server.url,
            service="echo",
            handler="tests.handlers:upper",
            name="dash-w",
            env={"JOBQ_TOKEN": worker},
        )
    )
    # The browser logs every 4xx answer (the 401 that makes the page ask, the refused cancel).
    errors = page_errors(page)
    page.goto(server.url + "/")
    expect(page.locator("#login")).to_be_visible(timeout=15_000)
    expect(page.locator("#login-error")).to_be_hidden()
    page.fill("#login-token", "jq_not-a-token")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_contain_text("unknown or revoked token", timeout=10_000)
    page.fill("#login-token", monitor)
    page.click("#login-submit")
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
    expect(page.locator("#who")).to_have_text("dash (monitor)")
    expect(page.locator(".worker")).to_have_count(1, timeout=15_000)  # the SDK worker, over WebSocket

    with httpx.Client(base_url=server.url, timeout=20, headers={"Authorization": f"Bearer {admin}"}) as api:
        waiting = api.post("/api/jobs", json={"type": "nobody-runs-this", "payload": {"secret": "s3"}})
        waiting_id = waiting.json()["job_id"]
        row = page.locator(f'#jobs tr[data-job-id="{waiting_id}"]')
        expect(row.locator("td.status")).to_have_text("queued", timeout=20_000)
        row.click()
        expect(page.locator("#d-explain")).to_contain_text("no connected worker serves nobody-runs-this")
        expect(page.locator("#d-payload")).not_to_contain_text("s3")  # a monitor sees no payload
        page.locator("#btn-cancel").click()
        expect(page.locator("#d-message")).to_contain_text("not allowed", timeout=10_000)
        assert api.get(f"/api/jobs/{waiting_id}").json()["status"] == "queued"

    page.reload()
    expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
    expect(page.locator("#login")).to_be_hidden()
    assert monitor not in page.url
    assert not errors, errors


def test_a_failed_jobs_detail_shows_its_traceback(tmp_path: Path, page: Page) -> None:
    server = start_http_hub(tmp_path)
    worker = start_worker(
        tmp_path, server.endpoint, service="missing", handler="tests.handlers:missing_key", name="tb-w"
    )
    try:
        page.goto(server.url + "/")
        expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
        with httpx.Client(base_url=server.url, timeout=20) as api:
            job_id = api.post(
                "/api/jobs", json={"type": "missing", "payload": "x", "max_attempts": 1}
            ).json()["job_id"]
        row = page.locator(f'#jobs tr[data-job-id="{job_id}"]')
        expect(row.locator("td.status")).to_have_text("failed", timeout=20_000)
        row.click()
        traceback = page.locator("#d-traceback")
        expect(traceback).to_contain_text("in missing_key", timeout=10_000)
        expect(traceback).to_contain_text("KeyError: 'missing'")
        attempt = page.locator('#d-timeline .attempt-group[data-attempt="1"]')
        expect(attempt).to_have_count(1)
        expect(attempt.locator(".attempt-head")).to_contain_text("Attempt 1")
        expect(attempt.locator(".attempt-error")).to_contain_text("KeyError")
        page.screenshot(path=str(tmp_path / "traceback.png"))
    finally:
        worker.close()
        server.proc.close()
