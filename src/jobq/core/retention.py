"""How long a finished job is kept: the retention rules every store applies.

A completed or cancelled job is kept its own ``result_ttl``, else the store's ``result_ttl``
(the hub's ``--result-ttl``, default :data:`DEFAULT_RESULT_TTL`); a failed one, a dead letter,
the store's ``failed_ttl`` (the hub's ``--failed-ttl``, default :data:`DEFAULT_FAILED_TTL`),
whatever its own ``result_ttl``. Then a tick forgets it (the job, its payload and result, its
idempotency key). The Redis store's scripts apply the same rules (``store/lua/prelude.lua``:
``finish``, ``dead_letter_ttl`` with ``FAILED_TTL`` filled in per store; the map is in
``docs/redis.md``).
"""

from __future__ import annotations

#: Seconds a completed or cancelled job is kept by default (``--result-ttl``; a job's own
#: ``result_ttl`` overrides it).
DEFAULT_RESULT_TTL = 24 * 3600.0
#: Seconds a failed job (a dead letter) is kept by default (``--failed-ttl``).
DEFAULT_FAILED_TTL = 7 * 24 * 3600.0


def result_ttl(own: float | None, default: float) -> float:
    """Seconds a job is kept once it ends: its own ``result_ttl``, else the store's default."""
    return default if own is None else own


def expires_at(finished_at: float, ttl: float) -> float:
    """When a job that ended at ``finished_at`` and is kept ``ttl`` seconds is forgotten."""
    return finished_at + ttl
