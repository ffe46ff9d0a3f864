"""Issue 12's chaos runs: real hub and worker processes on loopback, killed and stopped while
they work, and what the queue's guarantees look like afterwards.

- ``a``: ``--jobs`` jobs (5,000), ``--workers`` worker processes (4), ``--worker-kills``
  SIGKILLs of a random worker (100) spread over the run (a replacement starts after each
  kill), once per ``--durability`` (``normal`` and ``full``);
- ``b``: ``--hub-kills`` SIGKILLs of the hub (20) while a client submits ``--b-jobs`` jobs
  (2,000, each with an idempotency key, sent again until acknowledged) and the workers run
  them; the hub restarts on the same port and database each time, the SDKs reconnect;
- ``c``: a worker SIGSTOPped while it runs jobs, for ``--c-stop`` seconds (6) past the lease
  (``--lease-ttl`` ``--c-lease-ttl``, 2), then SIGCONTed: its late results must be refused;
- ``d``: a poison job (its handler calls ``os._exit(1)``) among ``--d-jobs`` normal ones.

Workers run ``bench.chaos_handlers:work``, which appends every attempt it starts and finishes
(job id, fencing token, attempt, pid, time) to a trace directory, and returns
``<id>:<token>:<pid>``, so the stored result names the attempt it came from. Checks, per run:

- ``all_acknowledged_completed`` (a-c): every acknowledged job ends ``completed``: none missing
  (lost), none failed, quarantined, cancelled or still live at the deadline;
- ``no_stale_result_accepted`` (a-c): each stored result names an attempt the trace saw start,
  and that attempt holds the highest token started for its job;
- ``tokens_strictly_increasing`` (a-c): per job, the attempts in the order they started carry
  strictly increasing tokens (two processes never ran one token);
- ``kills_done`` (a, b): as many kills as asked for happened while there was work;
- ``stalled_jobs_completed_elsewhere`` (c): the jobs the stopped worker held completed from
  another worker's attempt;
- ``poison_quarantined``, ``poison_deaths_within_limit``, ``others_completed`` (d).

Recovery time per kill:

- a worker kill: from the SIGKILL until the last of the attempts the victim had started (and
  not finished) starts again on another worker (``null`` when the victim held nothing);
- a hub kill: ``hub_ready_s``, from the SIGKILL until the restarted hub answers a ping, and
  ``work_resumed_s``, from the SIGKILL until the first attempt starts after that;
- the stop (c): from the SIGSTOP until each held job starts again on another worker.

Prints one JSON document; exits 1 when a check fails (``failed_checks`` names them).
``python -m bench.chaos --help`` for the knobs (``--runs a,b`` and smaller sizes for a quick
run). The quick version of (a) and (b) is ``tests/acceptance/test_chaos_quick.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import DOORS_OFF, Proc, free_port, jobq_command, start_worker, wait_for_hub

from jobq.client.client import Client, make_spec
from jobq.core.model import Job, JobSpec
from jobq.errors import JobqError

SERVICE = "chaos"
HANDLER = "bench.chaos_handlers:work"
LIVE = ("queued", "scheduled", "running")


@dataclass
class Options:
    """The knobs of every run (the command line's, and the quick test's)."""

    jobs: int = 5000
    workers: int = 4
    concurrency: int = 4
    job_seconds: float = 0.15
    worker_kills: int = 100
    min_kill_gap: float = 0.25
    durability: tuple[str, ...] = ("normal", "full")
    hub_kills: int = 20
    b_jobs: int = 2000
    b_kill_gap: float = 1.0
    b_batch: int = 20
    b_job_seconds: float = 0.05
    c_jobs: int = 20
    c_job_seconds: float = 1.0
    c_lease_ttl: float = 2.0
    c_stop: float = 6.0
    d_jobs: int = 200
    d_job_seconds: float = 0.05
    poison_deaths: int | None = None
    hub_args: list[str] = field(default_factory=list)
    timeout: float = 300.0
    seed: int = 12
    keep: bool = False


# ---------------------------------------------------------------------------- the trace


@dataclass
class Attempt:
    job: int
    token: int
    attempt: int
    pid: int
    started: float
    ended: float | None = None


def read_trace(folder: Path, pids: Iterable[int] | None = None) -> dict[int, list[Attempt]]:
    """Job id → its attempts in the order they started (of these worker ``pids`` only)."""
    paths = folder.glob("*.trace") if pids is None else (folder / f"{pid}.trace" for pid in pids)
    found: dict[int, list[Attempt]] = {}
    for path in paths:
        if not path.exists():
            continue
        last: dict[tuple[int, int], Attempt] = {}
        for line in path.read_text().splitlines(keepends=True):
            parts = line.split()
            if not line.endswith("\n") or len(parts) != 6:
                continue  # a half-written line (there should be none: one write per line)
            kind, job, token, attempt, pid, at = parts
            key = (int(job), int(token))
            if kind == "S":
                last[key] = Attempt(int(job), int(token), int(attempt), int(pid), float(at))
                found.setdefault(int(job), []).append(last[key])
            elif kind == "E" and key in last:
                last[key].ended = float(at)
    for attempts in found.values():
        attempts.sort(key=lambda a: a.started)
    return found


def held_by(folder: Path, pid: int) -> list[Attempt]:
    """The attempts worker ``pid`` has started and not finished."""
    return [a for attempts in read_trace(folder, [pid]).values() for a in attempts if a.ended is None]


# ---------------------------------------------------------------------------- processes


class HubProc:
    """One hub on a fixed port and database, started again after each kill."""

    def __init__(self, run_dir: Path, store: str, extra: Sequence[str]) -> None:
        self.run_dir = run_dir
        self.store = store
        self.extra = list(extra)
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.proc: Proc | None = None
        self.logs: list[Path] = []

    def start(self) -> float:
        """Start the hub and wait until it answers; returns the time it was ready."""
        log = self.run_dir / f"hub-{len(self.logs) + 1}.log"
        self.logs.append(log)
        args = jobq_command(
            "hub", "--store", self.store, "--zmq", self.endpoint, *DOORS_OFF, "--name", "hub", *self.extra
        )
        self.proc = Proc(args, log)
        wait_for_hub(self.endpoint, self.proc, timeout=60)
        return time.time()

    def kill(self) -> float:
        assert self.proc is not None
        at = time.time()
        self.proc.kill()
        self.proc.close()
        return at

    def close(self) -> None:
        if self.proc is not None:
            self.proc.terminate(10)
            self.proc.close()

    def tracebacks(self) -> int:
        return sum(log.read_text(errors="replace").count("Traceback") for log in self.logs if log.exists())


class Workers:
    """``count`` worker processes running the chaos handler; a killed one is replaced."""

    def __init__(
        self,
        run_dir: Path,
        endpoint: str,
        trace: Path,
        count: int,
        concurrency: int,
        extra: Sequence[str] = (),
    ) -> None:
        self.run_dir = run_dir
        self.endpoint = endpoint
        self.trace = trace
        self.concurrency = concurrency
        self.extra = ["--prefetch", "0", *extra]
        self.every: list[Proc] = []
        self.born: dict[int, float] = {}
        self.slots = [self.spawn() for _ in range(count)]

    def spawn(self) -> Proc:
        proc = start_worker(
            self.run_dir,
            self.endpoint,
            service=SERVICE,
            handler=HANDLER,
            concurrency=self.concurrency,
            extra=self.extra,
            env={"JOBQ_CHAOS_TRACE": str(self.trace)},
        )
        self.every.append(proc)
        self.born[proc.pid] = time.monotonic()
        return proc

    def kill(self, index: int) -> tuple[int, float]:
        """SIGKILL the worker in slot ``index`` and start another there: (its pid, when)."""
        victim = self.slots[index]
        at = time.time()
        victim.kill()
        victim.close()
        self.slots[index] = self.spawn()
        return victim.pid, at

    def replace_dead(self) -> list[int]:
        """Start a worker in place of each one that died by itself; their pids."""
        dead = []
        for index, proc in enumerate(self.slots):
            if not proc.alive():
                dead.append(proc.pid)
                proc.close()
                self.slots[index] = self.spawn()
        return dead

    def victim(self, rng: random.Random, settled: float = 0.5) -> int:
        """A slot to kill: a worker up for ``settled`` seconds that runs something, if any."""
        now = time.monotonic()
        settled_slots = [i for i, p in enumerate(self.slots) if now - self.born[p.pid] >= settled]
        busy = [i for i in settled_slots if held_by(self.trace, self.slots[i].pid)]
        return rng.choice(busy or settled_slots or list(range(len(self.slots))))

    def close(self) -> None:
        for proc in self.every:
            proc.close()

    def tracebacks(self) -> int:
        logs = [p.log_path for p in self.every]
        return sum(log.read_text(errors="replace").count("Traceback") for log in logs if log.exists())


# ---------------------------------------------------------------------------- the client side


async def wait_workers(client: Client, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(await client.workers()) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{n} workers did not connect")
        await asyncio.sleep(0.05)


async def by_state(client: Client) -> dict[str, int] | None:
    """The store's jobs by state; None while the hub does not answer."""
    try:
        stats = await client.stats()
    except JobqError:
        return None
    found: dict[str, int] = stats["jobs"]["by_state"]
    return found


