"""Identity in the hub: the guard (tokens, lockout, audit, revocation) and every client and
worker call of a Hub whose ``HubConfig.auth`` names an auth file.

No process and no socket: a Hub over ``memory://`` with the fake clock, links and subscribers of
``test_hub.py``; callers come from ``hub.authenticate`` with tokens created in a temporary file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from jobq.authfile import AuthFile, CurveEntry, create_token, read, revoke, write
from jobq.config import HubConfig
from jobq.core.auth import LOCAL_CALLER, ROLES, Caller, Principal, may_operate, may_read_history
from jobq.core.errors import Forbidden, Unauthorized
from jobq.core.model import Completion, Job, JobFilter, JobSpec, Submitted
from jobq.core.states import JobState
from jobq.core.views import WorkerHello
from jobq.errors import LeaseLost
from jobq.hub.access import ScopedSubscriber
from jobq.hub.guard import FAILURE_WINDOW, LOCKOUT, MAX_FAILURES, Guard
from jobq.hub.hub import Hub, SubmitOutcome
from jobq.store.base import open_store
from tests.unit.test_hub import FakeClock, FakeLink, FakeSubscriber, until

QUEUED = JobState.QUEUED
RUNNING = JobState.RUNNING
COMPLETED = JobState.COMPLETED
CANCELLED = JobState.CANCELLED

PEER = "10.0.0.7:40000"


def records(path: Path) -> list[dict[str, Any]]:
    """The audit log's records (JSON lines)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def reload_at_once(guard: Guard) -> None:
    """Let the guard look at the auth file on every refresh (it waits half a second between
    looks, in real time, which a unit test does not spend)."""
    watched = guard._watched
    assert watched is not None
    watched.interval = 0.0


# ---------------------------------------------------------------- the guard


class Monotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def auth_path(tmp_path: Path) -> Path:
    return tmp_path / "auth.json"


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


@pytest.fixture
def monotonic() -> Monotonic:
    return Monotonic()


@pytest.fixture
def guard(auth_path: Path, audit_path: Path, monotonic: Monotonic) -> Iterator[Guard]:
    """A guard over an auth file that tests add tokens to (looked at again on every refresh)."""
    create_token(auth_path, "admin", name="placeholder")
    made = Guard(str(auth_path), str(audit_path), monotonic=monotonic)
    reload_at_once(made)
    yield made
    made.audit.close()


def test_without_auth_every_peer_is_the_local_admin(audit_path: Path) -> None:
    guard = Guard(None, str(audit_path))
    try:
        assert not guard.enabled
        assert guard.authenticate(None, door="zmq") is LOCAL_CALLER
        caller = guard.authenticate(None, door="line", peer=PEER)
        assert (caller.principal, caller.door, caller.peer) == (LOCAL_CALLER.principal, "line", PEER)
        assert guard.authenticate("jq_whatever", door="zmq", peer=PEER).unrestricted
        trusted = Principal(name="trusted:x", role="worker")
        assert guard.authenticate(None, door="mdp", trusted=trusted).principal is trusted
        assert guard.curve_caller("k" * 40, door="zmq") is None
        assert guard.still_valid(Principal(name="anyone", role="client"))
    finally:
        guard.audit.close()
    assert records(audit_path) == []


def test_a_token_names_its_principal(guard: Guard, auth_path: Path) -> None:
    secret, _ = create_token(auth_path, "client", customers=["A"], name="ci")
    caller = guard.authenticate(secret, door="http", peer=PEER)
    assert caller.principal == Principal(name="ci", role="client", customers=frozenset({"A"}))
    assert (caller.door, caller.peer) == ("http", PEER)
    assert not caller.unrestricted
    assert guard.authenticate(secret, door="zmq", peer=PEER).principal == caller.principal


def test_a_trusted_listener_needs_no_token(guard: Guard) -> None:
    trusted = Principal(name="trusted:tcp://127.0.0.1:5556", role="worker", services=frozenset({"echo"}))
    caller = guard.authenticate(None, door="mdp", peer=PEER, trusted=trusted)
    assert caller.principal is trusted
    assert guard.still_valid(trusted)


def test_no_token_is_refused_and_audited(guard: Guard, audit_path: Path) -> None:
    with pytest.raises(Unauthorized, match="no token"):
        guard.authenticate(None, door="zmq", peer=PEER)
    with pytest.raises(Unauthorized):
        guard.authenticate("", door="zmq", peer=PEER)
    [record, _] = records(audit_path)
    assert record["event"] == "refused"
    assert (record["principal"], record["door"], record["peer"]) == ("anonymous", "zmq", PEER)
    assert record["action"] == "authenticate"


