from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from jobq.core.explain import Candidate, competing, judge, waited
from jobq.core.index import ReadyIndex
from jobq.core.matching import Load, Profile, Shape, first_miss, load_miss, shape_of


def s(service: str = "a", customer: str | None = None, isolation: str = "none", **requires: Any) -> Shape:
    return shape_of(service, {k.replace("__", "."): v for k, v in requires.items()}, {}, customer, isolation)


def p(*services: str, **caps: Any) -> Profile:
    return Profile.build(services or ("a",), {k.replace("__", "."): v for k, v in caps.items()})


def test_priority_then_fifo() -> None:
    idx = ReadyIndex()
    idx.attach("w", p(), slots=10)
    idx.add(1, s(), 0, 1, 0)
    idx.add(2, s(), 5, 2, 0)
    idx.add(3, s(), 0, 3, 0)
    idx.add(4, s(), 5, 4, 0)
    assert [c.job_id for c in idx.claim("w", 10, 0)] == [2, 4, 1, 3]


def test_priority_across_shapes() -> None:
    idx = ReadyIndex()
    idx.attach("w", p(gpu=True), slots=10)
    idx.add(1, s(), 1, 1, 0)
    idx.add(2, s(gpu=True), 9, 2, 0)
    assert [c.job_id for c in idx.claim("w", 1, 0)] == [2]


def test_slots_bound_claims_and_finish_frees_them() -> None:
    idx = ReadyIndex()
    idx.attach("w", p(), slots=2)
    for i in range(5):
        idx.add(i, s(), 0, i, 0)
    assert len(idx.claim("w", 10, 0)) == 2
    assert idx.claim("w", 10, 0) == []
    idx.finish(0)
    assert [c.job_id for c in idx.claim("w", 10, 0)] == [2]


def test_discard_is_lazy_but_exact() -> None:
    idx = ReadyIndex()
    idx.attach("w", p(), slots=10)
    for i in range(5):
        idx.add(i, s(), 0, i, 0)
    assert idx.discard(1) and idx.discard(3)
    assert not idx.discard(3)
    assert [c.job_id for c in idx.claim("w", 10, 0)] == [0, 2, 4]
    assert len(idx) == 0


def test_rare_job_deep_in_the_queue_is_placed_at_once() -> None:
    idx = ReadyIndex()
    for i in range(50_000):
        idx.add(i, s(), 0, i, 0)
    idx.add(99_999, s(gpu=True), 0, 99_999, 0)
    idx.attach("rare", p(gpu=True), slots=1)
    idx.attach("common", p(), slots=1)
    assert [c.job_id for c in idx.claim("rare", 1, 0)] == [0]  # best job it can run: FIFO head
    idx2 = ReadyIndex()
    for i in range(50_000):
        idx2.add(i, s(), 0, i, 0)
    idx2.add(99_999, s("b"), 0, 99_999, 0)
    idx2.attach("rare", p("b"), slots=1)
    assert [c.job_id for c in idx2.claim("rare", 1, 0)] == [99_999]


def test_fairness_between_customers() -> None:
    idx = ReadyIndex()
    idx.attach("w", p(), slots=1000)
    for i in range(100):
        idx.add(i, s(customer="flood"), 0, i, 0)
    idx.add(1000, s(customer="single"), 0, 1000, 0)
    order = [c.job_id for c in idx.claim("w", 3, 0)]
    assert 1000 in order[:2]


def test_weights_share_in_proportion() -> None:
    idx = ReadyIndex()
    idx.set_weight("big", 3)
    idx.attach("w", p(), slots=1000)
    for i in range(400):
        idx.add(i, s(customer="big"), 0, i, 0)
        idx.add(1000 + i, s(customer="small"), 0, 1000 + i, 0)
    taken = [c.shape.customer for c in idx.claim("w", 400, 0)]
    assert 280 <= taken.count("big") <= 320


