"""The Redis store's Lua scripts (``store/lua``): loading them and calling them.

Each script is the shared prelude (``prelude.lua``, with the constants it shares with Python
filled in from where Python keeps them) followed by its own body, which runs as ``main()``
after ``begin()`` (``begin.lua``: the state of one call); what the body left for its end
(counts, fairness) is written after it by ``flush()``. On Redis 7 and later every script is a
function of one library, loaded when the store opens (``FUNCTION LOAD``) and called with
``FCALL``: the prelude's helpers are made once, not at every call. An older Redis gets each
script (``SCRIPT LOAD``), called by digest (``EVALSHA``). A Redis that lost them (restarted
empty, flushed) gets them again on the error that says so.

Which Lua function mirrors which Python function is mapped in ``docs/redis.md``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from jobq.core.retention import DEFAULT_FAILED_TTL, DEFAULT_RESULT_TTL
from jobq.core.retry import DEFAULT_MAX_LOSSES, SUSPECT_LOSSES
from jobq.core.timeline import FIRST_KEPT, MARKS_KEPT, PROGRESS_EVERY, PROGRESS_MARKS
from jobq.errors import JobqError, Unavailable
from jobq.store.redis_bus import BUS_AGE, BUS_LENGTH
from jobq.store.redis_client import RedisClient
from jobq.store.redis_codec import num

log = logging.getLogger("jobq.store.redis")

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


def _prelude(failed_ttl: float, result_ttl: float) -> str:
    """What every script runs before its body: the shared helpers with our constants filled in,
    and ``begin`` (the start of each call)."""
    folder = resources.files("jobq.store") / "lua"
    prelude = "\n".join(
        folder.joinpath(f"{part}.lua").read_text()
        # prelude: helpers; deps: dependencies (after); groups: record_end; begin: each call
        for part in ("prelude", "deps", "groups", "begin")
    )
    for name, value in constants(failed_ttl, result_ttl).items():
        # A number goes in as a literal: a library's top level, run when Redis loads it, may
        # call no function (not even tonumber).
        prelude = prelude.replace(f"tonumber('{name}')", _lua_number(value)).replace(name, value)
    return prelude


def _lua_number(value: str) -> str:
    """A number as a Lua literal (Lua has none for infinity)."""
    number = float(value)
    if math.isinf(number):
        return "(1/0)" if number > 0 else "(-1/0)"
    return value


def _body(name: str) -> str:
    return (resources.files("jobq.store") / "lua").joinpath(f"{name}.lua").read_text()


def _includes(names: Sequence[str]) -> str:
    return "".join(f"local function {other}_script(ARGV)\n{_body(other)}\nend\n" for other in names)


@functools.cache
def load_scripts(
    failed_ttl: float = DEFAULT_FAILED_TTL, result_ttl: float = DEFAULT_RESULT_TTL
) -> dict[str, str]:
    """Each script's source, for ``EVALSHA``: the prelude (the helpers are made anew at every
    call), then the body, run as ``main()`` after ``begin``."""
    prelude = _prelude(failed_ttl, result_ttl)
    return {
        name: f"{prelude}\n{_includes(INCLUDES.get(name, ()))}begin(KEYS)\nlocal function main()\n"
        f"{_body(name)}\nend\nlocal result = main()\nflush()\nreturn result\n"
        for name in SCRIPTS
    }


@functools.cache
def load_library(
    failed_ttl: float = DEFAULT_FAILED_TTL, result_ttl: float = DEFAULT_RESULT_TTL
) -> tuple[str, str]:
    """Every script as a function of one Redis library (Redis 7+, ``FCALL``): its name and
    source. The helpers are made once, when the library loads, instead of at every call (about
    30 µs of the Redis server's time per call, a third of a submit's: docs/performance.md).
    The name carries a digest of the source, so hubs of other versions (or other retention
    settings, which are constants in the code) on the same Redis each keep their own."""
    prelude = _prelude(failed_ttl, result_ttl)
    included = sorted({other for name in SCRIPTS for other in INCLUDES.get(name, ())})
    code = (
        "local ARGV -- the arguments of the call (a script's ARGV)\n"
        f"{prelude}\n{_includes(included)}"
        + "".join(f"local function main_{name}()\n{_body(name)}\nend\n" for name in SCRIPTS)
    )
    digest = hashlib.sha1(code.encode()).hexdigest()[:12]
    library = f"jobq_{digest}"
    registered = "".join(
        f"redis.register_function('{library}_{name}', function(keys, args)\n"
        f"  ARGV = args\n  begin(keys)\n  local result = main_{name}()\n  flush()\n  return result\nend)\n"
        for name in SCRIPTS
    )
    return library, f"#!lua name={library}\n{code}{registered}"


class Scripts:
    """The scripts of one store, by name. On Redis 7 and later they are functions of one
    library (``FCALL``), else scripts called by digest (``EVALSHA``)."""

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
        self.library, self.library_source = load_library(failed_ttl, result_ttl)
        #: Whether Redis runs the library (decided by ``load``).
        self.functions = False

    async def load(self) -> None:
        """Load the library (one round trip), or on a Redis without functions every script."""
        try:
            await self.client.cmd("FUNCTION", "LOAD", "REPLACE", self.library_source)
            self.functions = True
        except Unavailable:
            raise  # not an answer about functions: the store does not open
        except JobqError as exc:  # Redis before 7 (unknown command), or FUNCTION not allowed
            log.info("redis runs no functions (%s): the store calls its scripts by digest", exc)
            self.functions = False
            await self.client.pipeline([("SCRIPT", "LOAD", source) for source in self.sources.values()])

    async def call(self, name: str, *args: Any) -> Any:
        """Run script ``name`` on the namespace (its one declared key is the namespace tag)."""
        if self.functions:
            command: tuple[Any, ...] = ("FCALL", f"{self.library}_{name}", 1, self.client.tag, *args)
        else:
            command = ("EVALSHA", self.shas[name], 1, self.client.tag, *args)
        try:
            return await self.client.call(*command)
        except NoScriptError:
            # Redis restarted empty (or its scripts or functions were flushed): load again, once.
            if self.functions:
                await self.client.cmd("FUNCTION", "LOAD", "REPLACE", self.library_source)
            else:
                await self.client.cmd("SCRIPT", "LOAD", self.sources[name])
            return await self.client.call(*command)
