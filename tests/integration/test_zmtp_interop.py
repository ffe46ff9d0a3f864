"""jobq's asyncio ZMTP sockets against libzmq's (pyzmq): each side sees what the other sent."""

from __future__ import annotations

import asyncio

import zmq
import zmq.asyncio

from jobq.protocol.zmtp_io import DealerSocket, RouterSocket


async def test_libzmq_dealer_and_req_talk_to_our_router() -> None:
    got: list[list[bytes]] = []
    router: RouterSocket

    def echo(frames: list[bytes]) -> None:
        got.append(frames)
        router.send(frames)

    router = RouterSocket(echo)
    endpoint = await router.bind("tcp://127.0.0.1:*")
    ctx = zmq.asyncio.Context()
    try:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, b"dealer-1")
        dealer.connect(endpoint)
        body = [b"JQ1", b"", bytes(range(256)), b"x" * 70_000]
        await dealer.send_multipart(body)
        assert await asyncio.wait_for(dealer.recv_multipart(), 5) == body
        req = ctx.socket(zmq.REQ)
        req.connect(endpoint)
        await req.send_multipart([b"MDPC01", b"echo", b"hi"])
        assert await asyncio.wait_for(req.recv_multipart(), 5) == [b"MDPC01", b"echo", b"hi"]
        assert got[0][0] == b"dealer-1" and got[0][1:] == body
        assert got[1][0][0] == 0 and got[1][1:] == [b"", b"MDPC01", b"echo", b"hi"]  # REQ adds the delimiter
        assert router.send([b"nobody", b"x"]) is False and router.dropped == 1
    finally:
        router.close()
        ctx.destroy(linger=0)


async def test_our_dealer_talks_to_a_libzmq_router_and_queues_until_connected() -> None:
    ctx = zmq.asyncio.Context()
    replies: asyncio.Queue[list[bytes]] = asyncio.Queue()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = DealerSocket(f"tcp://127.0.0.1:{port}", replies.put_nowait, identity=b"ours")
    try:
        dealer.send([b"sent before connecting"])
        dealer.start()
        assert await asyncio.wait_for(router.recv_multipart(), 5) == [b"ours", b"sent before connecting"]
        await router.send_multipart([b"ours", b"a", b"b" * 1000])
        assert await asyncio.wait_for(replies.get(), 5) == [b"a", b"b" * 1000]
    finally:
        dealer.close()
        ctx.destroy(linger=0)


async def test_a_dealer_reconnects_after_its_router_restarts() -> None:
    got: asyncio.Queue[list[bytes]] = asyncio.Queue()
    router = RouterSocket(got.put_nowait)
    endpoint = await router.bind("tcp://127.0.0.1:*")
    drops: list[int] = []
    dealer = DealerSocket(endpoint, lambda f: None, identity=b"w1", on_disconnect=lambda: drops.append(1))
    dealer.start()
    try:
        dealer.send([b"one"])
        assert (await asyncio.wait_for(got.get(), 5))[1:] == [b"one"]
        router.close()
        await asyncio.sleep(0.2)
        assert drops == [1]
        router = RouterSocket(got.put_nowait)
        await router.bind(endpoint)
        dealer.send([b"two"])
        assert await asyncio.wait_for(got.get(), 5) == [b"w1", b"two"]
    finally:
        dealer.close()
        router.close()


async def test_a_peer_with_an_identity_in_use_takes_it_over() -> None:
    got: asyncio.Queue[list[bytes]] = asyncio.Queue()
    router = RouterSocket(got.put_nowait)
    endpoint = await router.bind("tcp://127.0.0.1:*")
    first = DealerSocket(endpoint, lambda f: None, identity=b"same")
    second_replies: asyncio.Queue[list[bytes]] = asyncio.Queue()
    second = DealerSocket(endpoint, second_replies.put_nowait, identity=b"same")
    try:
        first.start()
        first.send([b"from first"])
        await asyncio.wait_for(got.get(), 5)
        second.start()
        second.send([b"from second"])
        await asyncio.wait_for(got.get(), 5)
        router.send([b"same", b"to the newest"])
        assert await asyncio.wait_for(second_replies.get(), 5) == [b"to the newest"]
    finally:
        first.close()
        second.close()
        router.close()


async def test_garbage_closes_only_that_connection() -> None:
    got: asyncio.Queue[list[bytes]] = asyncio.Queue()
    router = RouterSocket(got.put_nowait)
    endpoint = await router.bind("tcp://127.0.0.1:*")
    port = int(endpoint.rsplit(":", 1)[1])
    good = DealerSocket(endpoint, lambda f: None)
    try:
        good.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 10)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) is not None  # closed by the router
        writer.close()
        good.send([b"still fine"])
        assert (await asyncio.wait_for(got.get(), 5))[1:] == [b"still fine"]
    finally:
        good.close()
        router.close()
