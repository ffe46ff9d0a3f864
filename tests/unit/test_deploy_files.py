"""docs/deploy.md, compose.yaml and the Dockerfile stay true: their settings are read by the
commands they are written for (`--print-config`), and compose runs a hub on Redis with two workers."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jobq.cli.main import cli
from tests.helpers import REPO


def print_config(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    result = CliRunner().invoke(cli, [*args, "--print-config"], env=env or {}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return tomllib.loads(result.stdout)


def test_the_config_files_of_the_deploy_guide_are_read_as_written(tmp_path: Path) -> None:
    text = (REPO / "docs" / "deploy.md").read_text()
    blocks = {m.group(1): m.group(0) for m in re.finditer(r"```toml\n# (\S+)\n.*?```", text, re.DOTALL)}
    assert set(blocks) == {"hub.toml", "worker.toml"}
    for name, block in blocks.items():
        path = tmp_path / name
        path.write_text(block.removeprefix("```toml\n").removesuffix("```"))
        section = name.removesuffix(".toml")
        settings = print_config([section, "--config", str(path)])[section]
        document = tomllib.loads(path.read_text())[section]
        for key, value in document.items():
            if key == "capabilities":
                continue
            got = settings[key]
            if key == "customer-weight":
                value = [f"{k}={v}" for k, v in value.items()]
            assert got == value or got == [value] or got == float(value), (name, key)


def test_compose_runs_a_hub_on_redis_and_two_workers_that_reach_it() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "hub", "worker-1", "worker-2"}
    hub = services["hub"]
    settings = print_config(hub["command"], hub["environment"])["hub"]
    assert settings["store"].startswith("redis://redis:6379/")
    assert settings["zmq"] == ["tcp://0.0.0.0:5555"] and settings["insecure"] is True
    assert all(port.startswith("127.0.0.1:") for port in hub["ports"])
    names = set()
    for name in ("worker-1", "worker-2"):
        worker = services[name]
        settings = print_config(worker["command"], worker["environment"])["worker"]
        assert settings["hub"] == "tcp://hub:5555" and settings["service"] == ["echo"]
        names.add(settings["name"])
    assert names == {"worker-1", "worker-2"}


def test_the_dockerfile_installs_jobq_with_redis_and_runs_the_jobq_command() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "pip install '.[redis]'" in text
    assert 'ENTRYPOINT ["jobq"]' in text and "USER jobq" in text


def test_the_dockerfile_fetches_the_dashboards_vendored_files_in_a_stage_of_its_own() -> None:
    """A clean checkout has no ``src/jobq/dashboard/vendor/`` (git-ignored; ``make install``
    fetches it): a build stage with npm fetches it as pinned, and only its files reach the image."""
    text = (REPO / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert len(stages) == 2
    vendor, final = stages
    assert re.match(r"node:\d+[\w.-]* AS vendor\n", vendor), vendor.splitlines()[0]
    assert "COPY tools/vendor_assets.py tools/" in vendor
    assert "COPY src/jobq/dashboard/vendor.json src/jobq/dashboard/" in vendor
    assert "RUN python3 tools/vendor_assets.py" in vendor and "python3" in vendor.split("RUN", 2)[1]
    assert final.startswith("python:3.11-slim\n") and "node" not in final and "npm" not in final
    copied = "COPY --from=vendor /build/src/jobq/dashboard/vendor ./src/jobq/dashboard/vendor"
    assert copied in final
    # After the sources (which must not bring a stale copy) and before the install that packs them.
    assert final.index("COPY src ./src") < final.index(copied) < final.index("pip install")
    assert "src/jobq/dashboard/vendor" in (REPO / ".dockerignore").read_text().splitlines()
    # What the stage fetches (vendor/NAME/FILE) is package data of the wheel the image installs.
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "dashboard/vendor/*/*" in package_data["jobq"]
    spec = json.loads((REPO / "src" / "jobq" / "dashboard" / "vendor.json").read_text())["packages"]
    assert spec and all(
        entry["version"] and entry["integrity"].startswith("sha512-") for entry in spec.values()
    )
    container = (REPO / "docs" / "deploy.md").read_text().split("## In a container")[1].split("\n## ")[0]
    assert "vendor_assets.py" in container and "vendor.json" in container
