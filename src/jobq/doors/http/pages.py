"""The HTTP door's pages: the dashboard (``/``), the interactive API docs (``/docs``, Swagger
UI on ``/openapi.json``) and their static files under ``/dashboard/`` (``src/jobq/dashboard/``).

Third-party files (uPlot for the dashboard's charts, Swagger UI) are served by the hub itself
from ``dashboard/vendor/``, never from a CDN, so the strict Content-Security-Policy of the gate
holds (``script-src 'self'``, no inline script or style). ``make install`` fetches them
(``tools/vendor_assets.py``, the versions and integrity pinned in ``dashboard/vendor.json``);
when they are missing ``/docs`` answers a page saying so (503), and the dashboard works without
its charts (it says why in their place).
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.static_files import create_static_files_router

from jobq.doors.http.state import door_of

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"
VENDOR = DASHBOARD / "vendor"
SPEC = DASHBOARD / "vendor.json"


def missing_assets(package: str | None = None) -> list[str]:
    """The vendored files (``PACKAGE/FILE``) that are not there: of one package, or of all."""
    packages: dict[str, dict[str, Any]] = json.loads(SPEC.read_text())["packages"]
    return [
        f"{name}/{Path(file).name}"
        for name, spec in packages.items()
        if package in (None, name)
        for file in spec["files"]
        if not (VENDOR / name / Path(file).name).is_file()
    ]


def _page(name: str) -> bytes:
    return (DASHBOARD / name).read_bytes()


def _missing_page(missing: list[str]) -> bytes:
    items = "".join(f"<li><code>{escape(item)}</code></li>" for item in missing)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>jobq · assets missing</title>'
        '<link rel="stylesheet" href="/dashboard/style.css"></head><body><main class="api">'
        '<section class="card"><h2>The API docs need files this hub does not have</h2>'
        f"<p>Missing in <code>{escape(str(VENDOR))}</code>:</p><ul>{items}</ul>"
        "<p>Run <code>make install</code> (or <code>python3 tools/vendor_assets.py</code>) in the "
        'source tree, then restart the hub. <a class="link" href="/openapi.json">/openapi.json</a> '
        'works without them; <a class="link" href="/">the dashboard</a> too.</p>'
        "</section></main></body></html>"
    ).encode()


@get("/", include_in_schema=False, media_type=MediaType.HTML)
async def dashboard(request: Request[Any, Any, Any]) -> bytes:
    return door_of(request).cached("index.html", lambda: _page("index.html"))


@get("/docs", include_in_schema=False, media_type=MediaType.HTML)
async def api_docs(request: Request[Any, Any, Any]) -> Response[bytes]:
    missing = missing_assets("swagger-ui-dist")
    if missing:  # not cached: the files may be fetched while the hub runs
        return Response(_missing_page(missing), status_code=503, media_type=MediaType.HTML)
    return Response(door_of(request).cached("api.html", lambda: _page("api.html")), media_type=MediaType.HTML)


def handlers() -> list[Any]:
    """The pages and ``/dashboard/...`` (their own files and the vendored ones, under
    ``/dashboard/vendor/``), with a static-files router of their own for each app."""
    static = create_static_files_router(
        path="/dashboard", directories=[DASHBOARD], include_in_schema=False, name="dashboard"
    )
    return [dashboard, api_docs, static]


__all__ = ["DASHBOARD", "handlers", "missing_assets"]