async def wait_ended(client: Client, total: int, deadline: float) -> bool:
    """Until nothing is live and ``total`` jobs have ended, or the deadline: whether they did."""
    while time.monotonic() < deadline:
        states = await by_state(client)
        if states is not None:
            live = sum(states.get(s, 0) for s in LIVE)
            if live == 0 and sum(states.values()) >= total:
                return True
        await asyncio.sleep(0.1)
    return False


async def fetch_jobs(client: Client, ids: Sequence[int]) -> dict[int, Job | None]:
    found: dict[int, Job | None] = {}
    for start in range(0, len(ids), 200):
        chunk = ids[start : start + 200]
        for job_id, job in zip(chunk, await asyncio.gather(*(client.status(i) for i in chunk)), strict=True):
            found[job_id] = job
    return found


# ---------------------------------------------------------------------------- checks


def _result_attempt(job: Job) -> tuple[int, int] | None:
    """(token, pid) named by the job's stored result."""
    try:
        job_id, token, pid = b"".join(job.result or []).decode().split(":")
        return (int(token), int(pid)) if int(job_id) == job.id else None
    except ValueError:
        return None


def _summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "p50": None, "p90": None, "max": None}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50": round(statistics.median(ordered), 3),
        "p90": round(ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)], 3),
        "max": round(ordered[-1], 3),
    }


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def verify(
    ids: Sequence[int], jobs: dict[int, Job | None], trace: dict[int, list[Attempt]]
) -> dict[str, Any]:
    """What every run (a)-(c) checks about its acknowledged jobs: their ends, the attempt each
    result came from, the tokens."""
    lost = [i for i in ids if jobs.get(i) is None]
    states = Counter(job.state.value for job in jobs.values() if job is not None)
    not_completed = [
        {"id": job.id, "state": job.state.value, "attempts": job.attempts, "error": job.error}
        for i in ids
        if (job := jobs.get(i)) is not None and job.state.value != "completed"
    ]
    stale: list[dict[str, Any]] = []
    unknown: list[dict[str, Any]] = []
    for i in ids:
        job = jobs.get(i)
        if job is None or job.state.value != "completed":
            continue
        named = _result_attempt(job)
        attempts = trace.get(i, [])
        if named is None or named not in {(a.token, a.pid) for a in attempts}:
            unknown.append({"id": i, "result": b"".join(job.result or [])[:60].decode(errors="replace")})
            continue
        top = max(a.token for a in attempts)
        if named[0] != top:
            stale.append({"id": i, "result_token": named[0], "highest_token": top})
    repeated: list[dict[str, Any]] = []  # one token run by two processes
    decreasing: list[dict[str, Any]] = []  # a later start with a token not above an earlier one
    same_attempt_twice = 0
    for job_id, attempts in trace.items():
        owners: dict[int, set[int]] = {}
        for a in attempts:
            owners.setdefault(a.token, set()).add(a.pid)
        same_attempt_twice += len(attempts) - len({(a.token, a.pid) for a in attempts})
        for token, pids in owners.items():
            if len(pids) > 1:
                repeated.append({"id": job_id, "token": token, "pids": sorted(pids)})
        highest = -1
        for a in attempts:
            if a.token < highest:
                decreasing.append({"id": job_id, "tokens": [x.token for x in attempts]})
                break
            highest = max(highest, a.token)
    started = sum(len(a) for a in trace.values())
    return {
        "acknowledged": len(ids),
        "states": dict(states),
        "lost": len(lost),
        "lost_sample": lost[:10],
        "not_completed": len(not_completed),
        "not_completed_sample": not_completed[:10],
        "attempts_started": started,
        "reruns": started - len(trace),
        "stale_results_accepted": len(stale),
        "stale_sample": stale[:10],
        "results_from_unknown_attempts": len(unknown),
        "unknown_sample": unknown[:10],
        "tokens_repeated": len(repeated),
        "tokens_repeated_sample": repeated[:10],
        "tokens_decreasing": len(decreasing),
        "tokens_decreasing_sample": decreasing[:10],
        "same_attempt_started_twice": same_attempt_twice,
        "checks": {
            "all_acknowledged_completed": not lost and not not_completed,
            "no_stale_result_accepted": not stale and not unknown,
            "tokens_strictly_increasing": not repeated and not decreasing,
        },
    }


