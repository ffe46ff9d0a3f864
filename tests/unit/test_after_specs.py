"""Dependencies at the edges, pure: a spec's ``after`` fields (``core/validate.py``), a batch
naming its specs by ref at the hub (``hub/dependencies.py``), and the SDK's chains
(``client/chains.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from jobq.client.chains import chained
from jobq.core.model import JobSpec, Submitted, new_job
from jobq.core.validate import validate_finalize, validate_spec
from jobq.errors import InvalidRequest, JobqError, NotFound
from jobq.hub.dependencies import linked, submit_linked


def spec(**kw: object) -> JobSpec:
    return JobSpec(service="echo", payload=[b"x"], **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"after": [1, 1]}, "after names 1 twice"),
        ({"after": [0]}, "after: 0 names no job"),
        ({"after": [""]}, "after: '' names no job"),
        ({"after": list(range(1, 1002))}, "after names 1001 jobs; at most 1000"),
        ({"after": [1], "after_policy": "sometimes"}, "after_policy must be one of completed, always"),
        ({"ref": ""}, "ref must be 1 to"),
        ({"ref": "a\nb"}, "ref must not contain control characters"),
        ({"after": [1], "expand": {"n": "1..3"}}, "a group cannot wait for other jobs"),
    ],
)
def test_bad_after_fields_are_refused_with_the_reason(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason.replace("(", r"\(").replace(")", r"\)")):
        validate_spec(spec(**fields), group="expand" in fields)


def test_good_after_fields_pass_and_a_finalize_spec_cannot_wait() -> None:
    validate_spec(spec(after=[3, "fetch"], after_policy="always", ref="report"))
    with pytest.raises(InvalidRequest, match="a finalize spec cannot wait"):
        validate_finalize(spec(after=[3]))


def test_a_job_waits_only_for_the_ids_its_store_resolved() -> None:
    assert new_job(spec(after=[3]), 5, 0.0).state == "queued"  # a store without dependencies
    job = new_job(spec(after=["a"], after_policy="always"), 5, 0.0, [4])
    assert job.state == "waiting" and job.after == [4] and job.after_policy == "always"


def made(specs: Sequence[JobSpec]) -> list[Submitted]:
    return [Submitted(job=new_job(s, i + 10, 0.0)) for i, s in enumerate(specs)]


async def test_a_linked_batch_is_ordered_then_answered_in_the_callers_order() -> None:
    batch = [spec(after=["b"]), spec(ref="b")]
    assert linked(batch) and not linked([spec(after=[3]), spec()])
    seen: list[list[JobSpec]] = []

    async def create(ordered: list[JobSpec]) -> list[Submitted]:
        seen.append(ordered)
        return made(ordered)

    out = await submit_linked(batch, {}, lambda s: None, create)
    assert seen == [[batch[1], batch[0]]]
    assert [o.job.id for o in out if isinstance(o, Submitted)] == [11, 10]


async def test_a_linked_batch_is_all_or_nothing() -> None:
    async def create(ordered: list[JobSpec]) -> list[Submitted]:
        raise AssertionError("nothing may be created")

    def check(s: JobSpec) -> None:
        if s.service == "bad":
            raise InvalidRequest("no such thing")

    batch = [spec(ref="a"), JobSpec(service="bad", after=["a"]), spec(after=["a"])]
    out = await submit_linked(batch, {}, check, create)
    assert [str(o) for o in out[1:2]] == ["no such thing"]
    assert all(isinstance(o, InvalidRequest) for o in out)
    assert "not submitted: spec #1 of its batch was refused (no such thing)" in str(out[0])
    cycle = await submit_linked([spec(ref="a", after=["b"]), spec(ref="b", after=["a"])], {}, check, create)
    assert [str(o) for o in cycle] == ["dependency cycle: 'a' → 'b' → 'a'"] * 2

    async def unknown(ordered: list[JobSpec]) -> list[Submitted]:
        raise NotFound("after: no job 99")

    out2: list[Submitted | JobqError] = await submit_linked(
        [spec(ref="a"), spec(after=["a", 99])], {}, check, unknown
    )
    assert [str(o) for o in out2] == ["after: no job 99"] * 2


def test_a_chain_names_its_specs_and_links_each_to_the_one_before() -> None:
    first, second = chained([spec(), spec(after=[7])], before=None)
    assert first.ref == "chain.0" and first.after == []
    assert second.ref == "chain.1" and second.after == [7, "chain.0"]
    (later,) = chained([spec()], before=42, base=5000)
    assert later.ref == "chain.5000" and later.after == [42]
    with pytest.raises(InvalidRequest, match="leave their ref unset"):
        chained([spec(ref="mine")], before=None)
