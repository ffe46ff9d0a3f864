"""Connector health steers dispatch: a worker whose backend for a service is down gets no new
jobs of that service, ``explain`` names the reason, and it takes them again once healthy."""

from __future__ import annotations

from jobq.core.views import WorkerHello
from tests.unit.test_hub import FakeLink, MakeRig, spec


async def test_an_unhealthy_service_gets_no_jobs_and_explain_names_it(make_rig: MakeRig) -> None:
    rig = await make_rig()
    link = await rig.attach("gpu-1", slots=4, services=("comfyui", "echo"))
    assert await rig.hub.heartbeat("gpu-1", None, {"comfyui": "connection refused"})
    [image, text] = await rig.submit(spec("comfyui"), spec("echo"))
    await rig.settle()
    assert link.ids == [text]
    why = await rig.hub.explain(image)
    assert why.summary == "comfyui on worker gpu-1 unhealthy: connection refused"
    assert why.ineligible == {"gpu-1": "comfyui on worker gpu-1 unhealthy: connection refused"}
    [status] = await rig.hub.worker_statuses()
    assert status.info.unhealthy == {"comfyui": "connection refused"}
    assert status.info.services == ["comfyui", "echo"]  # still declared, just not taking any

    assert await rig.hub.heartbeat("gpu-1", None, {})  # the service came back
    await rig.settle()
    assert link.ids == [text, image]


async def test_a_worker_attaching_with_a_service_down_is_not_given_its_jobs(make_rig: MakeRig) -> None:
    rig = await make_rig()
    link = FakeLink()
    hello = WorkerHello(id="gpu-2", services=["comfyui"], slots=1, unhealthy={"comfyui": "timed out"})
    await rig.hub.attach(hello, link)
    [job] = await rig.submit(spec("comfyui"))
    await rig.settle()
    assert link.ids == []
    assert (await rig.hub.explain(job)).summary == "comfyui on worker gpu-2 unhealthy: timed out"