def _finish(result: dict[str, Any], hub: HubProc, workers: Workers) -> dict[str, Any]:
    result["hub_tracebacks"] = hub.tracebacks()
    result["worker_tracebacks"] = workers.tracebacks()
    result["failed_checks"] = [name for name, ok in result["checks"].items() if not ok]
    return result


def _spec(seconds: float | str, key: str | None = None) -> JobSpec:
    return make_spec(SERVICE, str(seconds), idempotency_key=key)


@contextlib.contextmanager
def _run_dir(tmp: Path, prefix: str, keep: bool) -> Any:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=tmp))
    (path / "trace").mkdir()
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def _store(run_dir: Path, durability: str) -> str:
    url = f"sqlite:///{run_dir / 'jobq.db'}"
    return url if durability == "normal" else f"{url}?durability={durability}"


# ---------------------------------------------------------------------------- (a) worker kills


async def run_a(opts: Options, durability: str, tmp: Path) -> dict[str, Any]:
    """``opts.jobs`` jobs, ``opts.workers`` workers, ``opts.worker_kills`` SIGKILLs."""
    rng = random.Random(opts.seed)
    with _run_dir(tmp, f"a-{durability}-", opts.keep) as run_dir:
        trace = run_dir / "trace"
        hub = HubProc(run_dir, _store(run_dir, durability), opts.hub_args)
        workers: Workers | None = None
        try:
            await asyncio.to_thread(hub.start)
            workers = Workers(run_dir, hub.endpoint, trace, opts.workers, opts.concurrency)
            async with Client(hub.endpoint, timeout=30) as client:
                await wait_workers(client, opts.workers)
                started = time.time()
                deadline = time.monotonic() + opts.timeout
                accepted = await client.submit_many([_spec(opts.job_seconds) for _ in range(opts.jobs)])
                ids = [a[0] for a in accepted]
                kills: list[dict[str, Any]] = []
                next_kill = time.time() + opts.min_kill_gap
                ended_at = None
                while time.monotonic() < deadline:
                    states = await by_state(client)
                    now = time.time()
                    done = 0
                    if states is not None:
                        done = sum(n for s, n in states.items() if s not in LIVE)
                        if done >= opts.jobs and not any(states.get(s) for s in LIVE):
                            ended_at = now
                            break
                    if len(kills) < opts.worker_kills and now >= next_kill:
                        slot = workers.victim(rng)
                        pid, at = workers.kill(slot)
                        held = held_by(trace, pid)  # its trace is final now
                        kills.append({"pid": pid, "at": at, "held": [(a.job, a.token) for a in held]})
                        rate = (
                            done / (now - started)
                            if done
                            else opts.workers * opts.concurrency / opts.job_seconds
                        )
                        left = (opts.jobs - done) / max(rate, 1e-6)
                        next_kill = now + max(opts.min_kill_gap, left / (opts.worker_kills - len(kills) + 1))
                    await asyncio.sleep(0.1)
                jobs = await fetch_jobs(client, ids)
            all_trace = read_trace(trace)
            result: dict[str, Any] = {
                "run": "a",
                "durability": durability,
                "jobs": opts.jobs,
                "workers": opts.workers,
                "concurrency": opts.concurrency,
                "job_seconds": opts.job_seconds,
                "kills": len(kills),
                "kills_planned": opts.worker_kills,
                "wall_s": round((ended_at or time.time()) - started, 2),
                "jobs_per_s": round(opts.jobs / (ended_at - started), 1) if ended_at else None,
            }
            result.update(verify(ids, jobs, all_trace))
            recovery, per_kill, never = _worker_kill_recovery(kills, all_trace, jobs)
            result["recovery_s"] = {
                "definition": "SIGKILL → the last attempt the victim held starts again elsewhere",
                **_summary(recovery),
                "kills_holding_jobs": sum(1 for k in kills if k["held"]),
                "held_jobs_never_restarted": never,
                "per_kill": per_kill,
            }
            result["checks"]["kills_done"] = len(kills) == opts.worker_kills
            return _finish(result, hub, workers)
        finally:
            if workers is not None:
                workers.close()
            hub.close()


