"""Fetch the dashboard's third-party files (uPlot, Swagger UI) into ``src/jobq/dashboard/vendor/``.

``make install`` runs it; it is idempotent and quiet: nothing happens when every file of the
pinned versions is there. Each package is fetched with npm (``npm pack NAME@VERSION``, from the
registry npm is configured with), its tarball checked against the sha512 integrity pinned in
``src/jobq/dashboard/vendor.json``, and only the listed files are copied (flattened into
``vendor/NAME/``). The hub serves them itself (never a CDN); the directory is git-ignored.

Standard library only: it runs before the project's venv exists. ``--check`` only says whether
the files are there (exit 1 if not).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[1] / "src" / "jobq" / "dashboard"
SPEC = DASHBOARD / "vendor.json"
VENDOR = DASHBOARD / "vendor"
STAMP = VENDOR / ".versions.json"


def load_spec() -> dict[str, dict[str, Any]]:
    packages: dict[str, dict[str, Any]] = json.loads(SPEC.read_text())["packages"]
    return packages


def present(packages: dict[str, dict[str, Any]]) -> bool:
    """Every listed file is there, fetched for the pinned versions."""
    try:
        stamp = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return False
    wanted = {name: spec["version"] for name, spec in packages.items()}
    if stamp != wanted:
        return False
    return all(
        (VENDOR / name / Path(str(file)).name).is_file()
        for name, spec in packages.items()
        for file in spec["files"]
    )


def integrity_of(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def fetch(name: str, spec: dict[str, Any], work: Path) -> None:
    version, integrity = str(spec["version"]), str(spec["integrity"])
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("vendor_assets: npm is needed to fetch the dashboard's files (apt-get install npm)")
    done = subprocess.run(
        [npm, "pack", f"{name}@{version}", "--pack-destination", str(work), "--silent"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"vendor_assets: npm pack {name}@{version} failed:\n{done.stderr.strip()}")
    tarball = work / done.stdout.strip().splitlines()[-1]
    data = tarball.read_bytes()
    if integrity_of(data) != integrity:
        sys.exit(f"vendor_assets: {tarball.name} does not match the integrity pinned in {SPEC.name}")
    target = VENDOR / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    with tarfile.open(tarball) as archive:
        for file in spec["files"]:
            member = archive.extractfile(f"package/{file}")
            if member is None:
                sys.exit(f"vendor_assets: {name}@{version} has no file {file}")
            (target / Path(str(file)).name).write_bytes(member.read())


def main(argv: list[str]) -> int:
    packages = load_spec()
    if present(packages):
        if "--check" not in argv:
            STAMP.touch()  # newer than vendor.json: make has nothing to do
        return 0
    if "--check" in argv:
        print(f"vendor_assets: missing in {VENDOR} (run `make install`)", file=sys.stderr)
        return 1
    VENDOR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        for name, spec in packages.items():
            fetch(name, spec, Path(work))
    STAMP.write_text(json.dumps({name: spec["version"] for name, spec in packages.items()}) + "\n")
    fetched = ", ".join(f"{name}@{spec['version']}" for name, spec in packages.items())
    print(f"vendor_assets: {fetched} in {VENDOR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