def test_an_unknown_token_is_refused_and_its_text_never_logged(
    guard: Guard, auth_path: Path, audit_path: Path
) -> None:
    forged = "jq_" + "Q" * 43
    almost, _ = create_token(auth_path, "admin")
    with pytest.raises(Unauthorized, match="unknown or revoked token") as info:
        guard.authenticate(forged, door="line", peer=PEER)
    assert forged not in info.value.message
    with pytest.raises(Unauthorized):
        guard.authenticate(almost[:-1], door="line", peer=PEER)
    log = audit_path.read_text()
    assert forged not in log
    assert "Q" * 10 not in log
    assert almost[:-1] not in log
    assert almost[3:20] not in log
    [first, second] = records(audit_path)
    assert first == {
        "at": first["at"],
        "event": "refused",
        "principal": "anonymous",
        "role": "",
        "door": "line",
        "peer": PEER,
        "action": "authenticate",
        "reason": "unknown or revoked token",
    }
    assert second["reason"] == "unknown or revoked token"


def test_a_host_that_fails_too_often_is_locked_out_and_others_are_not(
    guard: Guard, auth_path: Path, monotonic: Monotonic
) -> None:
    secret, _ = create_token(auth_path, "client", name="ci")
    for i in range(MAX_FAILURES - 1):
        with pytest.raises(Unauthorized, match="unknown or revoked"):
            guard.authenticate(f"jq_wrong{i}", door="zmq", peer=f"10.0.0.9:{1000 + i}")
    # one failure short of the limit: a valid token still gets in from that host
    assert guard.authenticate(secret, door="zmq", peer="10.0.0.9:2000").name == "ci"
    guard._known.clear()  # as after a reload: the next look-up goes through the rate limit
    with pytest.raises(Unauthorized, match="unknown or revoked"):
        guard.authenticate("jq_wrong-last", door="zmq", peer="10.0.0.9:3000")
    with pytest.raises(Unauthorized, match=r"too many failed attempts from 10\.0\.0\.9"):
        guard.authenticate(secret, door="zmq", peer="10.0.0.9:3001")
    # another host is not concerned
    assert guard.authenticate(secret, door="zmq", peer="10.0.0.10:3000").name == "ci"
    monotonic.now += LOCKOUT - 1
    guard._known.clear()
    with pytest.raises(Unauthorized, match="too many failed attempts"):
        guard.authenticate(secret, door="zmq", peer="10.0.0.9:3002")
    monotonic.now += 2
    assert guard.authenticate(secret, door="zmq", peer="10.0.0.9:3003").name == "ci"


def test_failures_spread_over_more_than_the_window_do_not_lock_out(
    guard: Guard, auth_path: Path, monotonic: Monotonic
) -> None:
    secret, _ = create_token(auth_path, "client", name="ci")
    step = FAILURE_WINDOW / (MAX_FAILURES - 1) + 0.1
    for i in range(MAX_FAILURES * 2):
        monotonic.now += step
        with pytest.raises(Unauthorized, match="unknown or revoked"):
            guard.authenticate(f"jq_wrong{i}", door="zmq", peer="10.0.0.9:1")
    assert guard.authenticate(secret, door="zmq", peer="10.0.0.9:1").name == "ci"


def test_a_token_revoked_in_the_file_stops_working_after_a_refresh(guard: Guard, auth_path: Path) -> None:
    secret, _ = create_token(auth_path, "worker", name="gpu")
    kept, _ = create_token(auth_path, "client", name="ci")
    heard: list[set[str]] = []
    guard.on_revoke(heard.append)
    caller = guard.authenticate(secret, door="zmq", peer=PEER)
    assert guard.still_valid(caller.principal)
    revoke(auth_path, "gpu")
    guard.refresh()
    assert heard == [{"gpu"}]
    assert not guard.still_valid(caller.principal)
    with pytest.raises(Unauthorized, match="unknown or revoked"):
        guard.authenticate(secret, door="zmq", peer=PEER)
    assert guard.authenticate(kept, door="zmq", peer=PEER).name == "ci"
    guard.refresh()  # nothing changed since: nobody is told again
    assert heard == [{"gpu"}]


def test_a_new_token_works_at_once_and_an_added_one_revokes_nothing(guard: Guard, auth_path: Path) -> None:
    heard: list[set[str]] = []
    guard.on_revoke(heard.append)
    secret, _ = create_token(auth_path, "client", name="late")
    assert guard.authenticate(secret, door="zmq", peer=PEER).name == "late"
    guard.refresh()
    assert heard == []


def test_a_broken_auth_file_keeps_the_previous_one_in_force(guard: Guard, auth_path: Path) -> None:
    secret, _ = create_token(auth_path, "client", name="ci")
    guard.refresh()
    auth_path.write_text("{ not json")
    guard.refresh()  # logged, not raised
    guard._known.clear()
    assert guard.authenticate(secret, door="zmq", peer=PEER).name == "ci"


def test_a_curve_key_listed_in_the_file_names_its_principal(guard: Guard, auth_path: Path) -> None:
    data = read(auth_path)
    data.curve.append(CurveEntry(name="box", role="worker", public_key="K" * 40, customers=["B"]))
    write(auth_path, data)
    caller = guard.curve_caller("K" * 40, door="zmq", peer=PEER)
    assert caller is not None
    assert caller.principal == Principal(name="box", role="worker", customers=frozenset({"B"}))
    assert guard.curve_caller("L" * 40, door="zmq", peer=PEER) is None
    write(auth_path, AuthFile(tokens=read(auth_path).tokens))
    assert guard.curve_caller("K" * 40, door="zmq", peer=PEER) is None


