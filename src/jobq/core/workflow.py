"""Groups and their finalize step: the rules, pure (dependencies: ``core/dependencies.py``).

Nothing here stores anything or reads a clock. A store calls :func:`record_end` (and the
others) inside the same atomic step as the member transition that triggers it, which is what
makes the finalize job happen exactly once; ``docs/workflows.md`` has the rules for users and
the wiring plan. A group of ``total`` members takes ``total + 1`` consecutive ids: its own,
then its members in member order (member ``i`` is job ``id + 1 + i``).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from jobq.core.errors import Conflict, InvalidRequest
from jobq.core.expand import MAX_MEMBERS, Expansion, parse_expand
from jobq.core.model import GROUP_POLICIES, GroupPolicy, JobSpec
from jobq.core.states import JobState

#: Default bytes of members' results inlined in the finalize job's payload (the rest are
#: referenced by member id and fetched by the handler). Half the default payload limit.
DEFAULT_INLINE_BUDGET = 8 * 1024 * 1024
#: The ``format`` of the finalize manifest.
FINALIZE_FORMAT = "jobq.group-outcomes/1"

_COMPLETED = JobState.COMPLETED.value
_END_KEYS = {state: state.value for state in JobState if state.terminal}


class GroupState(enum.StrEnum):
    RUNNING = "running"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self in (GroupState.COMPLETED, GroupState.FAILED, GroupState.CANCELLED)


_OUTCOMES = {JobState.COMPLETED: GroupState.COMPLETED, JobState.CANCELLED: GroupState.CANCELLED}


class Group(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A group as a store keeps it. ``ended`` counts members per terminal state; live members
    (queued, running, ...) are counted at read time (:func:`counts`)."""

    id: int
    #: The members' service ("" when they run different ones).
    service: str
    total: int
    created_at: float
    policy: GroupPolicy = "all_completed"
    finalize: JobSpec | None = None
    #: The ``expand`` mapping the members came from (keys normalized), to name each member's
    #: combination in the finalize input.
    expand: dict[str, Any] | None = None
    state: GroupState = GroupState.RUNNING
    ended: dict[str, int] = msgspec.field(default_factory=dict)
    finalize_id: int | None = None
    ended_at: float | None = None
    #: Why it failed or was cancelled.
    reason: str | None = None
    owner: str | None = None
    customer_id: str | None = None

    def member_index(self, job_id: int) -> int:
        index = job_id - self.id - 1
        if not 0 <= index < self.total:
            raise InvalidRequest(f"job {job_id} is not a member of group {self.id}")
        return index


def check_group(group: Group) -> Group:
    """A new group's rules: 1 to :data:`MAX_MEMBERS` members, a known policy, a finalize spec
    whose payload (the handler's args) is empty or JSON."""
    if not 1 <= group.total <= MAX_MEMBERS:
        raise InvalidRequest(f"a group has 1 to {MAX_MEMBERS:,} members, not {group.total:,}")
    if group.policy not in GROUP_POLICIES:
        raise InvalidRequest(f"policy must be one of {', '.join(GROUP_POLICIES)}")
    _finalize_args(group)
    return group


def _finalize_args(group: Group) -> Any:
    if group.finalize is None or not group.finalize.payload:
        return None
    try:
        return msgspec.json.decode(b"".join(group.finalize.payload))
    except msgspec.DecodeError:
        raise InvalidRequest("a finalize spec's payload (its handler's args) must be JSON") from None


def policy_holds(policy: str, total: int, ended: Mapping[str, int]) -> bool:
    """Whether a group whose members all ended succeeded by its policy."""
    return policy == "all_ended" or ended.get(_COMPLETED, 0) == total


def _finalize_outcome(state: JobState) -> GroupState:
    return _OUTCOMES.get(state, GroupState.FAILED)


def derive_state(
    group: Group, ended: Mapping[str, int] | None = None, finalize_state: JobState | None = None
) -> GroupState:
    """The group's state from the facts: its members' ended counts (``ended``, else the
    group's own) and its finalize job's state; a store can recompute it from its rows."""
    ended = group.ended if ended is None else ended
    if group.state is GroupState.CANCELLED:
        return GroupState.CANCELLED
    if sum(ended.values()) < group.total:
        return GroupState.RUNNING
    if not policy_holds(group.policy, group.total, ended):
        return GroupState.FAILED
    if group.finalize is None:
        return GroupState.COMPLETED
    if finalize_state is None or not finalize_state.terminal:
        return GroupState.FINALIZING
    return _finalize_outcome(finalize_state)


