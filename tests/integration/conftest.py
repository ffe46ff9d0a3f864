"""Fixtures the integration tests share (a module may define its own ``namespace`` with store
options: that one wins)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_helpers import Namespace, require_redis


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    """A Redis key namespace of the test's own (skipped without Redis), removed after it."""
    require_redis()
    ns = Namespace()
    yield ns
    ns.cleanup()
