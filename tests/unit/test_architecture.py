"""The shape of the code, checked like behaviour (the import layers are `make lint`'s
`lint-imports`, configured in pyproject.toml)."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "jobq"

#: A door talks to the hub through its public API only.
_HUB_INSIDES = re.compile(r"(?<!jobq\.)\bhub\.(_\w+|store|events|sessions|counters)\b")


def test_no_module_over_500_lines() -> None:
    long = {
        str(path.relative_to(SRC)): n
        for path in SRC.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert long == {}


def test_doors_use_only_the_hub_api() -> None:
    found = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in sorted((SRC / "doors").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _HUB_INSIDES.search(line)
    ]
    assert found == []
