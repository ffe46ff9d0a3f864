"""docs/deploy.md, compose.yaml and the Dockerfile stay true: their settings are read by the
commands they are written for (`--print-config`), and compose runs a hub on Redis with two workers."""

from __future__ import annotations

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