def _worker_kill_recovery(
    kills: list[dict[str, Any]], trace: dict[int, list[Attempt]], jobs: dict[int, Job | None]
) -> tuple[list[float], list[float | None], int]:
    recovery: list[float] = []
    per_kill: list[float | None] = []
    never = 0
    for kill in kills:
        worst: float | None = None
        for job_id, token in kill["held"]:
            job = jobs.get(job_id)
            if job is not None and _result_attempt(job) == (token, kill["pid"]):
                continue  # its result reached the hub before the kill
            again = [a for a in trace.get(job_id, []) if a.token > token and a.pid != kill["pid"]]
            if not again:
                never += 1
                continue
            delay = max(0.0, again[0].started - kill["at"])
            worst = delay if worst is None else max(worst, delay)
        per_kill.append(None if worst is None else round(worst, 3))
        if worst is not None:
            recovery.append(worst)
    return recovery, per_kill, never


# ---------------------------------------------------------------------------- (b) hub kills


async def run_b(opts: Options, tmp: Path) -> dict[str, Any]:
    """``opts.hub_kills`` hub SIGKILLs while ``opts.b_jobs`` jobs are submitted and run."""
    with _run_dir(tmp, "b-", opts.keep) as run_dir:
        trace = run_dir / "trace"
        hub = HubProc(run_dir, _store(run_dir, "normal"), opts.hub_args)
        workers: Workers | None = None
        try:
            await asyncio.to_thread(hub.start)
            workers = Workers(run_dir, hub.endpoint, trace, opts.workers, opts.concurrency)
            async with Client(hub.endpoint, timeout=3) as client:
                await wait_workers(client, opts.workers)
                ids_of_key: dict[str, set[int]] = {}
                acked: dict[int, int] = {}
                submit_errors = 0
                started = time.time()
                deadline = time.monotonic() + opts.timeout
                batches = max(1, -(-opts.b_jobs // opts.b_batch))
                pause = opts.hub_kills * opts.b_kill_gap / batches

                async def submitter() -> None:
                    nonlocal submit_errors
                    for first in range(0, opts.b_jobs, opts.b_batch):
                        numbers = range(first, min(first + opts.b_batch, opts.b_jobs))
                        specs = [_spec(opts.b_job_seconds, f"chaos-b-{n}") for n in numbers]
                        while time.monotonic() < deadline:
                            try:
                                accepted = await client.submit_many(specs)
                            except JobqError:
                                submit_errors += 1
                                await asyncio.sleep(0.2)
                                continue
                            for n, (job_id, _, _) in zip(numbers, accepted, strict=True):
                                acked[n] = job_id
                                ids_of_key.setdefault(f"chaos-b-{n}", set()).add(job_id)
                            break
                        await asyncio.sleep(pause)

                kills: list[dict[str, float]] = []

                async def killer() -> None:
                    for _ in range(opts.hub_kills):
                        await asyncio.sleep(opts.b_kill_gap)
                        if time.monotonic() > deadline:
                            return
                        at = hub.kill()
                        ready = await asyncio.to_thread(hub.start)
                        kills.append({"at": at, "ready": ready})

                await asyncio.gather(submitter(), killer())
                finished = await wait_ended(client, len(acked), deadline)
                ended_at = time.time() if finished else None
                ids = [acked[n] for n in sorted(acked)]
                jobs = await fetch_jobs(client, ids)
            all_trace = read_trace(trace)
            starts = sorted(a.started for attempts in all_trace.values() for a in attempts)
            ends = sorted(j.finished_at for j in jobs.values() if j is not None and j.finished_at is not None)
            per_kill: list[dict[str, float | None]] = []
            for kill in kills:
                resumed = next((s for s in starts if s > kill["ready"]), None)
                completed = next((e for e in ends if e > kill["at"]), None)
                per_kill.append(
                    {
                        "hub_ready_s": round(kill["ready"] - kill["at"], 3),
                        "work_resumed_s": None if resumed is None else round(resumed - kill["at"], 3),
                        "first_completion_s": None if completed is None else round(completed - kill["at"], 3),
                    }
                )
            duplicates = {k: sorted(v) for k, v in ids_of_key.items() if len(v) > 1}
            result: dict[str, Any] = {
                "run": "b",
                "durability": "normal",
                "jobs": opts.b_jobs,
                "workers": opts.workers,
                "concurrency": opts.concurrency,
                "job_seconds": opts.b_job_seconds,
                "kills": len(kills),
                "kills_planned": opts.hub_kills,
                "submit_retries": submit_errors,
                "keys_answered_with_two_ids": len(duplicates),
                "wall_s": round((ended_at or time.time()) - started, 2),
                "jobs_per_s": round(len(ids) / (ended_at - started), 1) if ended_at else None,
            }
            result.update(verify(ids, jobs, all_trace))
            result["recovery_s"] = {
                "definition": "hub_ready: SIGKILL → the restarted hub answers; work_resumed: SIGKILL → "
                "the first attempt started after that; first_completion: SIGKILL → the first job the hub "
                "finished after it",
                "hub_ready": _summary(_present(k["hub_ready_s"] for k in per_kill)),
                "work_resumed": _summary(_present(k["work_resumed_s"] for k in per_kill)),
                "first_completion": _summary(_present(k["first_completion_s"] for k in per_kill)),
                "per_kill": per_kill,
            }
            result["checks"]["kills_done"] = len(kills) == opts.hub_kills
            result["checks"]["all_submits_acknowledged"] = len(acked) == opts.b_jobs and not duplicates
            return _finish(result, hub, workers)
        finally:
            if workers is not None:
                workers.close()
            hub.close()


# ---------------------------------------------------------------------------- (c) SIGSTOP


async def run_c(opts: Options, tmp: Path) -> dict[str, Any]:
    """A worker stopped past its lease while it runs jobs; SIGCONT later."""
    with _run_dir(tmp, "c-", opts.keep) as run_dir:
        trace = run_dir / "trace"
        hub = HubProc(
            run_dir, _store(run_dir, "normal"), [*opts.hub_args, "--lease-ttl", str(opts.c_lease_ttl)]
        )
        workers: Workers | None = None
        try:
            await asyncio.to_thread(hub.start)
            workers = Workers(run_dir, hub.endpoint, trace, 2, 2)
            victim = workers.slots[0]
            async with Client(hub.endpoint, timeout=30) as client:
                await wait_workers(client, 2)
                deadline = time.monotonic() + opts.timeout
                ids = [
                    a[0]
                    for a in await client.submit_many([_spec(opts.c_job_seconds) for _ in range(opts.c_jobs)])
                ]
                while not (held := held_by(trace, victim.pid)):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the victim never started a job")
                    await asyncio.sleep(0.01)
                await asyncio.sleep(min(0.2, opts.c_job_seconds / 4))  # mid-job
                held = held_by(trace, victim.pid)
                stopped = time.time()
                victim.popen.send_signal(signal.SIGSTOP)
                await asyncio.sleep(opts.c_stop)
                resumed = time.time()
                victim.popen.send_signal(signal.SIGCONT)
                finished = await wait_ended(client, len(ids), deadline)
                await asyncio.sleep(max(1.0, opts.c_job_seconds))  # the late results reach the hub
                jobs = await fetch_jobs(client, ids)
            all_trace = read_trace(trace)
            result: dict[str, Any] = {
                "run": "c",
                "lease_ttl": opts.c_lease_ttl,
                "stopped_s": opts.c_stop,
                "jobs": opts.c_jobs,
                "job_seconds": opts.c_job_seconds,
                "all_ended": finished,
            }
            result.update(verify(ids, jobs, all_trace))
            elsewhere = []
            recovery = []
            for a in held:
                job = jobs.get(a.job)
                named = None if job is None else _result_attempt(job)
                elsewhere.append(named is not None and named[1] != victim.pid and named[0] > a.token)
                again = [x for x in all_trace.get(a.job, []) if x.token > a.token and x.pid != victim.pid]
                if again:
                    recovery.append(again[0].started - stopped)
            late = [
                x
                for a in held
                for x in all_trace.get(a.job, [])
                if x.pid == victim.pid and x.token == a.token and x.ended is not None and x.ended >= resumed
            ]
            result["held_jobs"] = len(held)
            result["held_completed_elsewhere"] = sum(elsewhere)
            result["late_results_sent"] = len(late)
            result["victim_attempts_after_resume"] = sum(
                1
                for attempts in all_trace.values()
                for x in attempts
                if x.pid == victim.pid and x.started > resumed
            )
            result["recovery_s"] = {
                "definition": "SIGSTOP → each held job starts again on another worker",
                **_summary(recovery),
            }
            result["checks"]["stalled_jobs_completed_elsewhere"] = bool(held) and all(elsewhere)
            return _finish(result, hub, workers)
        finally:
            if workers is not None:
                with contextlib.suppress(ProcessLookupError):
                    workers.slots[0].popen.send_signal(signal.SIGCONT)
                workers.close()
            hub.close()


# ---------------------------------------------------------------------------- (d) poison


def documented_poison_deaths() -> int | None:
    """The worker deaths after which the hub quarantines a job, as jobq documents it (a
    constant of its own), if this tree has one."""
    import importlib

    for module, name in (
        ("jobq.core.retry", "DEFAULT_MAX_LOSSES"),
        ("jobq.core.retry", "DEFAULT_MAX_WORKER_LOSSES"),
        ("jobq.core.retry", "MAX_WORKER_LOSSES"),
        ("jobq.core.retry", "WORKER_LOSS_BUDGET"),
        ("jobq.core.retry", "DEFAULT_WORKER_LOSSES"),
        ("jobq.core.retry", "QUARANTINE_AFTER"),
        ("jobq.core.lease", "QUARANTINE_AFTER"),
        ("jobq.config", "DEFAULT_MAX_WORKER_LOSSES"),
    ):
        with contextlib.suppress(ImportError, AttributeError):
            value = getattr(importlib.import_module(module), name)
            if isinstance(value, int):
                return value
    return None


async def run_d(opts: Options, tmp: Path) -> dict[str, Any]:
    """A job whose handler kills its worker, among ``opts.d_jobs`` normal ones."""
    limit = opts.poison_deaths or documented_poison_deaths()
    with _run_dir(tmp, "d-", opts.keep) as run_dir:
        trace = run_dir / "trace"
        hub = HubProc(run_dir, _store(run_dir, "normal"), opts.hub_args)
        workers: Workers | None = None
        try:
            await asyncio.to_thread(hub.start)
            workers = Workers(run_dir, hub.endpoint, trace, opts.workers, opts.concurrency)
            deaths: list[int] = []
            async with Client(hub.endpoint, timeout=30) as client:
                await wait_workers(client, opts.workers)
                half = opts.d_jobs // 2
                specs = [_spec(opts.d_job_seconds) for _ in range(opts.d_jobs)]
                specs.insert(half, make_spec(SERVICE, b"poison"))
                started = time.time()
                deadline = time.monotonic() + opts.timeout
                ids = [a[0] for a in await client.submit_many(specs)]
                poison = ids.pop(half)
                total = len(ids) + 1
                finished = False
                while time.monotonic() < deadline:
                    deaths.extend(workers.replace_dead())
                    states = await by_state(client)
                    if (
                        states is not None
                        and sum(states.values()) >= total
                        and not any(states.get(s) for s in LIVE)
                    ):
                        finished = True
                        break
                    await asyncio.sleep(0.05)
                ended_at = time.time()
                jobs = await fetch_jobs(client, [*ids, poison])
            all_trace = read_trace(trace)
            others = verify(ids, jobs, all_trace)
            job = jobs.get(poison)
            state = None if job is None else job.state.value
            error = None if job is None else job.error
            quarantined = state == "quarantined" or (
                state == "failed" and "quarantin" in (error or "").lower()
            )
            poison_starts = all_trace.get(poison, [])
            result: dict[str, Any] = {
                "run": "d",
                "jobs": opts.d_jobs,
                "all_ended": finished,
                "wall_s": round(ended_at - started, 2),
                "poison": {
                    "id": poison,
                    "state": state,
                    "error": error,
                    "attempts": None if job is None else job.attempts,
                    "quarantined_as": ("state" if state == "quarantined" else "failed with a reason")
                    if quarantined
                    else None,
                    "worker_deaths": len(poison_starts),
                    "death_pids": [a.pid for a in poison_starts],
                    "documented_limit": limit,
                },
                "workers_died": len(deaths),
                "others": {k: v for k, v in others.items() if k != "checks"},
                "checks": {
                    "poison_quarantined": quarantined,
                    "poison_deaths_within_limit": limit is not None and 0 < len(poison_starts) <= limit,
                    "others_completed": others["checks"]["all_acknowledged_completed"],
                    "others_no_stale_result_accepted": others["checks"]["no_stale_result_accepted"],
                    "others_tokens_strictly_increasing": others["checks"]["tokens_strictly_increasing"],
                },
            }
            return _finish(result, hub, workers)
        finally:
            if workers is not None:
                workers.close()
            hub.close()


# ---------------------------------------------------------------------------- main


async def run_all(opts: Options, runs: Sequence[str], tmp: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for run in runs:
        if run == "a":
            for durability in opts.durability:
                results[f"a_{durability}"] = await run_a(opts, durability, tmp)
                print(json.dumps({f"a_{durability}": results[f"a_{durability}"]["checks"]}), file=sys.stderr)
            continue
        if run == "b":
            results["b"] = await run_b(opts, tmp)
        elif run == "c":
            results["c"] = await run_c(opts, tmp)
        elif run == "d":
            results["d"] = await run_d(opts, tmp)
        else:
            raise SystemExit(f"unknown run {run!r} (a, b, c, d)")
        last = list(results)[-1]
        print(json.dumps({last: results[last]["checks"]}), file=sys.stderr)
    failed = [f"{name}.{check}" for name, r in results.items() for check in r["failed_checks"]]
    return {
        "benchmark": "chaos",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "runs": results,
        "failed_checks": failed,
        "ok": not failed,
    }


def parse(argv: Sequence[str] | None = None) -> tuple[Options, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = Options()
    parser.add_argument("--runs", default="a,b,c,d", help="which runs, comma-separated (a,b,c,d)")
    parser.add_argument("--jobs", type=int, default=d.jobs, help="(a) jobs per durability")
    parser.add_argument("--workers", type=int, default=d.workers, help="worker processes (a, b, d)")
    parser.add_argument("--concurrency", type=int, default=d.concurrency, help="jobs at once per worker")
    parser.add_argument("--job-seconds", type=float, default=d.job_seconds, help="(a) seconds per job")
    parser.add_argument(
        "--worker-kills", type=int, default=d.worker_kills, help="(a) SIGKILLs per durability"
    )
    parser.add_argument(
        "--min-kill-gap", type=float, default=d.min_kill_gap, help="(a) seconds between kills at least"
    )
    parser.add_argument("--durability", default=",".join(d.durability), help="(a) normal,full")
    parser.add_argument("--hub-kills", type=int, default=d.hub_kills, help="(b) hub SIGKILLs")
    parser.add_argument("--b-jobs", type=int, default=d.b_jobs, help="(b) jobs")
    parser.add_argument(
        "--b-kill-gap", type=float, default=d.b_kill_gap, help="(b) seconds of work between hub kills"
    )
    parser.add_argument("--b-job-seconds", type=float, default=d.b_job_seconds)
    parser.add_argument("--c-jobs", type=int, default=d.c_jobs)
    parser.add_argument("--c-job-seconds", type=float, default=d.c_job_seconds)
    parser.add_argument("--c-lease-ttl", type=float, default=d.c_lease_ttl, help="(c) the hub's --lease-ttl")
    parser.add_argument("--c-stop", type=float, default=d.c_stop, help="(c) seconds the worker stays stopped")
    parser.add_argument("--d-jobs", type=int, default=d.d_jobs)
    parser.add_argument(
        "--poison-deaths",
        type=int,
        default=None,
        help="(d) worker deaths allowed (default: jobq's documented figure)",
    )
    parser.add_argument(
        "--hub-arg", action="append", default=[], help="extra argument for every hub (repeatable)"
    )
    parser.add_argument("--timeout", type=float, default=d.timeout, help="seconds a run may take at most")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--keep", action="store_true", help="keep the run directories (logs, traces, databases)"
    )
    a = parser.parse_args(argv)
    opts = Options(
        jobs=a.jobs,
        workers=a.workers,
        concurrency=a.concurrency,
        job_seconds=a.job_seconds,
        worker_kills=a.worker_kills,
        min_kill_gap=a.min_kill_gap,
        durability=tuple(x for x in a.durability.split(",") if x),
        hub_kills=a.hub_kills,
        b_jobs=a.b_jobs,
        b_kill_gap=a.b_kill_gap,
        b_job_seconds=a.b_job_seconds,
        c_jobs=a.c_jobs,
        c_job_seconds=a.c_job_seconds,
        c_lease_ttl=a.c_lease_ttl,
        c_stop=a.c_stop,
        d_jobs=a.d_jobs,
        poison_deaths=a.poison_deaths,
        hub_args=a.hub_arg,
        timeout=a.timeout,
        seed=a.seed,
        keep=a.keep,
    )
    return opts, [r for r in a.runs.split(",") if r]


async def main() -> int:
    opts, runs = parse()
    tmp = Path(tempfile.mkdtemp(prefix="jobq-chaos-"))
    try:
        report = await run_all(opts, runs, tmp)
    finally:
        if not opts.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if opts.keep:
        report["kept"] = str(tmp)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    try:
        import uvloop

        code = uvloop.run(main())
    except ImportError:
        code = asyncio.run(main())
    sys.exit(code)
