"""Process settings of the hub and the worker."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROGRAM = """
import sys, psutil
from jobq.process import return_large_buffers
if sys.argv[1] == "tuned":
    return_large_buffers()
process = psutil.Process()
def rss(): return process.memory_info().rss
warm = b"y" * (20 << 20); del warm  # the first large block freed raises glibc's threshold
before = rss()
kept = []
for _ in range(6):
    large = b"x" * (20 << 20)  # a large message
    kept.append(bytearray(64 * 1024))  # something small that outlives it
    del large
print(round((rss() - before) / 2**20, 1))
"""


def held_after_large_messages(mode: str) -> float:
    """MiB a fresh process still holds after freeing six 20 MiB buffers."""
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True)
    return float(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_large_buffers_go_back_to_the_kernel_once_freed() -> None:
    # After a burst of large messages the hub kept ~70 MB it no longer used (bench.fuzz: RSS
    # 57 -> 125 MB); glibc had served them from a heap that rarely shrinks.
    assert held_after_large_messages("tuned") < 5
    assert held_after_large_messages("default") > 10  # what the setting is for