class GroupStep(msgspec.Struct, frozen=True):
    """What one event did to a group, and what the store must do in the same atomic step."""

    group: Group
    #: Submit the finalize job now (and record its id in ``group.finalize_id``).
    submit_finalize: bool = False
    #: The group has just ended: emit its end event, tell its workers FINISHED.
    ended: bool = False
    #: Cancel every member not yet ended, and the finalize job if it was submitted.
    cancel_rest: bool = False


def _failure_reason(group: Group, ended: Mapping[str, int]) -> str:
    missed = group.total - ended.get(_COMPLETED, 0)
    detail = ", ".join(f"{n} {state}" for state, n in sorted(ended.items()) if state != _COMPLETED)
    return f"{missed} of {group.total} members did not complete ({detail})"


def record_end(group: Group, member_index: int, state: JobState, now: float) -> GroupStep:
    """Member ``member_index`` reached terminal ``state``. Call it in the same atomic step as
    that member's transition (which happens once per run, so nothing is counted twice)."""
    key = _END_KEYS.get(state)
    if key is None:
        raise InvalidRequest(f"{state} is not an end")
    if not 0 <= member_index < group.total:
        raise InvalidRequest(f"group {group.id} has no member {member_index}")
    ended = group.ended.copy()
    ended[key] = ended.get(key, 0) + 1
    if (n := sum(ended.values())) > group.total:
        raise Conflict(f"group {group.id}: more member ends than members")
    if n < group.total or group.state is not GroupState.RUNNING:
        # The hot path; and cancelled groups count their members' ends, nothing follows.
        return GroupStep(msgspec.structs.replace(group, ended=ended))
    state_ = derive_state(group, ended)
    reason = _failure_reason(group, ended) if state_ is GroupState.FAILED else None
    at = now if state_.ended else None
    return GroupStep(
        msgspec.structs.replace(group, ended=ended, state=state_, ended_at=at, reason=reason),
        submit_finalize=state_ is GroupState.FINALIZING and group.finalize_id is None,
        ended=state_.ended,
    )


def record_finalize(group: Group, finalize_id: int) -> Group:
    """The finalize job ``finalize_id`` was created (same atomic step as :func:`record_end`)."""
    if group.finalize_id is not None:
        raise Conflict(f"group {group.id} already has finalize job {group.finalize_id}")
    return msgspec.structs.replace(group, finalize_id=finalize_id)


def record_finalize_end(group: Group, state: JobState, now: float, error: str | None = None) -> GroupStep:
    """The finalize job reached terminal ``state``: the group ends with that outcome."""
    if not state.terminal:
        raise InvalidRequest(f"{state} is not an end")
    if group.state is not GroupState.FINALIZING:
        return GroupStep(group)  # cancelled meanwhile: the group's end was already told
    outcome = _finalize_outcome(state)
    reason = None if outcome is GroupState.COMPLETED else f"finalize job {state}: {error or state}"
    return GroupStep(msgspec.structs.replace(group, state=outcome, ended_at=now, reason=reason), ended=True)


def cancel_group(group: Group, now: float, reason: str = "cancelled") -> GroupStep:
    """Cancel a group that has not ended: its live members and finalize job are cancelled."""
    if group.state.ended:
        raise Conflict(f"group {group.id} has already ended ({group.state})")
    cancelled = msgspec.structs.replace(group, state=GroupState.CANCELLED, ended_at=now, reason=reason)
    return GroupStep(cancelled, ended=True, cancel_rest=True)


