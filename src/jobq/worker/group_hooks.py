"""The worker SDK's FINISHED hook: ``@worker.on_group_finished``.

When a group has ended (after its finalize job), the hub tells each worker that ran one of its
members, once, with the group's id (native ``finished``): the worker calls its
``on_group_finished`` handlers so they can drop what they cached for that group (inputs
downloaded once for many members, open files, models). A base of
:class:`~jobq.worker.runtime.Worker`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("jobq.worker")

#: ``fn(group_id)``, sync or async.
GroupFinishedFn = Callable[[int], Awaitable[Any] | Any]


class GroupHooks:
    """The ``on_group_finished`` handlers of a worker, and their calls."""

    def _group_hooks(self) -> list[GroupFinishedFn]:
        hooks: list[GroupFinishedFn] | None = self.__dict__.get("_group_finished_hooks")
        if hooks is None:
            hooks = self.__dict__["_group_finished_hooks"] = []
        return hooks

    def on_group_finished(self, fn: GroupFinishedFn) -> GroupFinishedFn:
        """Decorator: ``@worker.on_group_finished`` registers ``fn(group_id)`` (sync or async),
        called once a group this worker ran members of has ended."""
        self._group_hooks().append(fn)
        return fn

    def _group_finished(self, group_id: int) -> None:
        """The hub's ``finished``: call every hook (an async one as a task); a hook that raises
        is logged, never stops the worker."""
        for fn in self._group_hooks():
            try:
                out = fn(group_id)
                if inspect.isawaitable(out):
                    task = asyncio.ensure_future(out)
                    task.add_done_callback(_logged)
                    self.__dict__.setdefault("_group_hook_tasks", set()).add(task)
                    task.add_done_callback(self.__dict__["_group_hook_tasks"].discard)
            except Exception:
                log.exception("on_group_finished hook failed for group %d", group_id)


def _logged(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("on_group_finished hook failed", exc_info=task.exception())
