"""What a worker advertises: detected hardware, then a TOML file, then flags (last wins), for the
``jobq worker`` command and the SDK ``Worker`` alike (:func:`advertised`); and the machine figures
its heartbeats carry."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobq.core.matching import flatten


def detect_gpus() -> dict[str, Any]:
    """GPU figures from ``nvidia-smi`` when it is present (the largest GPU's memory)."""
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    gpus: list[tuple[str, float]] = []
    for line in out.strip().splitlines():
        model, _, memory_mib = line.rpartition(",")
        try:
            gpus.append((model.strip(), float(memory_mib) / 1024))
        except ValueError:
            continue
    if not gpus:
        return {}
    model, memory_gb = max(gpus, key=lambda g: g[1])
    return {
        "hardware.gpu_count": len(gpus),
        "hardware.gpu_model": model,
        "hardware.gpu_memory_gb": round(memory_gb, 1),
    }


class Exactly(dict[str, Any]):
    """Capabilities a worker advertises as given, nothing detected added:
    ``Worker(capabilities=Exactly({"os": "linux"}))``."""


def advertised(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the SDK ``Worker`` advertises: the detected hardware (CPU cores, RAM, NVIDIA GPUs, as
    the ``jobq worker`` command does) under the ``given`` capabilities, unless they are
    :class:`Exactly` what to advertise."""
    if isinstance(given, Exactly):
        return dict(given)
    return {**detected(), **flatten(dict(given or {}))}


@functools.cache
def detected() -> dict[str, Any]:
    """:func:`detect`, once per process (it may run ``nvidia-smi``)."""
    return detect()


def detect() -> dict[str, Any]:
    found: dict[str, Any] = {"hardware.cpu_cores": os.cpu_count() or 1}
    try:
        import psutil

        found["hardware.ram_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # psutil missing: leave RAM out rather than guess
        pass
    found.update(detect_gpus())
    return found


def load_capabilities(
    path: Path | None, overrides: Mapping[str, Any], *, auto_detect: bool = True
) -> dict[str, Any]:
    caps: dict[str, Any] = dict(detected()) if auto_detect else {}
    if path is not None:
        with path.open("rb") as f:
            caps.update(flatten(tomllib.load(f)))
    caps.update(flatten(dict(overrides)))
    return caps


def machine_metrics(running: int) -> dict[str, float]:
    """CPU, memory and load figures for a heartbeat (what psutil and the OS can tell)."""
    figures: dict[str, float] = {"running": float(running)}
    try:
        import psutil

        figures["cpu_percent"] = psutil.cpu_percent(interval=None)
        memory = psutil.virtual_memory()
        figures["memory_percent"] = memory.percent
        figures["memory_available_mb"] = memory.available / 2**20
        figures["rss_mb"] = psutil.Process().memory_info().rss / 2**20
    except Exception:  # psutil missing or a platform without these figures
        pass
    with contextlib.suppress(OSError):
        figures["load1"] = os.getloadavg()[0]
    return figures
