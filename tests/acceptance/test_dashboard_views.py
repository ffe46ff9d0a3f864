"""The dashboard's views in a real browser (Playwright driving Debian's chromium, as in
test_dashboard.py) against one real hub process and real workers: charts from the hub's history
(kept across a reload), a job's timeline with all its attempts and their tracebacks, search by
id, pages of 50, bulk retry with a confirm dialog, pausing and resuming a service, the API docs
(Swagger UI, served by the hub) with "try it out", and the groups and schedules cards.

One hub serves the whole module (each test uses its own services); a screenshot of each view
is saved under .pytest_cache/dashboard/ (git-ignored). A test whose backend route is missing
(built by another change) is skipped at run time, saying which route.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.helpers import Proc, start_worker
from tests.http_helpers import HttpHub, chromium, page_errors, start_http_hub

SHOTS = Path(__file__).resolve().parents[2] / ".pytest_cache" / "dashboard"
VENDORED = Path(__file__).resolve().parents[2] / "src" / "jobq" / "dashboard" / "vendor"

pytestmark = pytest.mark.skipif(
    not (VENDORED / "uplot" / "uPlot.iife.min.js").is_file(),
    reason="the dashboard's vendored files are missing: run `make install`",
)


class Hub:
    def __init__(self, server: HttpHub, workers: list[Proc]) -> None:
        self.server = server
        self.workers = workers
        self.api = httpx.Client(base_url=server.url, timeout=20)

    @property
    def url(self) -> str:
        return self.server.url

    def submit(self, service: str, payload: str = "x", **fields: object) -> int:
        body = {"type": service, "payload": payload, "payload_encoding": "text", **fields}
        answer = self.api.post("/api/jobs", json=body)
        assert answer.status_code in (200, 201, 202), answer.text
        return int(answer.json()["job_id"])

    def status(self, job_id: int) -> str:
        return str(self.api.get(f"/api/jobs/{job_id}").json()["status"])

    def wait_status(self, job_ids: list[int], status: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while any(self.status(j) != status for j in job_ids):
            assert time.monotonic() < deadline, [self.status(j) for j in job_ids]
            time.sleep(0.05)

    def missing(self, method: str, path: str) -> bool:
        """The hub has no such route (yet): its OpenAPI document does not list it."""
        paths = self.api.get("/openapi.json").json()["paths"]
        return method.lower() not in paths.get(path, {})


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp("dashboard-views")
    server = start_http_hub(tmp)
    workers = [
        start_worker(tmp, server.endpoint, service="echo", handler="tests.handlers:upper", name="echo-w"),
        start_worker(tmp, server.endpoint, service="flaky", handler="tests.handlers:flaky", name="flaky-w"),
        start_worker(
            tmp, server.endpoint, service="broken", handler="tests.handlers:missing_key", name="broken-w"
        ),
        start_worker(
            tmp, server.endpoint, service="pausable", handler="tests.handlers:upper", name="pause-w"
        ),
        # Its own worker: the hub drains a worker after 5 failed attempts in a row.
        start_worker(
            tmp, server.endpoint, service="doomed", handler="tests.handlers:missing_key", name="doom-w"
        ),
    ]
    started = Hub(server, workers)
    deadline = time.monotonic() + 20
    while len(started.api.get("/api/workers").json()) < len(workers):
        assert time.monotonic() < deadline, "the workers did not attach"
        time.sleep(0.05)
    yield started
    started.api.close()
    for worker in workers:
        worker.close()
    server.proc.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab; the test fails if the page logs an error (a CSP violation among them)."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    opened = context.new_page()
    errors = page_errors(opened)
    yield opened
    context.close()
    assert not errors, errors


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def open_dashboard(page: Page, hub: Hub) -> None:
    page.goto(hub.url + "/")
    expect(page.locator("#conn")).to_have_text("live", timeout=15_000)


def failures(hub: Hub, job_id: int) -> list[object]:
    """A job's failed attempts (an operator's retry keeps them)."""
    return list(hub.api.get(f"/api/jobs/{job_id}").json().get("attempt_errors", []))


def chart_sum(page: Page, chart: str) -> float:
    return float(page.locator(f"#chart-{chart}").get_attribute("data-sum") or 0)


def test_charts_show_the_hubs_history_and_keep_it_after_a_reload(hub: Hub, page: Page) -> None:
    if hub.missing("get", "/api/history"):
        pytest.skip("GET /api/history is not there yet")
    jobs = [hub.submit("echo", f"chart {i}") for i in range(12)]
    hub.wait_status(jobs, "completed")
    open_dashboard(page, hub)
    expect(page.locator("#charts-note")).to_contain_text("last 60 minutes")
    expect(page.locator("#chart-throughput canvas")).to_have_count(1)
    page.wait_for_function("Number(document.querySelector('#chart-throughput').dataset.sum) >= 24")
    assert int(page.locator("#chart-throughput").get_attribute("data-points") or 0) > 1
    assert chart_sum(page, "latency") > 0  # the wait and run times of those jobs
    expect(page.locator(".worker")).to_have_count(len(hub.workers), timeout=10_000)
    shot(page, "charts")
    page.reload()
    expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
    page.wait_for_function("Number(document.querySelector('#chart-throughput').dataset.sum) >= 24")
    # The y axis says 0.25 where it means 0.25 (uPlot's ticks, formatted without rounding away).
    labels = page.evaluate(
        "[...Array(8).keys()].map((i) => num([0.25, 0.5, 1.5, 2, 10, 0.125, 250, 1234.5][i]))"
    )
    assert labels == ["0.25", "0.5", "1.5", "2", "10", "0.125", "250", "1235"]


def test_search_by_id_opens_a_job_with_all_its_attempts_and_the_traceback(hub: Hub, page: Page) -> None:
    flaky = hub.submit("flaky", "twice", backoff=0.05)
    broken = hub.submit("broken", "x", max_attempts=1)
    hub.wait_status([flaky], "completed")
    hub.wait_status([broken], "failed")
    open_dashboard(page, hub)

    page.fill("#search", str(flaky))  # typing an id opens that job
    expect(page.locator("#detail")).to_be_visible(timeout=5_000)
    expect(page.locator("#d-title")).to_have_text(f"Job {flaky} · flaky")
    groups = page.locator("#d-timeline .attempt-group[data-attempt]:not([data-attempt='0'])")
    expect(groups).to_have_count(2, timeout=10_000)
    first, second = groups.nth(0), groups.nth(1)
    expect(first.locator(".attempt-head")).to_contain_text("Attempt 1")
    expect(first.locator(".attempt-head .badge")).to_have_text("failed")
    expect(first.locator(".attempt-error")).to_contain_text("first attempt fails")
    expect(first.locator(".attempt-head")).to_contain_text("flaky-w")
    first.locator(".attempt-tb summary").click()
    expect(first.locator(".attempt-tb pre")).to_contain_text("RuntimeError: first attempt fails")
    expect(second.locator(".attempt-head")).to_contain_text("Attempt 2")
    expect(second.locator(".attempt-head .badge")).to_have_text("completed")
    expect(page.locator("#d-overview")).not_to_contain_text("progress")  # a finished job: no "100.0 halfway"
    shot(page, "timeline")

    page.fill("#search", str(broken))
    page.press("#search", "Enter")
    expect(page.locator("#d-title")).to_have_text(f"Job {broken} · broken", timeout=5_000)
    expect(page.locator("#d-traceback")).to_contain_text("in missing_key", timeout=10_000)
    expect(page.locator("#d-traceback")).to_contain_text("KeyError: 'missing'")
    shot(page, "traceback")

    page.fill("#search", "987654321")
    page.press("#search", "Enter")
    expect(page.locator("#toast")).to_have_text("No job 987654321.")


def test_jobs_come_in_pages_of_50(hub: Hub, page: Page) -> None:
    answer = hub.api.post(
        "/api/jobs/batch",
        json={"jobs": [{"type": "parked", "payload": {"n": i}} for i in range(120)]},
    )
    assert answer.status_code in (200, 201, 202), answer.text
    ids = sorted(job["job_id"] for job in answer.json()["jobs"])
    open_dashboard(page, hub)
    expect(page.locator("#f-service option[value='parked']")).to_have_count(1, timeout=10_000)
    page.select_option("#f-service", "parked")
    rows = page.locator("#jobs tbody tr")
    expect(rows).to_have_count(50, timeout=10_000)
    expect(rows.first).to_have_attribute("data-job-id", str(ids[-1]))
    expect(page.locator("#jobs-count")).to_have_text("1\u201350 of 120", timeout=10_000)
    expect(page.locator("#page-newest")).to_be_disabled()

    page.click("#page-older")
    expect(rows.first).to_have_attribute("data-job-id", str(ids[-51]), timeout=10_000)
    expect(rows).to_have_count(50)
    expect(page.locator("#jobs-count")).to_have_text("51\u2013100 of 120")
    page.click("#page-older")
    expect(rows).to_have_count(20, timeout=10_000)
    expect(rows.last).to_have_attribute("data-job-id", str(ids[0]))
    expect(page.locator("#jobs-count")).to_have_text("101\u2013120 of 120")
    expect(page.locator("#page-older")).to_be_disabled()
    shot(page, "paging")

    page.click("#page-newest")
    expect(rows.first).to_have_attribute("data-job-id", str(ids[-1]), timeout=10_000)
    expect(rows).to_have_count(50)


def test_bulk_retry_of_the_failed_jobs_asks_first(hub: Hub, page: Page) -> None:
    if hub.missing("post", "/api/jobs/bulk"):
        pytest.skip("POST /api/jobs/bulk is not there yet")
    failed = [hub.submit("doomed", f"bulk {i}", max_attempts=1) for i in range(2)]
    hub.wait_status(failed, "failed")
    open_dashboard(page, hub)
    page.select_option("#f-status", "failed")
    expect(page.locator("#f-service option[value='doomed']")).to_have_count(1, timeout=10_000)
    page.select_option("#f-service", "doomed")
    expect(page.locator("#bulk-retry")).to_be_enabled(timeout=5_000)

    page.click("#bulk-retry")  # asked, and kept: nothing happens
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text("status failed, service doomed")
    expect(page.locator("#confirm-text")).to_contain_text("2 jobs match it")
    page.click("#confirm-cancel")
    expect(page.locator("#confirm")).to_be_hidden()
    assert all(len(failures(hub, j)) == 1 for j in failed)

    page.click("#bulk-retry")
    shot(page, "bulk-confirm")
    page.click("#confirm-ok")
    expect(page.locator("#bulk-result")).to_have_text("Retried 2 of 2 matching jobs.", timeout=10_000)
    deadline = time.monotonic() + 20  # each ran once more (and failed again: the handler always does)
    while any(len(failures(hub, j)) < 2 for j in failed):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    hub.wait_status(failed, "failed")


def test_pausing_a_service_holds_its_jobs_until_resumed(hub: Hub, page: Page) -> None:
    if hub.missing("post", "/api/services/{service}/pause"):
        pytest.skip("POST /api/services/{service}/pause is not there yet")
    open_dashboard(page, hub)
    card = page.locator('#services .service[data-service="pausable"]')
    expect(card).to_have_count(1, timeout=10_000)
    card.locator("button[data-svc-act='pause']").click()
    expect(card.locator(".badge")).to_have_text("paused", timeout=10_000)
    assert next(s for s in hub.api.get("/api/services").json() if s["name"] == "pausable")["paused"]

    held = hub.submit("pausable", "held")
    time.sleep(1.5)  # the worker is idle and attached: it would have run it by now
    assert hub.status(held) == "queued"
    expect(page.locator(f'#jobs tr[data-job-id="{held}"] td.status')).to_have_text("queued")
    shot(page, "paused")

    card.locator("button[data-svc-act='resume']").click()
    hub.wait_status([held], "completed")
    expect(card.locator(".badge")).to_have_count(0, timeout=10_000)
    expect(page.locator(f'#jobs tr[data-job-id="{held}"] td.status')).to_have_text("completed")


def test_workers_are_titled_by_name_and_greyed_out_when_the_page_is_not_live(hub: Hub, page: Page) -> None:
    open_dashboard(page, hub)
    card = page.locator(".worker", has_text="echo-w").first
    expect(card.locator(".name")).to_have_text("echo-w")
    expect(card.locator(".dot.health-ok")).to_have_count(1)
    page.evaluate("setConn(false)")  # what a lost connection shows
    expect(page.locator("#workers")).to_have_class("workers stale")
    expect(card.locator(".dot.health-unknown")).to_have_count(1)
    expect(page.locator("#workers-note")).to_contain_text("not live")


def test_the_api_docs_are_swagger_ui_served_by_the_hub_and_try_it_out_works(hub: Hub, page: Page) -> None:
    remote: list[str] = []
    page.on("request", lambda r: remote.append(r.url) if not r.url.startswith(hub.url) else None)
    page.goto(hub.url + "/docs")
    stats = page.locator(".opblock-get", has_text="/api/stats").first
    expect(stats).to_be_visible(timeout=15_000)
    stats.locator(".opblock-summary").click()
    stats.locator("button.execute").click()
    status = stats.locator(".live-responses-table .response .response-col_status").first
    expect(status).to_have_text("200", timeout=10_000)
    expect(stats.locator(".live-responses-table .response .response-col_description")).to_contain_text(
        '"jobs_by_state"'
    )
    shot(page, "docs")
    assert [url for url in remote if not url.startswith("data:")] == []


def test_groups_and_schedules_cards_follow_the_hubs_routes(hub: Hub, page: Page) -> None:
    groups = not hub.missing("get", "/api/groups/{group_id}") or not hub.missing("get", "/api/groups/{id}")
    schedules = not hub.missing("get", "/api/schedules")
    if schedules and not hub.missing("post", "/api/schedules"):
        added = hub.api.post(
            "/api/schedules",
            json={
                "name": "nightly-report",
                "cron": "0 3 * * *",
                "timezone": "Europe/Paris",
                "job": {"type": "echo", "payload": "report", "payload_encoding": "text"},
            },
        )
        assert added.status_code == 201, added.text
    open_dashboard(page, hub)
    expect(page.locator(".worker")).to_have_count(len(hub.workers), timeout=10_000)
    for card, shown in (("#groups-card", groups), ("#schedules-card", schedules)):
        if shown:
            expect(page.locator(card)).to_be_visible()
        else:
            expect(page.locator(card)).to_be_hidden()
    if not groups and not schedules:
        pytest.skip("GET /api/groups/{id} and GET /api/schedules are not there yet")
    if groups:
        page.fill("#group-id", "987654")
        page.press("#group-id", "Enter")
        expect(page.locator("#group-view")).to_contain_text("No group 987654", timeout=5_000)
        made = hub.api.post("/api/jobs", json={"type": "echo", "payload": {"n": 0}, "expand": {"n": "1..3"}})
        assert made.status_code in (200, 201, 202), made.text
        group, members = made.json()["group"]["id"], made.json()["members"]
        hub.wait_status(members, "completed")
        page.fill("#group-id", str(group))
        page.press("#group-id", "Enter")
        view = page.locator("#group-view")
        expect(view.locator(".group-head")).to_contain_text(f"Group {group}", timeout=5_000)
        expect(view.locator(".group-head .badge")).to_have_text("completed")
        expect(view.locator(".group-head")).to_contain_text("3 jobs · 100% done")
        expect(view.locator("tbody tr")).to_have_count(3)
        view.locator(f'[data-open-job="{members[0]}"]').click()
        expect(page.locator("#d-title")).to_have_text(f"Job {members[0]} · echo", timeout=5_000)
        # A job's dependencies are links in its panel.
        later = hub.submit("echo", "after the first", after=[members[0]])
        hub.wait_status([later], "completed")
        page.fill("#search", str(later))
        page.press("#search", "Enter")
        expect(page.locator("#d-title")).to_have_text(f"Job {later} · echo", timeout=5_000)
        page.locator(f'#d-overview [data-open-job="{members[0]}"]').click()
        expect(page.locator("#d-title")).to_have_text(f"Job {members[0]} · echo", timeout=5_000)
        page.click("#btn-close")
    if schedules:
        listed = hub.api.get("/api/schedules").json()
        expect(page.locator("#schedules tbody tr")).to_have_count(len(listed), timeout=5_000)
        if listed:
            row = page.locator('#schedules tr[data-schedule="nightly-report"]')
            expect(row).to_contain_text("0 3 * * *")
            expect(row).to_contain_text("Europe/Paris")
            expect(row).to_contain_text("echo")
            expect(row).to_contain_text("active")
    shot(page, "groups-schedules")
