"""Shapes and worker profiles in Redis, and which profile satisfies which shape.

As in ``core/index.py``, queued jobs wait in one queue per requirement shape and each worker
profile has the set of shapes it satisfies (``elig:<profile>``, and ``sprof:<shape>`` the other
way). A shape or a profile seen for the first time is registered with the pairs that match,
decided here by :func:`~jobq.core.matching.first_miss` against a snapshot of the registry; the
``register`` script refuses if the registry changed since (a generation counter) and we try
again, so two hubs registering a new shape and a new profile at once never miss a pair.

Shapes and profiles are named by a digest of their canonical form (``redis_codec``), so they
never change once named: each hub keeps those it has seen, decoded, for good.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jobq.core.matching import Profile, Shape, first_miss
from jobq.errors import Unavailable
from jobq.store.redis_client import RedisClient
from jobq.store.redis_codec import decode_profile, decode_shape, encode_profile, encode_shape
from jobq.store.redis_scripts import Scripts

#: Tries to register a new shape or profile while other hubs keep registering others.
REGISTER_TRIES = 20
#: Encoded shapes kept at most (most jobs are of a few shapes; the cache starts over past this).
ENCODINGS_KEPT = 10_000

#: A shape as it is registered: (its id, its blob, its meta for the scripts).
EncodedShape = tuple[str, bytes, str]


class ShapeRegistry:
    def __init__(self, client: RedisClient, scripts: Scripts) -> None:
        self.client = client
        self.scripts = scripts
        self._shapes: dict[str, Shape] = {}
        self._encodings: dict[Shape, EncodedShape] = {}
        self._profiles: dict[str, Profile] = {}

    async def _register(
        self, shapes: Mapping[str, tuple[Shape, bytes, str]], profiles: Mapping[str, tuple[Profile, bytes]]
    ) -> None:
        """Make new shapes and profiles known, each with the pairs that match. The pairs are
        computed against a snapshot of the registry; the script refuses if it changed since."""
        key = self.client.key
        for _ in range(REGISTER_TRIES):
            gen, shape_blobs, profile_blobs = await self.client.pipeline(
                [("GET", key("gen")), ("HGETALL", key("shapes")), ("HGETALL", key("profiles"))],
                transaction=True,
            )
            known_shapes = self.decode_shapes(shape_blobs)
            known_profiles = self._decode_profiles(profile_blobs)
            new_shapes = {sid: v for sid, v in shapes.items() if sid not in known_shapes}
            new_profiles = {pid: v for pid, v in profiles.items() if pid not in known_profiles}
            if not new_shapes and not new_profiles:
                return
            all_shapes = {**known_shapes, **{sid: v[0] for sid, v in new_shapes.items()}}
            all_profiles = {**known_profiles, **{pid: v[0] for pid, v in new_profiles.items()}}
            pairs: list[str] = []
            for sid, shape in all_shapes.items():
                for pid, profile in all_profiles.items():
                    if (sid in new_shapes or pid in new_profiles) and first_miss(shape, profile) is None:
                        pairs += [sid, pid]
            args: list[Any] = [gen or b"0", len(new_shapes)]
            for sid, (_, blob, meta) in new_shapes.items():
                args += [sid, blob, meta]
            args.append(len(new_profiles))
            for pid, (_, blob) in new_profiles.items():
                args += [pid, blob]
            args += [len(pairs) // 2, *pairs]
            if await self.scripts.call("register", *args) == 1:
                self._shapes.update({sid: v[0] for sid, v in new_shapes.items()})
                self._profiles.update({pid: v[0] for pid, v in new_profiles.items()})
                return
        raise Unavailable("could not register a new job shape or worker profile: try again")

    # ------------------------------------------------------------------ shapes

    def encoded(self, shape: Shape) -> EncodedShape:
        """(id, blob, meta) of a shape, computed once per distinct shape."""
        found = self._encodings.get(shape)
        if found is None:
            if len(self._encodings) > ENCODINGS_KEPT:
                self._encodings.clear()
            found = self._encodings[shape] = encode_shape(shape)
        return found

    async def ensure_shapes(self, shapes: Mapping[str, tuple[Shape, bytes, str]]) -> None:
        """Register those of ``shapes`` (by id) that Redis does not know yet."""
        unknown = [sid for sid in shapes if sid not in self._shapes]
        if not unknown:
            return
        metas = await self.client.cmd("HMGET", self.client.key("smeta"), *unknown)
        for sid, meta in zip(unknown, metas, strict=True):
            if meta is not None:
                self._shapes[sid] = shapes[sid][0]
        missing = {sid: shapes[sid] for sid in unknown if sid not in self._shapes}
        if missing:
            await self._register(missing, {})

    async def shape(self, sid: str) -> Shape | None:
        shape = self._shapes.get(sid)
        if shape is None:
            blob = await self.client.cmd("HGET", self.client.key("shapes"), sid)
            if blob is None:
                return None
            shape = self._shapes[sid] = decode_shape(blob)
        return shape

    async def all_shapes(self) -> dict[str, Shape]:
        """Every registered shape, by id."""
        return self.decode_shapes(await self.client.cmd("HGETALL", self.client.key("shapes")))

    def decode_shapes(self, blobs: Mapping[bytes, bytes]) -> dict[str, Shape]:
        out = {}
        for raw_id, blob in blobs.items():
            sid = raw_id.decode()
            shape = self._shapes.get(sid)
            if shape is None:
                shape = self._shapes[sid] = decode_shape(blob)
            out[sid] = shape
        return out

    # ------------------------------------------------------------------ profiles

    async def ensure_profile(self, profile: Profile) -> str:
        """Register a worker's profile if Redis does not know it yet; returns its id."""
        pid, blob = encode_profile(profile)
        if (
            pid not in self._profiles
            and await self.client.cmd("HEXISTS", self.client.key("profiles"), pid) == 0
        ):
            await self._register({}, {pid: (profile, blob)})
        self._profiles.setdefault(pid, profile)
        return pid

    async def profiles(self, pids: Iterable[str]) -> dict[str, Profile]:
        """The registered profiles among ``pids``, by id (read from Redis if not seen yet)."""
        wanted = set(pids)
        unknown = [pid for pid in wanted if pid not in self._profiles]
        if unknown:
            blobs = await self.client.cmd("HMGET", self.client.key("profiles"), *unknown)
            for pid, blob in zip(unknown, blobs, strict=True):
                if blob is not None:
                    self._profiles[pid] = decode_profile(blob)
        return {pid: self._profiles[pid] for pid in wanted if pid in self._profiles}

    def _decode_profiles(self, blobs: Mapping[bytes, bytes]) -> dict[str, Profile]:
        out = {}
        for raw_id, blob in blobs.items():
            pid = raw_id.decode()
            profile = self._profiles.get(pid)
            if profile is None:
                profile = self._profiles[pid] = decode_profile(blob)
            out[pid] = profile
        return out
