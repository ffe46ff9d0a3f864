"""The dashboard's vendored files (uPlot, Swagger UI): served by the hub itself under the same
strict Content-Security-Policy, fetched by `make install` (tools/vendor_assets.py) at the versions
and integrity pinned in src/jobq/dashboard/vendor.json; when they are missing, /docs says so."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from jobq.doors.http import pages
from jobq.doors.http.gate import CSP
from tests.helpers import free_port, running_hub

REPO = Path(__file__).resolve().parents[2]
SPEC = json.loads((REPO / "src" / "jobq" / "dashboard" / "vendor.json").read_text())["packages"]

pytestmark = pytest.mark.skipif(
    bool(pages.missing_assets()), reason="the dashboard's vendored files are missing: run `make install`"
)


def test_every_package_is_pinned_to_an_exact_version_with_its_sha512() -> None:
    for name, spec in SPEC.items():
        assert spec["version"].count(".") == 2 and spec["version"].replace(".", "").isdigit(), name
        digest = base64.b64decode(spec["integrity"].removeprefix("sha512-"))
        assert spec["integrity"].startswith("sha512-") and len(digest) == hashlib.sha512().digest_size


def test_the_installer_has_nothing_to_do_once_the_files_are_there() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "vendor_assets.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Litestar's, building the app in-process
async def test_the_hub_serves_its_vendored_files_under_its_own_csp(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    port = free_port()
    async with (
        running_hub(http=f"127.0.0.1:{port}"),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as api,
    ):
        for path, kind in (
            ("/dashboard/vendor/uplot/uPlot.iife.min.js", "javascript"),
            ("/dashboard/vendor/uplot/uPlot.min.css", "text/css"),
            ("/dashboard/vendor/swagger-ui-dist/swagger-ui-bundle.js", "javascript"),
            ("/dashboard/vendor/swagger-ui-dist/swagger-ui.css", "text/css"),
            ("/dashboard/charts.js", "javascript"),
        ):
            answer = await api.get(path)
            assert answer.status_code == 200, path
            assert kind in answer.headers["content-type"], path
            assert answer.headers["content-security-policy"] == CSP
        docs = await api.get("/docs")
        assert docs.status_code == 200
        assert "/dashboard/vendor/swagger-ui-dist/swagger-ui-bundle.js" in docs.text
        assert "<script>" not in docs.text  # no inline script: the CSP would refuse it

        monkeypatch.setattr(pages, "VENDOR", tmp_path)  # as on a clone without `make install`
        missing = await api.get("/docs")
        assert missing.status_code == 503
        assert missing.headers["content-type"].startswith("text/html")
        assert "make install" in missing.text
        assert "swagger-ui-dist/swagger-ui-bundle.js" in missing.text
        assert missing.headers["content-security-policy"] == CSP
