"""jobq: a distributed job queue. One hub, many doors, one queue."""

from __future__ import annotations

__version__ = "0.1.0"
