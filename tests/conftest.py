"""Fixtures every suite shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import Proc
from tests.redis_helpers import forget_libraries


@pytest.fixture(scope="session", autouse=True)
def _redis_functions_forgotten() -> Iterator[None]:
    """The Redis store loads its scripts into the test server as a library of functions, which
    no key prefix holds: removed when the session ends."""
    yield
    forget_libraries()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test starts (hubs, workers, peers); each is closed (killed if need be) after
    the test, whatever its outcome."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.close()