def record_retry(group: Group, member_index: int | None, previous: JobState) -> Group:
    """An operator retries member ``member_index`` (``None``: the finalize job) that ended
    ``previous``. Only a running group, or one that failed for lack of completed members (it
    runs again), takes a member back; a failed finalize job may be retried."""
    if group.state is GroupState.CANCELLED:
        raise Conflict(f"group {group.id} was cancelled; its jobs cannot be retried")
    if member_index is None:
        if group.finalize_id is None or group.state is not GroupState.FAILED:
            raise Conflict(f"group {group.id} has no failed finalize job to retry")
        return msgspec.structs.replace(group, state=GroupState.FINALIZING, ended_at=None, reason=None)
    if not 0 <= member_index < group.total:
        raise InvalidRequest(f"group {group.id} has no member {member_index}")
    if group.finalize_id is not None:
        raise Conflict(f"group {group.id} has finalized; its members cannot be retried")
    if group.state is GroupState.COMPLETED:
        raise Conflict(f"group {group.id} has completed; its members cannot be retried")
    ended = dict(group.ended)
    if (left := ended.pop(previous.value, 0) - 1) < 0:
        raise Conflict(f"group {group.id} counts no {previous} member")
    ended.update({previous.value: left} if left else {})
    return msgspec.structs.replace(group, ended=ended, state=GroupState.RUNNING, ended_at=None, reason=None)


def counts(group: Group, live: Mapping[str, int] | None = None) -> dict[str, int]:
    """Members per state: the group's ended counts plus the live ones a store counted."""
    out = {state: n for state, n in (live or {}).items() if n}
    out.update(group.ended)
    return out


class GroupView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A group as every door shows it: ``counts`` per state (ended and live), ``progress`` the
    percentage of members ended, ``finalize`` the finalize job's id once submitted."""

    id: int
    state: GroupState
    total: int
    counts: dict[str, int]
    ended: int
    progress: float
    policy: str
    service: str
    created_at: float
    finalize: int | None = None
    ended_at: float | None = None
    reason: str | None = None
    owner: str | None = None
    customer_id: str | None = None
    #: The finalize job's result (the group's result), when asked for and it completed.
    result: list[bytes] | None = None


def view_of(group: Group, live: Mapping[str, int] | None = None) -> GroupView:
    """The view of ``group`` given its live members counted per state by a store."""
    ended = sum(group.ended.values())
    return GroupView(
        id=group.id, state=group.state, total=group.total, counts=counts(group, live), ended=ended,
        progress=round(100.0 * ended / group.total, 2) if group.total else 100.0,
        policy=group.policy, service=group.service, created_at=group.created_at,
        finalize=group.finalize_id, ended_at=group.ended_at, reason=group.reason,
        owner=group.owner, customer_id=group.customer_id,
    )  # fmt: skip


class GroupSubmitted(msgspec.Struct, kw_only=True):
    """The answer to a group submit: the group, its members' ids in member order, and whether
    the submit created it (a known idempotency key returns the first one)."""

    group: GroupView
    members: list[int]
    created: bool = True


def member_ids(group: Group) -> range:
    """The members' job ids, in member order."""
    return range(group.id + 1, group.id + 1 + group.total)


def is_member(group: Group, job_id: int) -> bool:
    return group.id < job_id <= group.id + group.total


# --- the finalize job's input ---