# ---------------------------------------------------------------- a hub with authentication

TOKENS: dict[str, dict[str, Any]] = {
    "root": {"role": "admin"},
    "ci-a": {"role": "client", "customers": ["A"]},
    "ci-b": {"role": "client", "customers": ["B"]},
    "solo": {"role": "client"},
    "solo2": {"role": "client"},
    "eyes": {"role": "monitor"},
    "gpu": {"role": "worker"},
    "gpu2": {"role": "worker"},
    "gpu-b": {"role": "worker", "customers": ["B"], "services": ["echo"]},
    "render": {"role": "worker", "services": ["render"]},
}


class World:
    """A started hub with an auth file, its fake clock, and a caller per token of TOKENS."""

    def __init__(self, hub: Hub, clock: FakeClock, auth: Path, audit: Path, secrets: dict[str, str]) -> None:
        self.hub = hub
        self.clock = clock
        self.auth = auth
        self.audit = audit
        self.secrets = secrets
        self.callers = {
            name: hub.authenticate(secret, door="zmq", peer=PEER) for name, secret in secrets.items()
        }

    def __getitem__(self, name: str) -> Caller:
        return self.callers[name]

    async def submit(self, who: str, *specs: JobSpec) -> list[SubmitOutcome]:
        return await self.hub.submit(specs, caller=self[who])

    async def submit_ids(self, who: str, *specs: JobSpec) -> list[int]:
        ids = []
        for outcome in await self.submit(who, *specs):
            assert isinstance(outcome, Submitted), outcome
            ids.append(outcome.job.id)
        return ids

    async def attach(
        self,
        who: str,
        worker_id: str,
        *,
        services: Sequence[str] = ("echo",),
        slots: int = 1,
        capabilities: dict[str, Any] | None = None,
        link: FakeLink | None = None,
    ) -> FakeLink:
        link = link or FakeLink()
        hello = WorkerHello(
            id=worker_id, services=list(services), slots=slots, capabilities=capabilities or {}
        )
        caller = LOCAL_CALLER if who == "local" else self[who]
        await self.hub.attach(hello, link, caller=caller)
        return link

    async def settle(self) -> None:
        await until(lambda: not self.hub._tasks)

    async def run(self, *job_ids: int, result: bytes = b"done") -> None:
        """Run these jobs to completion on an unscoped worker attached for the purpose."""
        link = await self.attach("gpu", "runner", slots=len(job_ids) + 10)
        await until(lambda: set(job_ids) <= set(link.ids))
        for job_id, token in link.attempts:
            if job_id in job_ids:
                [outcome] = await self.hub.complete("runner", [Completion(job_id, token, [result])])
                assert isinstance(outcome, Job), outcome
        await self.hub.detach("runner")

    def refusals(self) -> list[dict[str, Any]]:
        return [r for r in records(self.audit) if r["event"] == "refused"]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    auth, audit = tmp_path / "auth.json", tmp_path / "audit.log"
    secrets = {name: create_token(auth, name=name, **kw)[0] for name, kw in TOKENS.items()}
    config = HubConfig(
        store="memory://",
        tick=3600.0,  # the tests move time themselves
        heartbeat=1.0,
        liveness=5,
        lease_ttl=30.0,
        auth=str(auth),
        audit=str(audit),
    )
    clock = FakeClock()
    hub = Hub(open_store("memory://"), config, clock=clock, rand=lambda: 0.0)
    await hub.start()
    try:
        yield World(hub, clock, auth, audit, secrets)
    finally:
        if not hub.draining:
            await hub.stop(grace=0)
        hub.guard.audit.close()


def spec(customer: str | None = None, payload: bytes = b"secret", **kw: Any) -> JobSpec:
    return JobSpec(service="echo", payload=[payload], customer_id=customer, **kw)


async def refused(world: World, who: str, action: str, target: str) -> dict[str, Any]:
    """The last audit record, which must be this refusal."""
    record = world.refusals()[-1]
    assert (record["principal"], record["action"], record["target"]) == (who, action, target)
    assert (record["door"], record["peer"], record["role"]) == ("zmq", PEER, TOKENS[who]["role"])
    return record


# ---------------------------------------------------------------- clients


async def test_a_client_submits_as_its_customer_and_itself(world: World) -> None:
    [outcome] = await world.submit("ci-a", spec(owner="root"))
    assert isinstance(outcome, Submitted)
    assert (outcome.job.customer_id, outcome.job.owner) == ("A", "ci-a")
    [foreign] = await world.submit("ci-a", spec("B"))
    assert isinstance(foreign, Forbidden)
    assert "customer 'B'" in foreign.message
    await refused(world, "ci-a", "submit", "echo")
    assert len(await world.hub.list_jobs(JobFilter())) == 1  # the refused spec created nothing


