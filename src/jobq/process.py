"""Settings for the processes jobq runs itself (``jobq hub``, ``jobq worker``)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

#: Allocations at least this large get pages of their own from the kernel (glibc's
#: ``M_MMAP_THRESHOLD``), given back the moment they are freed.
LARGE_ALLOCATION = 256 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def tune_gc() -> None:
    """A hub holds many long-lived objects (live jobs, indexes) and makes many short-lived ones
    (messages). Python's default thresholds make the cycle collector walk the long-lived ones
    again and again: freeze what start-up made, and collect the young generation less often.
    Reference counting still frees at once everything that is not in a cycle."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def return_large_buffers() -> None:
    """A hub receives large messages now and then (payloads up to 16 MiB, refused ones up to
    the door's limit). glibc serves them from its heap once it has freed one large block (its
    mmap threshold adapts upwards, up to 32 MiB), and a heap rarely shrinks: after a burst of
    large messages the hub kept ~70 MB it no longer used. A fixed threshold keeps every large
    buffer in pages of its own, returned to the kernel when freed. Small objects are not
    affected. Elsewhere than glibc, nothing is done."""
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(_M_MMAP_THRESHOLD, LARGE_ALLOCATION)
    except (OSError, AttributeError):
        return  # not glibc (musl has no mallopt)
