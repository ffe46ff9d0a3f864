"""The Redis store's Lua scripts (``store/lua``): loading them and calling them.

Each script is the shared prelude (``prelude.lua``, with the constants it shares with Python
filled in from where Python keeps them) followed by its own body, which runs as ``main()``;
what the body left for its end (counts, fairness) is written after it by ``flush()``. Scripts
are loaded once when the store opens (``SCRIPT LOAD``) and called by digest (``EVALSHA``); a
Redis that lost them (restarted, flushed) gets the script again on ``NOSCRIPT``.

Which Lua function mirrors which Python function is mapped in ``docs/redis.md``.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from jobq.core.retention import DEFAULT_FAILED_TTL, DEFAULT_RESULT_TTL
from jobq.core.retry import DEFAULT_MAX_LOSSES, SUSPECT_LOSSES
from jobq.core.timeline import FIRST_KEPT, MARKS_KEPT, PROGRESS_EVERY, PROGRESS_MARKS
from jobq.store.redis_bus import BUS_AGE, BUS_LENGTH
from jobq.store.redis_client import RedisClient
from jobq.store.redis_codec import num

SCRIPTS = (
    "submit",
    "claim",
    "complete",
    "fail",
    "release",
    "cancel",
    "retry",
    "progress",
    "attach",
    "detach",
    "touch",
    "adopt",
    "register",
    "sweep",
    "tick",
    "schedule",
    "fire",
    "group",  # groups: lua/groups.lua (in the prelude), group, finalize, gcancel
    "finalize",
    "gcancel",
)
#: Scripts that run other scripts' bodies, each as a function ``<name>_script(ARGV)`` (a table
#: standing for that script's ARGV): fire.lua creates its job with submit.lua's code.
INCLUDES: dict[str, tuple[str, ...]] = {"fire": ("submit",), "group": ("submit",)}


def constants(
    failed_ttl: float = DEFAULT_FAILED_TTL, result_ttl: float = DEFAULT_RESULT_TTL
) -> dict[str, str]:
    """The ``@NAME@`` placeholders of the prelude and their values, as the scripts read them
    (``failed_ttl``, ``result_ttl``: the store's, the hub's ``--failed-ttl``, ``--result-ttl``)."""
    return {
        "@FAILED_TTL@": num(failed_ttl),
        "@RESULT_TTL@": num(result_ttl),
        "@BUS_LENGTH@": str(BUS_LENGTH),
        "@BUS_AGE@": num(BUS_AGE),
        "@MAX_LOSSES@": str(DEFAULT_MAX_LOSSES),
        "@SUSPECT_LOSSES@": str(SUSPECT_LOSSES),
        "@MARKS_KEPT@": str(MARKS_KEPT),
        "@FIRST_KEPT@": str(FIRST_KEPT),
        "@PROGRESS_EVERY@": num(PROGRESS_EVERY),
        "@PROGRESS_MARKS@": str(PROGRESS_MARKS),
    }


@functools.cache
def load_scripts(
    failed_ttl: float = DEFAULT_FAILED_TTL, result_ttl: float = DEFAULT_RESULT_TTL
) -> dict[str, str]:
    """Each script's source: the prelude (with our constants filled in) and its own body."""
    folder = resources.files("jobq.store") / "lua"
    prelude = folder.joinpath("prelude.lua").read_text()
    prelude += "\n" + folder.joinpath("deps.lua").read_text()  # dependencies (after): every script
    prelude += "\n" + folder.joinpath("groups.lua").read_text()  # groups (record_end): every script
    for name, value in constants(failed_ttl, result_ttl).items():
        prelude = prelude.replace(name, value)
    included = {
        name: "".join(
            f"local function {other}_script(ARGV)\n{folder.joinpath(f'{other}.lua').read_text()}\nend\n"
            for other in INCLUDES.get(name, ())
        )
        for name in SCRIPTS
    }
    return {
        name: f"{prelude}\n{included[name]}local function main()\n"
        f"{folder.joinpath(f'{name}.lua').read_text()}\nend\nlocal result = main()\nflush()\nreturn result\n"
        for name in SCRIPTS
    }


class Scripts:
    """The scripts of one store, by name: ``sources`` and their ``shas`` (digests)."""

    def __init__(
        self,
        client: RedisClient,
        *,
        failed_ttl: float = DEFAULT_FAILED_TTL,
        result_ttl: float = DEFAULT_RESULT_TTL,
    ) -> None:
        self.client = client
        self.sources = load_scripts(failed_ttl, result_ttl)
        self.shas = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in self.sources.items()}

    async def load(self) -> None:
        """Load every script into Redis (one round trip)."""
        await self.client.pipeline([("SCRIPT", "LOAD", source) for source in self.sources.values()])

    async def call(self, name: str, *args: Any) -> Any:
        """Run script ``name`` on the namespace (its one declared key is the namespace tag)."""
        command = ("EVALSHA", self.shas[name], 1, self.client.tag, *args)
        try:
            return await self.client.call(*command)
        except NoScriptError:
            # Redis restarted (or flushed its scripts): load it again, once.
            await self.client.cmd("SCRIPT", "LOAD", self.sources[name])
            return await self.client.call(*command)
