"""Majordomo peers written from the RFCs (7/MDP, 18/MDP) and the zguide / majortomo code, not
through jobq: what an existing MDP client or worker sends and expects, frame by frame.

In-process async peers for the integration tests, and a zguide-style worker process
(``python -m tests.mdp_peers ENDPOINT SERVICE``) that tests can SIGKILL.
"""

from __future__ import annotations

import argparse
import sys
import time

import zmq
import zmq.asyncio

C01, W01, C02, W02 = b"MDPC01", b"MDPW01", b"MDPC02", b"MDPW02"


class Peer:
    """A DEALER (or REQ) socket with timeouts, for writing protocol tests frame by frame."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, kind: int = zmq.DEALER) -> None:
        self.sock = ctx.socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    async def send(self, frames: list[bytes]) -> None:
        await self.sock.send_multipart(frames)

    async def recv(self, timeout: float = 10.0) -> list[bytes]:
        if not await self.sock.poll(int(timeout * 1000)):
            raise AssertionError(f"nothing received within {timeout}s")
        frames: list[bytes] = await self.sock.recv_multipart()
        return frames

    async def quiet(self, timeout: float) -> bool:
        """True when nothing arrives within ``timeout`` seconds."""
        return not await self.sock.poll(int(timeout * 1000))

    def close(self) -> None:
        self.sock.close(0)


class Worker(Peer):
    """An MDP worker: ``version`` 1 or 2, with or without the leading empty frame."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, version: int = 1, lead: bool = True) -> None:
        super().__init__(ctx, endpoint)
        self.header = W01 if version == 1 else W02
        self.version = version
        self.lead = [b""] if lead else []
        self.heartbeats = 0

    @property
    def hb(self) -> bytes:
        return b"\x04" if self.version == 1 else b"\x05"

    @property
    def bye(self) -> bytes:
        return b"\x05" if self.version == 1 else b"\x06"

    async def command(self, command: bytes, *rest: bytes) -> None:
        await self.send([*self.lead, self.header, command, *rest])

    async def ready(self, service: bytes) -> None:
        await self.command(b"\x01", service)

    async def next(self, timeout: float = 10.0) -> list[bytes]:
        """The next message that is not a heartbeat, checked for the framing this peer uses;
        returns the frames after the header."""
        while True:
            frames = await self.recv(timeout)
            assert frames[: len(self.lead)] == self.lead, f"framing changed: {frames!r}"
            frames = frames[len(self.lead) :]
            assert frames[0] == self.header, frames
            if frames[1] == self.hb:
                self.heartbeats += 1
                continue
            return frames[1:]

    async def heartbeat(self, timeout: float = 10.0) -> None:
        """Wait for a HEARTBEAT (in this peer's framing); nothing else may come first."""
        frames = await self.recv(timeout)
        assert frames == [*self.lead, self.header, self.hb], f"expected HEARTBEAT, got {frames!r}"
        self.heartbeats += 1

    async def request(self, timeout: float = 10.0) -> tuple[bytes, list[bytes]]:
        """Wait for a REQUEST: (client address, body)."""
        frames = await self.next(timeout)
        assert frames[0] == b"\x02", f"expected REQUEST, got {frames!r}"
        assert frames[2] == b"", frames
        return frames[1], frames[3:]

    async def reply(self, address: bytes, body: list[bytes], *, partial: bool = False) -> None:
        if self.version == 1:
            assert not partial
            await self.command(b"\x03", address, b"", *body)
        else:
            await self.command(b"\x03" if partial else b"\x04", address, b"", *body)

    async def serve(self, n: int, transform: object = None) -> None:
        """Answer ``n`` requests with their own body (or ``transform(body)``)."""
        for _ in range(n):
            address, body = await self.request()
            await self.reply(address, body if transform is None else transform(body))  # type: ignore[operator]


# ---------------------------------------------------------------- a zguide-style worker process


def worker_process(
    endpoint: str, service: str, heartbeat: float, sleep: bool, show_ready: bool = False
) -> None:
    """As the zguide's mdwrkapi.py: READY once, heartbeat while idle, silent while busy, and
    on DISCONNECT a new socket and READY again at once. With ``sleep``, a request's first frame
    is seconds to sleep; the reply is the body. With ``show_ready``, each READY is printed."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    sock.send_multipart([b"", W01, b"\x01", service.encode()])
    if show_ready:
        print("READY", flush=True)
    next_beat = time.monotonic() + heartbeat
    while True:
        if sock.poll(int(heartbeat * 1000)):
            frames = sock.recv_multipart()
            assert frames[0] == b"" and frames[1] == W01, frames
            if frames[2] == b"\x02":
                address, body = frames[3], frames[5:]
                print(f"request {address.decode()}", flush=True)
                if sleep:
                    time.sleep(float(body[0]))
                sock.send_multipart([b"", W01, b"\x03", address, b"", *body])
            elif frames[2] == b"\x05":
                sock.close(0)
                sock = ctx.socket(zmq.DEALER)
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(endpoint)
                sock.send_multipart([b"", W01, b"\x01", service.encode()])
                if show_ready:
                    print("READY", flush=True)
        if time.monotonic() > next_beat:
            sock.send_multipart([b"", W01, b"\x04"])
            next_beat = time.monotonic() + heartbeat


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("endpoint")
    parser.add_argument("service")
    parser.add_argument("--heartbeat", type=float, default=2.5)
    parser.add_argument("--sleep", action="store_true")
    parser.add_argument("--show-ready", action="store_true")
    args = parser.parse_args(argv)
    worker_process(args.endpoint, args.service, args.heartbeat, args.sleep, args.show_ready)


if __name__ == "__main__":
    main(sys.argv[1:])
