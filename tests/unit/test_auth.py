"""The pure identity rules of ``core/auth.py``: who may submit, see, touch and serve what.

No process, no I/O: principals of each role against jobs and specs built here.
"""

from __future__ import annotations

from typing import Any

import pytest

from jobq.core.auth import (
    ALLOWED,
    LOCAL,
    LOCAL_CALLER,
    ROLES,
    TOKEN_PREFIX,
    Action,
    Caller,
    Principal,
    may_see,
    may_serve,
    may_touch,
    new_token,
    same_hash,
    scoped_capabilities,
    scoped_spec,
    token_hash,
)
from jobq.core.matching import ALLOWED as ALLOWED_CUSTOMERS
from jobq.core.matching import flatten
from jobq.core.model import Job, JobSpec
from jobq.core.states import JobState

ADMIN = Principal(name="root", role="admin")
CLIENT_A = Principal(name="ci-a", role="client", customers=frozenset({"A"}))
CLIENT_AB = Principal(name="ci-ab", role="client", customers=frozenset({"A", "B"}))
CLIENT_SOLO = Principal(name="solo", role="client")
WORKER = Principal(name="gpu", role="worker")
WORKER_B = Principal(name="gpu-b", role="worker", customers=frozenset({"B"}), services=frozenset({"render"}))
MONITOR = Principal(name="eyes", role="monitor")


def job(customer: str | None = None, owner: str | None = None, job_id: int = 1) -> Job:
    return Job(
        id=job_id,
        service="echo",
        state=JobState.QUEUED,
        seq=job_id,
        submitted_at=0.0,
        payload=[b"secret"],
        customer_id=customer,
        owner=owner,
    )


def spec(**kw: Any) -> JobSpec:
    return JobSpec(service="echo", payload=[b"x"], **kw)


# ---------------------------------------------------------------- roles


def test_each_role_may_attempt_only_its_actions() -> None:
    assert set(ALLOWED) == set(ROLES) == {"admin", "client", "worker", "monitor"}
    assert all(ADMIN.may(action) for action in Action)
    assert {a for a in Action if CLIENT_A.may(a)} == {
        Action.SUBMIT,
        Action.READ,
        Action.CANCEL,
        Action.RETRY,
        Action.VIEW,
    }
    assert {a for a in Action if WORKER.may(a)} == {Action.WORK}
    assert {a for a in Action if MONITOR.may(a)} == {Action.VIEW, Action.READ}


def test_only_a_monitor_is_kept_from_payloads() -> None:
    assert [p.sees_payloads for p in (ADMIN, CLIENT_A, WORKER, MONITOR)] == [True, True, True, False]


def test_the_local_caller_is_an_unrestricted_admin() -> None:
    assert LOCAL.role == "admin"
    assert LOCAL_CALLER.principal is LOCAL
    assert LOCAL_CALLER.unrestricted
    assert LOCAL_CALLER.door == "local"
    caller = Caller(principal=CLIENT_A, door="zmq", peer="10.0.0.7:4000")
    assert caller.name == "ci-a"
    assert not caller.unrestricted
    assert not Caller(principal=MONITOR).unrestricted


# ---------------------------------------------------------------- submitting


def test_admin_specs_are_taken_as_they_are() -> None:
    given = spec(customer_id="Z", owner="someone")
    assert scoped_spec(ADMIN, given) is given


def test_a_client_with_one_customer_submits_as_it() -> None:
    scoped = scoped_spec(CLIENT_A, spec())
    assert isinstance(scoped, JobSpec)
    assert (scoped.customer_id, scoped.owner) == ("A", "ci-a")
    named = scoped_spec(CLIENT_A, spec(customer_id="A"))
    assert isinstance(named, JobSpec)
    assert (named.customer_id, named.owner) == ("A", "ci-a")


def test_the_owner_a_client_sends_is_replaced_by_its_own_name() -> None:
    scoped = scoped_spec(CLIENT_A, spec(owner="ci-b"))
    assert isinstance(scoped, JobSpec)
    assert scoped.owner == "ci-a"


def test_a_client_cannot_submit_for_a_foreign_customer() -> None:
    reason = scoped_spec(CLIENT_A, spec(customer_id="B"))
    assert reason == "this token may not submit for customer 'B'"


def test_a_client_with_several_customers_must_name_one() -> None:
    reason = scoped_spec(CLIENT_AB, spec())
    assert isinstance(reason, str)
    assert "name one with customer_id" in reason
    for customer in ("A", "B"):
        scoped = scoped_spec(CLIENT_AB, spec(customer_id=customer))
        assert isinstance(scoped, JobSpec)
        assert (scoped.customer_id, scoped.owner) == (customer, "ci-ab")
    assert scoped_spec(CLIENT_AB, spec(customer_id="C")) == "this token may not submit for customer 'C'"


def test_a_client_without_customers_submits_as_itself_for_any_customer() -> None:
    scoped = scoped_spec(CLIENT_SOLO, spec())
    assert isinstance(scoped, JobSpec)
    assert (scoped.customer_id, scoped.owner) == (None, "solo")
    named = scoped_spec(CLIENT_SOLO, spec(customer_id="Z"))
    assert isinstance(named, JobSpec)
    assert (named.customer_id, named.owner) == ("Z", "solo")


@pytest.mark.parametrize("principal", [WORKER, WORKER_B, MONITOR], ids=lambda p: p.role)
def test_workers_and_monitors_cannot_submit(principal: Principal) -> None:
    assert scoped_spec(principal, spec()) == f"a {principal.role} token cannot submit jobs"


# ---------------------------------------------------------------- seeing and touching


def test_admins_and_monitors_see_every_job() -> None:
    for principal in (ADMIN, MONITOR):
        assert may_see(principal, job("A", "x"))
        assert may_see(principal, job())


