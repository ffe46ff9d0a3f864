"""What CURVE costs on jobq's own ZMTP: its ROUTER and DEALER with NULL, then with CURVE, same run.

A child process holds two ``RouterSocket``s on loopback, one NULL and one CURVE (with a
``curve_authenticate`` callback, as a door has); this process connects a ``DealerSocket`` to each
in turn (its own core each, on a 2-core machine) and measures:

- ``round_trips_per_s``: one message out, its echo back, the next (one outstanding);
- ``one_way_per_s``: N messages sent back to back, then one echoed as a marker: the router has
  taken them all (in order) when the marker comes back;
- ``connects_per_s``: new connections through their handshake, one after another (CURVE's is
  four commands and a few Curve25519 operations).

Messages are two frames (a 3-byte verb, a payload of ``--size`` bytes). Each figure is the best of
``--repeat`` runs. Prints one JSON document. ``python -m bench.curve --help`` for the knobs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from jobq.protocol import curve
from jobq.protocol.zmtp_io import DealerSocket, RouterSocket

Keys = tuple[str, str, str]  # the server's public and secret keys, the client's secret key
ClientKeys = tuple[str, str, str] | None  # the server's public key, the client's pair; None: NULL


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> str:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(main())
        return "asyncio"
    uvloop.run(main())
    return "uvloop"


def serve(keys: Keys, ports: multiprocessing.Queue[tuple[str, str]], stop: Any) -> None:
    """The child: a NULL and a CURVE router that echo ``ech`` messages and swallow ``snk`` ones."""
    _, server_secret, client_secret = keys
    client_public = curve.public_key_for(client_secret)

    async def main() -> None:
        routers: list[RouterSocket] = []

        def router(**kwargs: Any) -> RouterSocket:
            sock: RouterSocket

            def on_message(frames: list[bytes]) -> None:
                if frames[1] == b"ech":
                    sock.send(frames)

            sock = RouterSocket(on_message, **kwargs)
            routers.append(sock)
            return sock

        null = await router().bind("tcp://127.0.0.1:*")
        secured = await router(
            curve_server=server_secret, curve_authenticate=lambda key: key == client_public or None
        ).bind("tcp://127.0.0.1:*")
        ports.put((null, secured))
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        for sock in routers:
            sock.close()

    _run(main)


class Client:
    def __init__(self, endpoint: str, keys: ClientKeys) -> None:
        self.replies: asyncio.Queue[list[bytes]] = asyncio.Queue()
        self.connected = asyncio.Event()
        server, public, secret = keys or (None, None, None)
        self.dealer = DealerSocket(
            endpoint,
            self.replies.put_nowait,
            on_connect=self.connected.set,
            curve_server_key=server,
            curve_public_key=public,
            curve_secret_key=secret,
        )

    async def __aenter__(self) -> Client:
        self.dealer.start()
        await asyncio.wait_for(self.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.dealer.close()


async def round_trips(client: Client, n: int, payload: bytes) -> float:
    started = time.perf_counter()
    for _ in range(n):
        client.dealer.send([b"ech", payload])
        await client.replies.get()
    return n / (time.perf_counter() - started)


async def one_way(client: Client, n: int, payload: bytes) -> float:
    message = [b"snk", payload]
    started = time.perf_counter()
    for i in range(n):
        client.dealer.send(message)
        if i % 1000 == 999:
            await asyncio.sleep(0)  # let the transport drain what it holds
    client.dealer.send([b"ech", b"end"])
    await client.replies.get()
    return n / (time.perf_counter() - started)


async def connects(endpoint: str, keys: ClientKeys, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        async with Client(endpoint, keys):
            pass
    return n / (time.perf_counter() - started)


async def measure(endpoint: str, keys: ClientKeys, args: argparse.Namespace) -> dict[str, float]:
    payload = os.urandom(args.size)
    best: dict[str, float] = {"round_trips_per_s": 0.0, "one_way_per_s": 0.0, "connects_per_s": 0.0}
    async with Client(endpoint, keys) as client:
        await round_trips(client, min(args.round_trips, 500), payload)  # warm up
        for _ in range(args.repeat):
            rt = await round_trips(client, args.round_trips, payload)
            ow = await one_way(client, args.messages, payload)
            best["round_trips_per_s"] = max(best["round_trips_per_s"], rt)
            best["one_way_per_s"] = max(best["one_way_per_s"], ow)
    for _ in range(args.repeat):
        best["connects_per_s"] = max(best["connects_per_s"], await connects(endpoint, keys, args.connects))
    return {k: round(v, 1) for k, v in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=100, help="payload bytes of a message")
    parser.add_argument("--round-trips", type=int, default=5_000, help="round trips per run")
    parser.add_argument("--messages", type=int, default=100_000, help="one-way messages per run")
    parser.add_argument("--connects", type=int, default=200, help="connections per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best is kept")
    args = parser.parse_args()

    server_public, server_secret = curve.generate_keypair()
    client_public, client_secret = curve.generate_keypair()
    spawn = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue[tuple[str, str]] = spawn.Queue()
    stop = spawn.Event()
    child = spawn.Process(target=serve, args=((server_public, server_secret, client_secret), ports, stop))
    child.start()
    results: dict[str, dict[str, float]] = {}
    try:
        null, secured = ports.get(timeout=30)
        keys = (server_public, client_public, client_secret)

        async def run_all() -> None:
            print("NULL ...", file=sys.stderr)
            results["null"] = await measure(null, None, args)
            print("CURVE ...", file=sys.stderr)
            results["curve"] = await measure(secured, keys, args)

        loop = _run(run_all)
    finally:
        stop.set()
        child.join(10)
        if child.is_alive():
            child.kill()
    report = {
        "bench": "curve",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loop": loop,
        "message": f"2 frames, {args.size}-byte payload",
        "results": results,
        "curve_vs_null": {k: round(results["curve"][k] / results["null"][k], 3) for k in results["null"]},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