async def test_a_refused_spec_fails_alone_in_a_batch(world: World) -> None:
    outcomes = await world.submit("ci-a", spec(), spec("B"), spec("A"))
    assert [type(o) for o in outcomes] == [Submitted, Forbidden, Submitted]


async def test_a_client_token_sees_only_its_customers_jobs(world: World) -> None:
    a1, b1 = await world.submit_ids("root", spec("A"), spec("B"))
    [a2] = await world.submit_ids("ci-a", spec())
    [b2] = await world.submit_ids("ci-b", spec())
    hub, ci_a = world.hub, world["ci-a"]

    assert (await hub.get(a1, caller=ci_a)).payload == [b"secret"]
    assert (await hub.find(a2, caller=ci_a)) is not None
    for job_id in (b1, b2):
        with pytest.raises(Forbidden):
            await hub.get(job_id, caller=ci_a)
        with pytest.raises(Forbidden):
            await hub.find(job_id, caller=ci_a)
        with pytest.raises(Forbidden):
            await hub.explain(job_id, caller=ci_a)
        with pytest.raises(Forbidden):
            await hub.wait(job_id, 0.01, caller=ci_a)
    await refused(world, "ci-a", "read", f"job {b2}")
    assert (await hub.explain(a1, caller=ci_a)).id == a1

    assert sorted(j.id for j in await hub.list_jobs(JobFilter(), caller=ci_a)) == [a1, a2]
    assert sorted(j.id for j in await hub.list_jobs(JobFilter(customer_id="A"), caller=ci_a)) == [a1, a2]
    with pytest.raises(Forbidden):
        await hub.list_jobs(JobFilter(customer_id="B"), caller=ci_a)
    await refused(world, "ci-a", "read", "customer B")
    assert [j.id for j in await hub.list_jobs(JobFilter(ids=[b1, b2, a1]), caller=ci_a)] == [a1]
    assert sorted(j.id for j in await hub.list_jobs(JobFilter(), caller=world["ci-b"])) == [b1, b2]

    stats = await hub.stats(caller=ci_a)
    assert stats.jobs.by_state == {"queued": 2}
    assert stats.jobs.by_service == {"echo": {"queued": 2}}
    assert stats.counters == {}
    assert (await hub.stats()).jobs.by_state == {"queued": 4}


async def test_a_blocked_listing_is_scoped_too(world: World) -> None:
    await world.submit_ids("root", spec("A"), spec("B"))
    jobs = await world.hub.list_jobs(JobFilter(), blocked=True, caller=world["ci-a"])
    assert all(job.customer_id == "A" for job in jobs)


async def test_a_client_hears_only_of_its_customers_jobs(world: World) -> None:
    heard, everything = FakeSubscriber(), FakeSubscriber()
    world.hub.watch_all(heard, caller=world["ci-a"])
    world.hub.watch_all(everything)
    a, b = await world.submit_ids("root", spec("A"), spec("B"))
    await world.run(a, b)
    await until(lambda: [e.id for e in everything.events if e.kind == "completed"] == [a, b])
    assert {e.id for e in heard.events} == {a}
    assert [e.kind for e in heard.events] == ["submitted", "started", "completed"]
    assert heard.events[-1].result == [b"done"]

    watched = FakeSubscriber()
    c, d = await world.submit_ids("root", spec("A"), spec("B"))
    world.hub.watch(watched, [c, d], caller=world["ci-a"])
    await world.run(c, d)
    await until(lambda: [e.id for e in everything.events if e.kind == "completed"] == [a, b, c, d])
    assert {e.id for e in watched.events} == {c}


async def test_unwatch_with_the_plain_subscriber_finds_its_scoped_wrapper(world: World) -> None:
    heard = FakeSubscriber()
    world.hub.watch_all(heard, caller=world["ci-a"])
    assert ScopedSubscriber(heard, world["ci-a"].principal) == heard
    world.hub.unwatch(heard)
    await world.submit_ids("root", spec("A"))
    await world.settle()
    assert heard.events == []


async def test_a_client_cannot_cancel_or_retry_another_customers_job(world: World) -> None:
    [b] = await world.submit_ids("ci-b", spec())
    with pytest.raises(Forbidden, match=f"cannot cancel job {b}"):
        await world.hub.cancel(b, caller=world["ci-a"])
    await refused(world, "ci-a", "cancel", f"job {b}")
    assert (await world.hub.get(b)).state is QUEUED
    await world.hub.cancel(b, caller=world["ci-b"])
    with pytest.raises(Forbidden, match=f"cannot retry job {b}"):
        await world.hub.retry(b, caller=world["ci-a"])
    await refused(world, "ci-a", "retry", f"job {b}")
    assert (await world.hub.get(b)).state is CANCELLED
    await world.hub.retry(b, caller=world["ci-b"])
    assert (await world.hub.get(b)).state is QUEUED
    actions = [
        (r["principal"], r["action"], r["target"]) for r in records(world.audit) if r["event"] == "action"
    ]
    assert actions == [("ci-b", "cancel", f"job {b}"), ("ci-b", "retry", f"job {b}")]


