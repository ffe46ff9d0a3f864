"""Dependencies (``after``) on Redis, the Python side: how a submit names prerequisites to
``submit.lua`` (the decisions run in Lua, ``store/lua/deps.lua``, in the script that creates or
ends a job).
"""

from __future__ import annotations

from collections.abc import Sequence

from jobq.core.model import JobSpec


def batch_refs(specs: Sequence[JobSpec]) -> dict[str, int] | None:
    """The batch's refs, each with its spec's position (1-based, as submit.lua counts the
    batch's jobs); None when no spec has one (the hub sends a batch in dependency order, so a
    ref always names an earlier spec)."""
    refs = {spec.ref: k for k, spec in enumerate(specs, 1) if spec.ref is not None}
    return refs or None


def after_value(spec: JobSpec, refs: dict[str, int] | None) -> str:
    """``spec.after`` as submit.lua takes it: ids, and ``#k`` for the k-th job of the batch."""
    if not spec.after:
        return ""
    return ",".join(f"#{(refs or {})[item]}" if isinstance(item, str) else str(item) for item in spec.after)
