"""The DSJQ dialect as its document has it, and the dsjq-compat listener as the known C++ server
behaves (no JOB prefix, silence for SUBMIT, ACK, FAIL and unknown commands, QUIT)."""

from __future__ import annotations

from jobq.core.model import JobFilter, JobSpec
from tests.helpers import eventually
from tests.integration.linepeer import line_hub, once


async def test_document_dialect_submit_request_ack() -> None:
    async with line_hub() as lh:
        producer = await lh.peer()
        assert await producer.ask("SUBMIT resize photo 42") == "JOB_ID 1"
        assert await producer.ask("submit second") == "JOB_ID 2"
        assert await producer.ask("SUBMIT") == "ERR"
        worker = await lh.peer()
        assert await worker.ask("REQUEST") == "JOB 1 resize photo 42"
        assert await worker.ask("REQUEST") == "JOB 1 resize photo 42", (
            "a repeated REQUEST returns the held job"
        )
        assert await worker.ask("ACK 1") == "OK"
        assert await worker.ask("ACK 1") == "ERR"
        assert await worker.ask("REQUEST") == "JOB 2 second"
        assert await worker.ask("ACK 2") == "OK"
        assert await worker.ask("REQUEST") == "EMPTY"
        assert await worker.ask("NONSENSE") == "ERR"
        assert [await lh.state(i) for i in (1, 2)] == ["completed", "completed"]
        await producer.close()
        await worker.close()


async def test_fail_requeues_with_the_jobs_retry_policy() -> None:
    async with line_hub() as lh:
        submitted = await lh.hub.submit_one(
            JobSpec(service="default", payload=[b"flaky"], max_attempts=2, backoff=0.05)
        )
        job_id = submitted.job.id
        worker = await lh.peer()
        assert await worker.ask("REQUEST") == f"JOB {job_id} flaky"
        assert await worker.ask(f"FAIL {job_id} disk full") == "OK"
        job = await lh.hub.get(job_id)
        assert job.state.value == "scheduled" and job.error == "disk full"
        assert await once(lh.plain, f"STATUS {job_id}") == "waiting"

        async def offered_again() -> bool:
            return await worker.ask("REQUEST") == f"JOB {job_id} flaky"

        await eventually(offered_again)
        assert (await lh.hub.get(job_id)).attempts == 2
        assert await worker.ask(f"FAIL {job_id}") == "OK"
        assert await once(lh.plain, f"STATUS {job_id}") == "failed", "attempts exhausted"
        assert await worker.ask("REQUEST") == "EMPTY"
        await worker.close()


async def test_compat_listener_answers_as_the_cpp_server() -> None:
    async with line_hub() as lh:
        peer = await lh.peer(compat=True)
        # No reply to SUBMIT, ACK, FAIL or anything unknown: the first bytes back are REQUEST's.
        await peer.send(b"SUBMIT alpha beta\nSUBMIT gamma\nBOGUS\n\xff\xfe\nREQUEST\n")
        assert await peer.line() == "1 alpha beta"
        await peer.send(b"ACK 1\nACK 1\nFAIL 7\nREQUEST\n")
        assert await peer.line() == "2 gamma"
        await peer.send(b"FAIL 2\nREQUEST\n")
        assert await peer.line() == "EMPTY", "the failed job waits for its retry"
        await peer.send(b"QUIT\nSUBMIT after quit\n")
        assert await peer.rest() == b"", "QUIT closes the connection without a word"
        assert await lh.state(1) == "completed"
        assert await lh.state(2) == "scheduled"
        assert len(await lh.hub.list_jobs(JobFilter())) == 2, "nothing after QUIT was taken"


async def test_quit_on_the_document_listener_closes_too() -> None:
    async with line_hub() as lh:
        peer = await lh.peer()
        assert await peer.ask("SUBMIT x") == "JOB_ID 1"
        await peer.send(b"quit\n")
        assert await peer.rest() == b""


async def test_every_listener_understands_both_command_sets() -> None:
    async with line_hub() as lh:
        compat = await lh.peer(compat=True)
        assert await compat.ask("JOB from the work queue") == "ID 1"
        assert await compat.ask("STATUS 1") == "waiting"
        assert await compat.ask("FETCH") == "JOB 1 from the work queue"
        assert await compat.ask("DONE 1") == "OK"
        assert await compat.ask("JOB") == "ERR", "work-queue refusals are answered on any listener"
        plain = await lh.peer()
        assert await plain.ask("SUBMIT from dsjq") == "JOB_ID 2"
        assert await plain.ask("FETCH") == "JOB 2 from dsjq", "one queue for both command sets"
        assert await plain.ask("ACK 2") == "OK"
        assert await once(lh.plain, "STATUS 2") == "completed"
        await compat.close()
        await plain.close()