async def test_a_client_without_customers_sees_only_what_it_submitted(world: World) -> None:
    [mine] = await world.submit_ids("solo", spec())
    [mine_for_z] = await world.submit_ids("solo", spec("Z"))
    [theirs] = await world.submit_ids("solo2", spec())
    [admins] = await world.submit_ids("root", spec())
    [a] = await world.submit_ids("ci-a", spec())
    hub, solo = world.hub, world["solo"]
    assert (await hub.get(mine, caller=solo)).owner == "solo"
    assert sorted(j.id for j in await hub.list_jobs(JobFilter(), caller=solo)) == [mine, mine_for_z]
    for job_id in (theirs, admins, a):
        with pytest.raises(Forbidden):
            await hub.get(job_id, caller=solo)
        with pytest.raises(Forbidden):
            await hub.cancel(job_id, caller=solo)
    assert (await hub.stats(caller=solo)).jobs.by_state == {"queued": 2}
    heard = FakeSubscriber()
    hub.watch_all(heard, caller=solo)
    await hub.cancel(theirs)
    await hub.cancel(mine)
    await until(lambda: bool(heard.events))
    await world.settle()
    assert [(e.id, e.kind) for e in heard.events] == [(mine, "cancelled")]


async def test_an_idempotency_key_does_not_reach_another_customers_job(world: World) -> None:
    await world.submit_ids("ci-a", spec(payload=b"A's secret", idempotency_key="order-1"))
    [outcome] = await world.submit("ci-b", spec(payload=b"mine", idempotency_key="order-1"))
    if isinstance(outcome, Submitted):
        assert outcome.job.customer_id == "B"
        assert outcome.job.payload == [b"mine"]


# ---------------------------------------------------------------- monitors and workers


async def test_a_monitor_sees_jobs_and_events_without_payloads_or_results(world: World) -> None:
    hub, eyes = world.hub, world["eyes"]
    heard = FakeSubscriber()
    hub.watch_all(heard, caller=eyes)
    a, b = await world.submit_ids("root", spec("A"), spec("B"))
    await world.run(a, b)
    await until(lambda: len([e for e in heard.events if e.kind == "completed"]) == 2)
    assert {e.id for e in heard.events} == {a, b}
    assert all(e.result is None and e.partial is None for e in heard.events)

    job = await hub.get(a, caller=eyes)
    assert (job.id, job.state, job.customer_id) == (a, COMPLETED, "A")
    assert (job.payload, job.result) == ([], None)
    assert (await hub.get(a)).result == [b"done"]  # stripped from the monitor's copy only
    listed = await hub.list_jobs(JobFilter(), caller=eyes)
    assert sorted(j.id for j in listed) == [a, b]
    assert all(j.payload == [] and j.result is None for j in listed)
    ends = FakeSubscriber()
    hub.watch_ends(ends, [job], caller=eyes)
    assert [e.result for e in ends.events] == [None]

    stats = await hub.stats(caller=eyes)
    assert stats.jobs.by_state == {"completed": 2}
    assert stats.counters["completed"] == 2
    assert await hub.workers(caller=eyes) == []
    assert (await hub.explain(a, caller=eyes)).id == a


async def test_a_monitor_hears_progress_without_partial_results(world: World) -> None:
    link = await world.attach("gpu", "w1")
    [a] = await world.submit_ids("root", spec("A"))
    await until(lambda: link.ids == [a])
    monitor, client = FakeSubscriber(), FakeSubscriber()
    world.hub.watch_all(monitor, caller=world["eyes"])
    world.hub.watch(client, [a], caller=world["ci-a"])
    [(_, token)] = link.attempts
    await world.hub.progress("w1", a, token, 0.5, "half way", data=[b"partial"])
    await until(lambda: bool(monitor.events and client.events))
    [seen] = monitor.events
    assert (seen.kind, seen.progress, seen.message, seen.partial) == ("progress", 0.5, "half way", None)
    assert client.events[0].partial == [b"partial"]


async def test_a_monitor_cannot_submit_cancel_or_retry(world: World) -> None:
    [a] = await world.submit_ids("root", spec("A"))
    [outcome] = await world.submit("eyes", spec("A"))
    assert isinstance(outcome, Forbidden)
    assert "a monitor token cannot submit jobs" in outcome.message
    with pytest.raises(Forbidden):
        await world.hub.submit_one(spec("A"), caller=world["eyes"])
    await refused(world, "eyes", "submit", "echo")
    for call in (world.hub.cancel, world.hub.retry):
        with pytest.raises(Forbidden):
            await call(a, caller=world["eyes"])
    assert (await world.hub.get(a)).state is QUEUED
    with pytest.raises(Forbidden, match="cannot attach as a worker"):
        await world.attach("eyes", "m1")


