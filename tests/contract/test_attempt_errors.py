"""Failed attempts kept with their job (``Job.attempt_errors``): on every store, across a reopen.

Each failure (a worker's, with the traceback its handler raised, or a timeout) is one entry;
the last ``ATTEMPT_ERRORS_KEPT`` are kept, each traceback cut to ``TRACEBACK_LIMIT`` bytes.
"""

from __future__ import annotations

from jobq.core.model import ATTEMPT_ERRORS_KEPT, TRACEBACK_LIMIT
from jobq.core.states import JobState
from jobq.store.base import Store
from tests.contract.support import T0, TTL, Backend, attach, spec, submit_one

TRACE = "Traceback (most recent call last):\n  File \"app.py\", line 7, in handle\nKeyError: 'missing'\n"


async def test_each_failed_attempt_keeps_its_error_and_traceback(backend: Backend) -> None:
    store = await backend.open()
    job = await submit_one(store, spec(max_attempts=3, backoff=0, timeout=5))
    await attach(store, "w1")
    await attach(store, "w2")
    tokens = [(await store.claim("w1", 1, T0, TTL))[0].token]  # (the memory store's job changes)
    after = await store.fail(job.id, tokens[0], "KeyError: 'missing'", T0 + 1, traceback=TRACE)
    assert after.state is JobState.SCHEDULED and after.traceback == TRACE
    await store.tick(T0 + 2)
    tokens.append((await store.claim("w2", 1, T0 + 2, TTL))[0].token)
    await store.fail(job.id, tokens[1], "bad input", T0 + 3)  # a HandlerError: no traceback
    await store.tick(T0 + 4)
    tokens.append((await store.claim("w1", 1, T0 + 4, TTL))[0].token)
    await store.touch_worker("w1", T0 + 9, TTL)
    await store.tick(T0 + 10)  # the third attempt times out: the job ends failed

    if backend.durable:
        store = await backend.reopen(store, T0 + 11)
    stored = await store.get(job.id)
    assert stored is not None and stored.state is JobState.FAILED
    history = [(e.attempt, e.token, e.worker, e.error, e.traceback, e.at) for e in stored.attempt_errors]
    assert history == [
        (1, tokens[0], "w1", "KeyError: 'missing'", TRACE, T0 + 1),
        (2, tokens[1], "w2", "bad input", None, T0 + 3),
        (3, tokens[2], "w1", "timed out after 5s", None, T0 + 10),
    ]
    assert stored.traceback is None  # the last attempt's: it timed out
    assert stored.error == "timed out after 5s"


async def test_tracebacks_and_the_history_are_bounded(store: Store) -> None:
    attempts = ATTEMPT_ERRORS_KEPT + 2
    job = await submit_one(store, spec(max_attempts=attempts, backoff=0))
    await attach(store)
    frames = "".join(f'  File "deep.py", line {i}, in f{i}\n    f{i + 1}()\n' for i in range(2000))
    huge = f"Traceback (most recent call last):\n{frames}RecursionError: too deep\n"
    now = T0
    for n in range(1, attempts + 1):
        (claimed,) = await store.claim("w1", 1, now, TTL)
        await store.fail(job.id, claimed.token, f"boom {n}", now, traceback=huge)
        now += 1
        await store.tick(now)
    stored = await store.get(job.id)
    assert stored is not None and stored.state is JobState.FAILED
    assert [e.error for e in stored.attempt_errors] == [f"boom {n}" for n in range(3, attempts + 1)]
    kept = stored.traceback
    assert kept is not None and len(kept.encode()) <= TRACEBACK_LIMIT
    # The innermost frames and the exception are kept; a first line says what was cut.
    assert kept.endswith("line 1999, in f1999\n    f2000()\nRecursionError: too deep\n")
    assert kept.startswith("[") and "bytes cut" in kept.splitlines()[0]
    assert kept.splitlines()[1].startswith('  File "deep.py"')


async def test_an_operator_retry_keeps_the_history(store: Store) -> None:
    job = await submit_one(store, spec(max_attempts=1))
    await attach(store)
    (claimed,) = await store.claim("w1", 1, T0, TTL)
    await store.fail(job.id, claimed.token, "boom", T0, traceback=TRACE)
    again = await store.retry(job.id, T0 + 1)
    assert again.state is JobState.QUEUED and again.error is None
    assert [e.error for e in again.attempt_errors] == ["boom"] and again.traceback == TRACE
