"""Settings for the processes jobq runs itself (``jobq hub``, ``jobq worker``)."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """A hub holds many long-lived objects (live jobs, indexes) and makes many short-lived ones
    (messages). Python's default thresholds make the cycle collector walk the long-lived ones
    again and again: freeze what start-up made, and collect the young generation less often.
    Reference counting still frees at once everything that is not in a cycle."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