async def test_a_worker_token_cannot_submit_list_read_or_watch(world: World) -> None:
    [a] = await world.submit_ids("root", spec("B"))
    for who in ("gpu", "gpu-b"):
        caller = world[who]
        [outcome] = await world.submit(who, spec("B"))
        assert isinstance(outcome, Forbidden)
        with pytest.raises(Forbidden):
            await world.hub.list_jobs(JobFilter(), caller=caller)
        await refused(world, who, "read", "jobs")
        with pytest.raises(Forbidden):
            await world.hub.get(a, caller=caller)
        with pytest.raises(Forbidden):
            await world.hub.cancel(a, caller=caller)
        with pytest.raises(Forbidden):
            world.hub.watch_all(FakeSubscriber(), caller=caller)
        with pytest.raises(Forbidden):
            await world.hub.stats(caller=caller)
        with pytest.raises(Forbidden):
            await world.hub.workers(caller=caller)
    assert len(await world.hub.list_jobs(JobFilter())) == 1


async def test_a_worker_token_hears_no_job_events_even_of_its_customer(world: World) -> None:
    """``watch`` asks for no role: the scope must keep a worker token from every job's
    events (and their results), as ``get`` does, its token's customers included."""
    heard = FakeSubscriber()
    [b] = await world.submit_ids("root", spec("B"))
    world.hub.watch(heard, [b], caller=world["gpu-b"])
    world.hub.watch(heard, [b], caller=world["gpu"])
    await world.run(b)
    await world.settle()
    assert heard.events == []


async def test_attach_is_refused_for_a_service_outside_the_token(world: World) -> None:
    with pytest.raises(Forbidden, match="this token may not serve echo"):
        await world.attach("render", "r1", services=["render", "echo"])
    await refused(world, "render", "attach", "worker r1")
    assert world.hub.connected() == []
    await world.attach("render", "r1", services=["render"])
    assert world.hub.connected() == ["r1"]
    with pytest.raises(Forbidden, match="a client token cannot attach"):
        await world.attach("ci-a", "c1")


async def test_a_worker_token_for_b_declaring_a_is_refused(world: World) -> None:
    for caps in (
        {"customer_access": {"allowed_customers": ["A"], "isolation": "strict"}},
        {"customer_access.allowed_customers": ["B", "A"]},
    ):
        with pytest.raises(Forbidden, match="may not serve customer 'A'"):
            await world.attach("gpu-b", "wb", slots=5, capabilities=caps)
    await refused(world, "gpu-b", "attach", "worker wb")
    assert world.hub.connected() == []


async def submit_all_kinds(world: World) -> dict[str, int]:
    ids = await world.submit_ids(
        "root",
        spec("A", isolation="strict"),
        spec("A"),
        spec(None),
        spec("B"),
        spec("B", isolation="strict"),
    )
    return dict(zip(["a_strict", "a_plain", "nobodys", "b_plain", "b_strict"], ids, strict=True))


async def test_a_worker_token_for_b_declaring_nothing_serves_only_b(world: World) -> None:
    jobs = await submit_all_kinds(world)
    link = await world.attach("gpu-b", "wb", slots=5)
    await until(lambda: jobs["b_plain"] in link.ids)
    await world.settle()
    [info] = await world.hub.workers()
    assert info.capabilities["customer_access.allowed_customers"] == ["B"]
    assert not {jobs["a_strict"], jobs["a_plain"]} & set(link.ids)
    # Not dedicated (it declared no strict isolation), so B's strict job waits for a worker that
    # is; a job of no customer may come to it (no customer's data: see the report of issue 11).
    assert set(link.ids) <= {jobs["b_plain"], jobs["nobodys"]}
    # A's jobs are still there for a worker dedicated to A
    a_link = await world.attach(
        "local",
        "wa",
        slots=5,
        capabilities={"customer_access": {"allowed_customers": ["A"], "isolation": "strict"}},
    )
    await until(lambda: len(a_link.ids) == 2)
    assert sorted(a_link.ids) == [jobs["a_strict"], jobs["a_plain"]]


async def test_a_strict_worker_token_for_b_gets_bs_strict_jobs_and_never_as(world: World) -> None:
    jobs = await submit_all_kinds(world)
    for caps in (
        {"customer_access": {"isolation": "strict"}},  # the token's customer filled in
        {"customer_access": {"isolation": "strict", "allowed_customers": "B"}},
    ):
        link = await world.attach("gpu-b", f"wb-{len(caps['customer_access'])}", slots=5, capabilities=caps)
        await world.settle()
        if link.ids:
            assert sorted(link.ids) == [jobs["b_plain"], jobs["b_strict"]]
    assert {job.id for job in await world.hub.list_jobs(JobFilter(states=[RUNNING]))} == {
        jobs["b_plain"],
        jobs["b_strict"],
    }


async def test_a_worker_id_cannot_be_taken_over_by_another_principal(world: World) -> None:
    link = await world.attach("gpu", "w1")
    [job_id] = await world.submit_ids("root", spec())
    await until(lambda: link.ids == [job_id])
    thief = FakeLink()
    with pytest.raises(Forbidden, match="attached by another principal"):
        await world.attach("gpu2", "w1", link=thief)
    await refused(world, "gpu2", "attach", "worker w1")
    assert link.disconnects == []
    assert world.hub._sessions["w1"].link is link
    assert (await world.hub.get(job_id)).state is RUNNING
    [(_, token)] = link.attempts
    [outcome] = await world.hub.complete("w1", [Completion(job_id, token, [b"real"])])
    assert isinstance(outcome, Job)
    assert outcome.result == [b"real"]
    # the same principal may reconnect under its id (a new connection replaces the old one)
    again = await world.attach("gpu", "w1")
    assert link.disconnects == ["replaced by a new connection of the same worker"]
    assert world.hub._sessions["w1"].link is again