def test_priority_beats_fairness() -> None:
    idx = ReadyIndex()
    idx.attach("w", p(), slots=10)
    idx.add(1, s(customer="x"), 0, 1, 0)
    idx.add(2, s(customer="y"), 1, 2, 0)
    idx.add(3, s(customer="y"), 1, 3, 0)
    assert [c.job_id for c in idx.claim("w", 3, 0)] == [2, 3, 1]


def test_avoid_the_worker_that_failed_it_while_another_exists() -> None:
    idx = ReadyIndex()
    idx.attach("w1", p(), slots=1)
    idx.attach("w2", p(), slots=1)
    idx.add(1, s(), 0, 1, 0, avoid="w1")
    idx.add(2, s(), 0, 2, 0)
    assert [c.job_id for c in idx.claim("w1", 1, 0)] == [2]
    assert [c.job_id for c in idx.claim("w2", 1, 0)] == [1]
    # alone, w1 does get it back
    solo = ReadyIndex()
    solo.attach("w1", p(), slots=1)
    solo.add(1, s(), 0, 1, 0, avoid="w1")
    assert [c.job_id for c in solo.claim("w1", 1, 0)] == [1]


def test_big_job_gets_a_reservation_after_aging() -> None:
    idx = ReadyIndex(reserve_after=10)
    idx.attach("w", p(hardware__gpu_memory_gb=24), slots=10)
    small = s(hardware__gpu_memory_gb=8)
    big = s(hardware__gpu_memory_gb=20)
    idx.add(1, small, 0, 1, 0)
    assert [c.job_id for c in idx.claim("w", 1, 0)] == [1]
    idx.add(2, big, 0, 2, 0)
    idx.add(3, small, 0, 3, 0)
    # before aging, smaller jobs backfill
    assert [c.job_id for c in idx.claim("w", 1, 5)] == [3]
    idx.add(4, small, 0, 4, 6)
    # after aging, the worker is kept for the big job
    assert idx.claim("w", 1, 20) == []
    idx.finish(1)
    idx.finish(3)
    assert [c.job_id for c in idx.claim("w", 1, 21)] == [2]


def test_blocked_reason() -> None:
    idx = ReadyIndex()
    idx.add(1, s("x"), 0, 1, 0)
    assert idx.blocked_reason(s("x")) == "no connected worker serves x"
    idx.attach("w", p("x", hardware__gpu_memory_gb=8), slots=1)
    assert idx.blocked_reason(s("x")) is None
    idx.add(2, s("x", hardware__gpu_memory_gb=16), 0, 2, 0)
    reason = idx.blocked_reason(s("x", hardware__gpu_memory_gb=16))
    assert reason is not None and "gpu_memory_gb >= 16" in reason
    assert [q.shape for q in idx.blocked_shapes()] == [s("x", hardware__gpu_memory_gb=16)]


def test_explain_counts_competitors() -> None:
    idx = ReadyIndex()
    idx.attach("w", p("a", "b"), slots=1)
    idx.attach("other", p("c"), slots=1)
    idx.add(1, s("a"), 0, 1, 0)
    idx.add(2, s("b"), 0, 2, 0)
    idx.add(3, s("a"), 0, 3, 0)
    found = idx.explain(3, 0)
    assert found is not None
    assert found.ahead == 2
    assert found.eligible == ["w"]
    assert found.ineligible == {"other": "does not serve a"}


