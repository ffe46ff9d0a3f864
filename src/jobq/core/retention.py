"""How long a finished job is kept: the retention rules every store applies.

A completed or cancelled job is kept its own ``result_ttl`` (else the store's default); a failed
one, a dead letter, at least :data:`DEAD_LETTER_TTL`. Then a tick forgets it (the job, its
payload and result, its idempotency key). The Redis store's scripts apply the same rules
(``store/lua/prelude.lua``: ``finish``, ``dead_letter_ttl``; the map is in ``docs/redis.md``).
"""

from __future__ import annotations

#: Seconds a finished job is kept by default (``result_ttl`` overrides it per job).
DEFAULT_RESULT_TTL = 24 * 3600.0
#: Seconds a failed job (a dead letter) is kept at least.
DEAD_LETTER_TTL = 7 * 24 * 3600.0


def result_ttl(own: float | None, default: float) -> float:
    """Seconds a job is kept once it ends: its own ``result_ttl``, else the store's default."""
    return default if own is None else own


def dead_letter_ttl(ttl: float) -> float:
    """Seconds a job kept ``ttl`` seconds once it ends is kept if it ends ``failed``."""
    return max(DEAD_LETTER_TTL, ttl)


def expires_at(finished_at: float, ttl: float) -> float:
    """When a job that ended at ``finished_at`` and is kept ``ttl`` seconds is forgotten."""
    return finished_at + ttl