class MemberOutcome(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One member as the store hands it to :func:`finalize_input`."""

    index: int
    id: int
    state: JobState
    result: list[bytes] | None = None
    error: str | None = None


class ResultPlace(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """Where a member's result is: ``sizes`` of its frames; inline at ``offset`` of the data
    frame, or (``inline`` false) to be fetched as the member job's result."""

    inline: bool
    sizes: list[int]
    offset: int | None = None


class MemberEntry(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    index: int
    id: int
    state: str
    error: str | None = None
    result: ResultPlace | None = None


class Manifest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Frame 0 of a finalize job's payload (JSON). Frame 1 holds the inlined result bytes."""

    format: str
    group: int
    policy: str
    total: int
    counts: dict[str, int]
    members: list[MemberEntry]
    #: The finalize spec's own payload (a JSON value), for the handler's options.
    args: Any = None
    #: The group's ``expand`` mapping: member ``index``'s combination is :meth:`FinalizeInput.params`.
    expand: dict[str, Any] | None = None


def finalize_input(
    group: Group, outcomes: Iterable[MemberOutcome], *, inline_budget: int = DEFAULT_INLINE_BUDGET
) -> list[bytes]:
    """The finalize job's payload: ``[manifest JSON, inlined result bytes]``.

    Members are listed in member order, each with its id, state, its combination (``params``,
    for an expanded group), its error, and where its result is. Results are inlined in member
    order while they fit in ``inline_budget`` bytes; a result that does not fit is referenced
    (the handler fetches it by the member's id)."""
    ordered = sorted(outcomes, key=lambda o: o.index)
    if [o.index for o in ordered] != list(range(group.total)):
        raise InvalidRequest(f"group {group.id}: the outcomes are not its {group.total} members")
    entries: list[MemberEntry] = []
    blob: list[bytes] = []
    used = 0
    for o in ordered:
        place = None
        if o.result is not None:
            sizes = [len(frame) for frame in o.result]
            size = sum(sizes)
            if used + size <= inline_budget:
                place = ResultPlace(inline=True, sizes=sizes, offset=used)
                blob.extend(o.result)
                used += size
            else:
                place = ResultPlace(inline=False, sizes=sizes)
        entries.append(MemberEntry(index=o.index, id=o.id, state=o.state, error=o.error, result=place))
    manifest = Manifest(
        format=FINALIZE_FORMAT, group=group.id, policy=group.policy, total=group.total,
        counts=dict(group.ended), members=entries, args=_finalize_args(group), expand=group.expand,
    )  # fmt: skip
    return [msgspec.json.encode(manifest), b"".join(blob)]


@dataclass(frozen=True, slots=True)
class FinalizeInput:
    manifest: Manifest
    data: bytes
    expansion: Expansion | None = None

    def params(self, entry: MemberEntry) -> dict[str, Any] | None:
        """The member's combination, for a group made by expansion."""
        return self.expansion.combination_at(entry.index) if self.expansion else None

    def result(
        self, entry: MemberEntry, fetched: Mapping[int, Sequence[bytes]] | None = None
    ) -> list[bytes] | None:
        """A member's result frames: sliced from the data frame, or from ``fetched`` (member
        id → result) for a referenced one."""
        place = entry.result
        if place is None:
            return None
        if not place.inline:
            if fetched is None or entry.id not in fetched:
                raise InvalidRequest(f"member {entry.id}'s result was not fetched")
            return list(fetched[entry.id])
        ends = list(itertools.accumulate(place.sizes, initial=place.offset or 0))
        return [self.data[a:b] for a, b in itertools.pairwise(ends)]


def read_finalize_input(payload: Sequence[bytes]) -> FinalizeInput:
    """Decode a finalize job's payload (what a finalize handler receives)."""
    if not 1 <= len(payload) <= 2:
        raise InvalidRequest("a finalize payload is a manifest frame and a data frame")
    try:
        manifest = msgspec.json.decode(payload[0], type=Manifest)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"not a finalize manifest: {exc}") from None
    if manifest.format != FINALIZE_FORMAT:
        raise InvalidRequest(f"unknown finalize format {manifest.format!r}")
    expansion = parse_expand(manifest.expand) if manifest.expand else None
    return FinalizeInput(manifest, bytes(payload[1]) if len(payload) > 1 else b"", expansion)


def concat(payload: Sequence[bytes], fetched: Mapping[int, Sequence[bytes]] | None = None) -> list[bytes]:
    """The built-in ``concat`` finalize handler: completed members' results in member order.

    Args (the finalize spec's JSON payload): ``mode`` ``"join"`` (default: one frame, each
    member's frames joined, members separated by ``separator``, default none) or ``"frames"``
    (every frame of every member, boundaries kept). Members that did not complete are skipped
    (under ``all_ended``; their states are in the group's counts)."""
    inp = read_finalize_input(payload)
    args = inp.manifest.args if isinstance(inp.manifest.args, dict) else {}
    mode, separator = args.get("mode", "join"), args.get("separator", "")
    if mode not in ("join", "frames") or not isinstance(separator, str):
        raise InvalidRequest('concat args: mode is "join" or "frames", separator a string')
    results = [
        inp.result(entry, fetched) or [] for entry in inp.manifest.members if entry.state == _COMPLETED
    ]
    if mode == "frames":
        return [frame for frames in results for frame in frames]
    return [separator.encode().join(b"".join(frames) for frames in results)]
