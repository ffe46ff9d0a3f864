"""Fixtures every suite shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import Proc


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test starts (hubs, workers, peers); each is closed (killed if need be) after
    the test, whatever its outcome."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.close()
