"""The contract suite's fixtures: each case runs once per backend (``support.BACKENDS``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobq.store.base import Store
from tests.contract.support import BACKENDS, Backend
from tests.redis_helpers import Namespace, require_redis


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    namespace = None
    if request.param == "redis":
        require_redis()
        namespace = Namespace()  # a key prefix of its own on the shared server
    b = Backend(request.param, tmp_path, redis_url=None if namespace is None else namespace.url)
    try:
        yield b
        await b.close_all()
    finally:
        if namespace is not None:
            namespace.cleanup()


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()