async def test_a_forged_result_is_refused_and_the_real_one_wins(world: World) -> None:
    hub = world.hub
    real = await world.attach("gpu", "w1")
    forger = await world.attach("gpu2", "w2", services=["other"])
    [job_id] = await world.submit_ids("ci-a", spec())
    await until(lambda: real.ids == [job_id])
    job = await hub.get(job_id, caller=world["ci-a"])
    token = job.token  # the fencing token: anyone who may read the job knows it
    assert real.attempts == [(job_id, token)]

    [forged] = await hub.complete("w2", [Completion(job_id, token, [b"forged"])])
    assert isinstance(forged, LeaseLost)
    assert "not held by this connection" in str(forged)
    with pytest.raises(LeaseLost):
        await hub.fail("w2", job_id, token, "forged failure", retryable=False)
    with pytest.raises(LeaseLost):
        await hub.progress("w2", job_id, token, 0.5, "forged progress")
    await hub.release("w2", [(job_id, token)])
    [stale] = await hub.complete("w1", [Completion(job_id, token + 1, [b"wrong attempt"])])
    assert isinstance(stale, LeaseLost)
    job = await hub.get(job_id)
    assert (job.state, job.worker, job.result, job.progress) == (RUNNING, "w1", None, None)
    assert forger.ids == []

    await hub.progress("w1", job_id, token, 0.5, "half way")
    [done] = await hub.complete("w1", [Completion(job_id, token, [b"real"])])
    assert isinstance(done, Job)
    assert (await hub.get(job_id, caller=world["ci-a"])).result == [b"real"]
    [late] = await hub.complete("w2", [Completion(job_id, token, [b"forged"])])
    assert isinstance(late, LeaseLost)
    assert (await hub.get(job_id)).result == [b"real"]


async def test_a_forged_result_from_an_unknown_worker_id_is_refused(world: World) -> None:
    real = await world.attach("gpu", "w1")
    [job_id] = await world.submit_ids("root", spec())
    await until(lambda: real.ids == [job_id])
    [(_, token)] = real.attempts
    [forged] = await world.hub.complete("nobody", [Completion(job_id, token, [b"forged"])])
    assert isinstance(forged, LeaseLost)
    assert (await world.hub.get(job_id)).state is RUNNING


async def test_a_revoked_workers_session_is_closed_on_the_next_tick(world: World) -> None:
    link = await world.attach("gpu", "w1")
    other = await world.attach("gpu2", "w2")
    [job_id] = await world.submit_ids("root", spec())
    await until(lambda: (link.ids + other.ids) == [job_id])
    reload_at_once(world.hub.guard)
    revoke(world.auth, "gpu")
    await world.hub.tick()
    await world.settle()
    assert link.disconnects == ["its token was revoked"]
    assert other.disconnects == []
    assert world.hub.connected() == ["w2"]
    with pytest.raises(Unauthorized):
        world.hub.authenticate(world.secrets["gpu"], door="zmq", peer=PEER)
    if link.ids == [job_id]:  # its job went back to the queue, and on to the other worker
        await until(lambda: other.ids == [job_id])


async def test_without_auth_results_cross_a_reconnect_as_before(tmp_path: Path) -> None:
    """Off, the held-attempt rule does not apply: any valid fencing token is taken."""
    config = dataclasses.replace(HubConfig(store="memory://", tick=3600.0))
    hub = Hub(open_store("memory://"), config, clock=FakeClock(), rand=lambda: 0.0)
    await hub.start()
    try:
        link = FakeLink()
        await hub.attach(WorkerHello(id="w1", services=["echo"]), link)
        [outcome] = await hub.submit([spec()])
        assert isinstance(outcome, Submitted)
        await until(lambda: bool(link.ids))
        [(job_id, token)] = link.attempts
        [done] = await hub.complete("w-other", [Completion(job_id, token, [b"ok"])])
        assert isinstance(done, Job)
    finally:
        await hub.stop(grace=0)


async def test_watch_ends_tells_a_client_only_of_jobs_it_may_see(world: World) -> None:
    [a] = await world.submit_ids("root", spec("A"))
    await world.run(a)
    heard = FakeSubscriber()
    world.hub.watch_ends(heard, [await world.hub.get(a)], caller=world["ci-b"])
    await world.settle()
    assert heard.events == []