def test_a_client_with_customers_sees_only_theirs() -> None:
    assert may_see(CLIENT_A, job("A", owner="someone-else"))
    assert not may_see(CLIENT_A, job("B", owner="ci-a"))  # the customer decides, not the owner
    assert not may_see(CLIENT_A, job(None, owner="ci-a"))
    assert may_see(CLIENT_AB, job("B"))
    assert not may_see(CLIENT_AB, job("C"))


def test_a_client_without_customers_sees_only_what_it_submitted() -> None:
    assert may_see(CLIENT_SOLO, job(owner="solo"))
    assert may_see(CLIENT_SOLO, job("Z", owner="solo"))
    assert not may_see(CLIENT_SOLO, job(owner="other"))
    assert not may_see(CLIENT_SOLO, job())  # submitted without authentication: nobody's


def test_a_worker_sees_no_job_through_the_client_api() -> None:
    assert not may_see(WORKER, job())
    assert not may_see(WORKER_B, job("B"))


def test_may_touch() -> None:
    for action in (Action.CANCEL, Action.RETRY):
        assert may_touch(ADMIN, job("B"), action)
        assert may_touch(CLIENT_A, job("A"), action)
        assert not may_touch(CLIENT_A, job("B"), action)
        assert may_touch(CLIENT_SOLO, job(owner="solo"), action)
        assert not may_touch(CLIENT_SOLO, job(owner="other"), action)
        assert not may_touch(MONITOR, job("A"), action)  # sees it, may not touch it
        assert not may_touch(WORKER, job("A"), action)


# ---------------------------------------------------------------- serving


def test_may_serve() -> None:
    assert may_serve(ADMIN, ["anything"]) is None
    assert may_serve(WORKER, ["echo", "render"]) is None  # no service named: all
    assert may_serve(WORKER_B, ["render"]) is None
    assert may_serve(WORKER_B, ["render", "echo", "aaa"]) == "this token may not serve aaa, echo"
    assert may_serve(CLIENT_A, ["echo"]) == "a client token cannot attach as a worker"
    assert may_serve(MONITOR, ["echo"]) == "a monitor token cannot attach as a worker"


def declared(capabilities: dict[str, Any]) -> Any:
    return flatten(capabilities).get(ALLOWED_CUSTOMERS)


def test_an_unscoped_worker_keeps_its_capabilities() -> None:
    caps = {"customer_access": {"allowed_customers": ["A"]}, "gpu": True}
    assert scoped_capabilities(WORKER, caps) is caps
    assert scoped_capabilities(ADMIN, caps) is caps


@pytest.mark.parametrize(
    "caps",
    [
        {},
        {"gpu": True},
        {"customer_access": {"allowed_customers": []}},
        {"customer_access.allowed_customers": ""},
        {"customer_access": {"isolation": "strict"}},
    ],
)
def test_a_worker_that_declares_no_customer_gets_its_tokens(caps: dict[str, Any]) -> None:
    scoped = scoped_capabilities(WORKER_B, caps)
    assert isinstance(scoped, dict)
    assert declared(scoped) == ["B"]
    assert {k: v for k, v in flatten(scoped).items() if k != ALLOWED_CUSTOMERS} == {
        k: v for k, v in flatten(caps).items() if k != ALLOWED_CUSTOMERS
    }


def test_a_token_with_several_customers_gives_them_all_sorted() -> None:
    two = Principal(name="w", role="worker", customers=frozenset({"C", "B"}))
    scoped = scoped_capabilities(two, {})
    assert isinstance(scoped, dict)
    assert declared(scoped) == ["B", "C"]


@pytest.mark.parametrize(
    "caps",
    [
        {"customer_access": {"allowed_customers": ["A"]}},
        {"customer_access.allowed_customers": ["A"]},
        {"customer_access.allowed_customers": "A"},
        {"customer_access": {"allowed_customers": ["B", "A"]}},
        # the nested and the dotted spelling of one key: the later one is what the store reads
        {"customer_access": {"allowed_customers": ["B"]}, "customer_access.allowed_customers": ["A"]},
    ],
)
def test_declaring_a_customer_outside_the_token_is_refused(caps: dict[str, Any]) -> None:
    assert scoped_capabilities(WORKER_B, caps) == "this token may not serve customer 'A'"


@pytest.mark.parametrize(
    "caps",
    [
        {"customer_access": {"allowed_customers": ["B"]}},
        {"customer_access.allowed_customers": ["B"]},
        {"customer_access.allowed_customers": "B"},
        {"customer_access": {"allowed_customers": ["B"], "isolation": "strict"}},
    ],
)
def test_declaring_the_tokens_own_customer_is_kept(caps: dict[str, Any]) -> None:
    assert scoped_capabilities(WORKER_B, caps) == caps


@pytest.mark.parametrize("value", [5, 5.0, True, ["B", 5]])
def test_a_declared_customer_that_is_not_a_name_is_refused_not_a_crash(value: Any) -> None:
    reason = scoped_capabilities(WORKER_B, {"customer_access": {"allowed_customers": value}})
    assert isinstance(reason, str)


# ---------------------------------------------------------------- tokens


def test_tokens_are_long_random_prefixed_and_kept_as_hashes() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert token.startswith(TOKEN_PREFIX)
        assert len(token) >= len(TOKEN_PREFIX) + 43  # 32 bytes of urlsafe base64
    token = next(iter(tokens))
    digest = token_hash(token)
    assert digest.startswith("sha256:")
    assert len(digest) == len("sha256:") + 64
    assert token not in digest
    assert token_hash(token) == digest
    assert token_hash(token + "x") != digest
    assert same_hash(digest, token_hash(token))
    assert not same_hash(digest, token_hash(new_token()))