def test_explain_rules_without_an_index() -> None:
    """core/explain.py decides for every store: the index only gathers its workers and queues."""
    big = Candidate("big", p(hardware__gpu_memory_gb=24), 2, Load(gpu_in_use=20))
    small = Candidate("small", p(hardware__gpu_memory_gb=8), 1, Load())
    other = Candidate("other", p("b"), 5, Load())
    verdict = judge(s(hardware__gpu_memory_gb=16), [big, small, other])
    assert verdict.eligible == ["big"] and verdict.free_slots == 2 and verdict.blocked is None
    assert verdict.ineligible == {
        "big": "eligible, but needs 16 GB of GPU memory, 4 GB free now",
        "small": "needs hardware.gpu_memory_gb >= 16, worker has 8",
        "other": "does not serve a",
    }
    blocked = judge(s(hardware__gpu_memory_gb=48), [big, small, other])
    assert blocked.eligible == [] and blocked.free_slots == 0
    assert blocked.blocked == (
        "big: needs hardware.gpu_memory_gb >= 48, worker has 24; "
        "small: needs hardware.gpu_memory_gb >= 48, worker has 8"
    )
    assert judge(s("c"), [big, other]).blocked == "no connected worker serves c"
    shapes_of = {"w1": ["x", "own"], "w2": ["y", "x"]}
    assert competing("own", ["w1", "w2"], shapes_of.__getitem__) == ["own", "x", "y"]
    assert waited(now=5.0, since=7.0) == 0.0 and waited(now=7.0, since=5.0) == 2.0


# ---- properties: never an ineligible worker; an idle eligible worker always gets work

SERVICES = ["a", "b"]
shapes = st.builds(
    lambda service, gpu, customer, isolation: s(
        service,
        customer,
        isolation if customer else "none",
        **({"hardware__gpu_memory_gb": gpu} if gpu else {}),
    ),
    st.sampled_from(SERVICES),
    st.sampled_from([0, 8, 16, 40]),
    st.sampled_from([None, "acme", "globex"]),
    st.sampled_from(["none", "loose", "strict"]),
)
profiles = st.builds(
    lambda services, gpu, access: Profile.build(services, {"hardware.gpu_memory_gb": gpu, **access}),
    st.lists(st.sampled_from(SERVICES), min_size=1, unique=True),
    st.sampled_from([8, 16, 24, 48]),
    st.sampled_from(
        [
            {},
            {"customer_access.denied_customers": ["acme"]},
            {"customer_access.isolation": "strict", "customer_access.allowed_customers": ["acme"]},
            {"customer_access.max_concurrent_customers": 1},
        ]
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    jobs=st.lists(st.tuples(shapes, st.integers(0, 3)), min_size=1, max_size=40),
    workers=st.lists(st.tuples(profiles, st.integers(1, 4)), min_size=1, max_size=5),
    rounds=st.lists(st.integers(0, 4), min_size=1, max_size=20),
)
def test_claims_respect_eligibility_and_leave_no_eligible_idle_worker(
    jobs: list[tuple[Shape, int]], workers: list[tuple[Profile, int]], rounds: list[int]
) -> None:
    idx = ReadyIndex(reserve_after=1e9)
    queued: dict[int, Shape] = {}
    for i, (shape, prio) in enumerate(jobs):
        idx.add(i, shape, prio, i, 0)
        queued[i] = shape
    names = [f"w{i}" for i in range(len(workers))]
    for name, (profile, slots) in zip(names, workers, strict=True):
        idx.attach(name, profile, slots)
    running: dict[int, str] = {}
    for r in rounds:
        for name, (profile, _) in zip(names, workers, strict=True):
            for c in idx.claim(name, 10, 0):
                assert first_miss(c.shape, profile) is None, "handed to an ineligible worker"
                assert c.job_id in queued
                del queued[c.job_id]
                running[c.job_id] = name
        # After everyone claimed: a worker with a free slot has no queued job it could start now.
        for name, (profile, _) in zip(names, workers, strict=True):
            if idx.free_slots(name) == 0:
                continue
            load = idx._workers[name].load
            for job_id, shape in queued.items():
                startable = first_miss(shape, profile) is None and load_miss(shape, profile, load) is None
                assert not startable, f"{name} idles while it could start job {job_id}"
        for job_id in list(running)[:r]:
            idx.finish(job_id)
            del running[job_id]