async def test_a_worker_id_cannot_be_taken_over_across_a_hub_restart(tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    real_secret, _ = create_token(auth, "worker", name="gpu")
    thief_secret, _ = create_token(auth, "worker", name="gpu2")
    url = f"sqlite:///{tmp_path / 'jobq.db'}"
    config = HubConfig(store=url, tick=3600.0, lease_ttl=30.0, auth=str(auth))
    clock = FakeClock()
    first = Hub(open_store(url), config, clock=clock, rand=lambda: 0.0)
    await first.start()
    link = FakeLink()
    real = first.authenticate(real_secret, door="zmq", peer=PEER)
    await first.attach(WorkerHello(id="w1", services=["echo"]), link, caller=real)
    await first.submit([spec()])
    await until(lambda: bool(link.ids))
    await first.stop(grace=0)  # the running job stays with w1, to be adopted when it is back
    first.guard.audit.close()

    hub = Hub(open_store(url), config, clock=clock, rand=lambda: 0.0)
    await hub.start()
    try:
        thief = hub.authenticate(thief_secret, door="zmq", peer="10.6.6.6:1")
        hello = WorkerHello(id="w1", services=["echo"])
        with pytest.raises(Forbidden):
            await hub.attach(hello, FakeLink(), held=link.attempts, caller=thief)
        welcome = await hub.attach(hello, FakeLink(), held=link.attempts, caller=real)
        assert welcome.kept == link.ids
    finally:
        await hub.stop(grace=0)
        hub.guard.audit.close()


async def test_a_worker_id_running_jobs_through_another_hub_cannot_be_taken(tmp_path: Path) -> None:
    """Two hubs on one Redis: the id of a worker that runs a job through hub A is refused to
    another principal at hub B, and stays its own (it may move to B with its attempt)."""
    from tests.redis_helpers import Namespace, require_redis

    require_redis()
    ns = Namespace()
    auth = tmp_path / "auth.json"
    real_secret, _ = create_token(auth, "worker", name="gpu")
    thief_secret, _ = create_token(auth, "worker", name="gpu2")
    config = HubConfig(store=ns.url, tick=3600.0, lease_ttl=30.0, auth=str(auth))
    clock = FakeClock()
    a = Hub(open_store(ns.url), dataclasses.replace(config, name="a"), clock=clock, rand=lambda: 0.0)
    b = Hub(open_store(ns.url), dataclasses.replace(config, name="b"), clock=clock, rand=lambda: 0.0)
    await a.start()
    await b.start()
    try:
        link = FakeLink()
        real = a.authenticate(real_secret, door="zmq", peer=PEER)
        await a.attach(WorkerHello(id="w1", services=["echo"]), link, caller=real)
        await a.submit([spec()])
        await until(lambda: bool(link.ids))
        thief = b.authenticate(thief_secret, door="zmq", peer="10.6.6.6:1")
        hello = WorkerHello(id="w1", services=["echo"])
        with pytest.raises(Forbidden):
            await b.attach(hello, FakeLink(), held=link.attempts, caller=thief)
        moved = b.authenticate(real_secret, door="zmq", peer=PEER)
        welcome = await b.attach(hello, FakeLink(), held=link.attempts, caller=moved)
        assert welcome.kept == link.ids
    finally:
        for hub in (a, b):
            await hub.stop(grace=0)
            hub.guard.audit.close()
        ns.cleanup()


# ---------------------------------------------------------------- operators and the history


def test_the_history_and_operator_actions_have_their_rules_in_core_auth() -> None:
    """core/auth.py decides them as it decides every other operation (hub/access.py applies)."""
    readers = {role for role in ROLES if may_read_history(Principal(name="x", role=role))}
    operators = {role for role in ROLES if may_operate(Principal(name="x", role=role))}
    assert readers == {"admin", "monitor"} and operators == {"admin"}


async def test_the_history_and_a_pause_are_refused_and_audited_by_the_one_access_decision(
    world: World,
) -> None:
    hub = world.hub
    assert (await hub.history(5, caller=world["eyes"])).points
    for who in ("ci-a", "gpu"):
        with pytest.raises(Forbidden, match=f"a {TOKENS[who]['role']} token cannot read the history"):
            await hub.history(5, caller=world[who])
        await refused(world, who, "view", "history")
    for who in ("ci-a", "eyes"):
        with pytest.raises(Forbidden, match="only an admin token may pause services"):
            await hub.pause_service("echo", caller=world[who])
        await refused(world, who, "pause", "service echo")
        with pytest.raises(Forbidden, match="only an admin token may drain workers"):
            await hub.drain_worker("w", caller=world[who])
        await refused(world, who, "drain", "worker w")
    assert (await hub.pause_service("echo", caller=world["root"])).paused


async def test_a_group_for_another_customer_is_refused_whole_as_a_submit_is(world: World) -> None:
    """hub/groups.py scopes a group's specs with the hub's one rule (Hub._scoped)."""
    group = JobSpec(service="echo", payload=[b"{}"], customer_id="B", expand={"n": [1, 2]})
    with pytest.raises(Forbidden, match="this token may not submit for customer 'B'"):
        await world.hub.submit_group(group, caller=world["ci-a"])
    await refused(world, "ci-a", "submit", "echo")
    assert await world.hub.list_jobs(JobFilter(), caller=world["root"]) == []
