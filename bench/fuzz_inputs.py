"""Random and malformed input for every door of the hub, for ``bench/fuzz.py``.

The ideas of the suite's fuzz tests (``tests/integration/test_native_fuzz.py``,
``test_line_fuzz.py``, ``test_http_fuzz.py``), as plain generators on a seeded
``random.Random`` so they can run for minutes: mostly messages shaped like the real ones with
hostile values (ids and offsets at and past 2**63, NaN, deep nesting, control characters,
unknown fields, wrong types), some pure noise, and now and then a large or half-sent message.

Requests that change a job named by its id (cancel, retry, ``DELETE``) only ever name ids far
above any job the run creates (or invalid ones), so the normal client's jobs are not cancelled
by the fuzz; every other request may name any id.
"""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec

from jobq.protocol import native

HEADER = native.HEADER
MDP = [b"MDPC01", b"MDPC02", b"MDPW01", b"MDPW02"]
MAX_U64 = 2**64 - 1
MIN_I64 = -(2**63)
EDGE_INTS = [0, 1, -1, 2, 255, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, MAX_U64, MIN_I64]
SERVICES = [
    "fuzz",
    "fuzz-a",
    "fuzz-b",
    "default",
    "mmi.service",
    "mmi.echo",
    "titanic.request",
    "titanic.reply",
]
NATIVE_TAGS = [*native.INBOUND_TAGS, "nonsense"]
LINE_VERBS = [
    "JOB",
    "SUBMIT",
    "FETCH",
    "REQUEST",
    "DONE",
    "ACK",
    "FAIL",
    "STATUS",
    "AUTH",
    "QUIT",
    "job",
    "Nope",
]
WS_TYPES = {
    "client": [
        "submit_job",
        "subscribe_progress",
        "unsubscribe_progress",
        "get_job_status",
        "request_job_status",
        "cancel_job",
        "ping",
        "auth",
    ],
    "worker": [
        "register_worker",
        "worker_heartbeat",
        "claim_job",
        "update_job_progress",
        "complete_job",
        "complete_jobs",
        "fail_job",
        "release_jobs",
        "set_slots",
        "unregister_worker",
    ],
    "monitor": ["request_full_state", "ping", "auth"],
}
REST_PATHS = [
    "/api/jobs",
    "/api/jobs/{id}",
    "/api/jobs/{id}/result",
    "/api/jobs/{id}/events",
    "/api/jobs/{id}/explain",
    "/api/jobs/batch",
    "/api/workers",
    "/api/services",
    "/api/stats",
    "/health",
    "/metrics",
    "/openapi.json",
    "/",
    "/docs",
    "/dashboard/app.js",
]


class Gen:
    """Random values of every kind the doors decode."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def text(self, n: int = 20) -> str:
        kind = self.r.randrange(6)
        size = self.r.randrange(n + 1)
        if kind == 0:
            return "".join(self.r.choice("abcxyz019 -_.:/") for _ in range(size))
        if kind == 1:
            return "".join(chr(self.r.randrange(0, 32)) for _ in range(size))  # control characters
        if kind == 2:
            return "".join(
                chr(self.r.choice([0xE9, 0x4E2D, 0x1F600, 0x202E, 0xFEFF, 0xD800])) for _ in range(size)
            )
        if kind == 3:
            return self.r.choice(
                ["", " ", "null", "NaN", "-1", "1e309", "../../etc/passwd", "%00", "\\", "'\""]
            )
        if kind == 4:
            return "x" * self.r.choice([0, 1, 256, 4096])
        return self.r.choice(SERVICES)

    def blob(self, n: int = 60) -> bytes:
        return self.r.randbytes(self.r.randrange(n + 1))

    def int64(self) -> int:
        """Any integer msgpack can carry."""
        return self.r.choice(EDGE_INTS) if self.chance(0.6) else self.r.randrange(MIN_I64, MAX_U64)

    def big_int(self) -> int:
        """Integers JSON and text can carry, past what msgpack and SQLite can."""
        return self.r.choice([*EDGE_INTS, 2**64, 2**100, -(2**70), 10**40])

    def job_id(self) -> int:
        """An id to read: often a small one (a real job), or an edge."""
        return self.r.randrange(1, 5000) if self.chance(0.5) else self.r.choice(EDGE_INTS)

    def safe_id(self) -> int:
        """An id to cancel or retry: never one the run's jobs can have."""
        return self.r.choice([0, -1, 2**40 + self.r.randrange(10**6), 2**63 - 1, 2**63, MAX_U64, MIN_I64])

    def number(self) -> Any:
        return self.r.choice(
            [self.int64(), self.r.uniform(-1e6, 1e6), float("nan"), float("inf"), -0.0, 1e308]
        )

    def value(self, depth: int = 0) -> Any:
        """A msgpack-encodable value."""
        kind = self.r.randrange(9 if depth < 3 else 6)
        if kind == 0:
            return None
        if kind == 1:
            return self.chance(0.5)
        if kind == 2:
            return self.int64()
        if kind == 3:
            return self.number()
        if kind == 4:
            return self.text()
        if kind == 5:
            return self.blob()
        if kind in (6, 7):
            return [self.value(depth + 1) for _ in range(self.r.randrange(5))]
        return {self.text(8): self.value(depth + 1) for _ in range(self.r.randrange(5))}

    def json_value(self, depth: int = 0) -> Any:
        """A value ``json.dumps`` writes (NaN and ``Infinity`` included: not JSON, on purpose)."""
        kind = self.r.randrange(8 if depth < 3 else 5)
        if kind == 0:
            return None
        if kind == 1:
            return self.chance(0.5)
        if kind == 2:
            return self.big_int() if self.chance(0.3) else self.int64()
        if kind == 3:
            return self.number()
        if kind == 4:
            return self.text()
        if kind in (5, 6):
            return [self.json_value(depth + 1) for _ in range(self.r.randrange(5))]
        return {self.text(8): self.json_value(depth + 1) for _ in range(self.r.randrange(5))}

    def deep(self, depth: int | None = None) -> str:
        """Deeply nested JSON (closed or not)."""
        n = depth or self.r.choice([100, 1000, 100_000])
        opener, closer = self.r.choice([("[", "]"), ('{"a":', "}")])
        return opener * n + ("1" + closer * n if self.chance(0.5) else "")

    def maybe(self, good: Any, p: float = 0.7) -> Any:
        """``good`` most of the time, a random value otherwise."""
        return good if self.chance(p) else self.value(1)

    def spec(self) -> dict[str, Any]:
        """A native job spec, plausible with hostile fields."""
        spec: dict[str, Any] = {"service": self.maybe(self.r.choice(SERVICES[:4]))}
        for key, make in (
            ("payload", lambda: [self.blob(200) for _ in range(self.r.randrange(3))]),
            ("priority", self.int64),
            ("max_attempts", self.int64),
            ("max_losses", self.int64),
            ("timeout", self.number),
            ("run_at", self.number),
            ("delay", self.number),
            ("requires", lambda: {self.text(8): self.value(1)}),
            ("must_not", lambda: {self.text(8): self.value(1)}),
            ("customer_id", self.text),
            ("isolation", lambda: self.r.choice(["strict", "loose", "none", "bogus"])),
            ("idempotency_key", self.text),
            ("content_type", self.text),
            ("result_ttl", self.number),
            ("backoff", self.number),
            (self.text(6), lambda: self.value(1)),
        ):
            if self.chance(0.2):
                spec[key] = make()
        return spec


# ---------------------------------------------------------------- ZeroMQ: native and Majordomo


def pack(value: Any) -> bytes:
    """msgpack of ``value`` (lone surrogates, which msgpack cannot carry, replaced)."""
    try:
        return msgspec.msgpack.encode(value)
    except UnicodeEncodeError:
        return msgspec.msgpack.encode(_no_surrogates(value))


def _no_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode(errors="replace").decode()
    if isinstance(value, list):
        return [_no_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_no_surrogates(k): _no_surrogates(v) for k, v in value.items()}
    return value


def native_message(g: Gen) -> list[bytes]:
    """One message for the native door (the routing identity is the DEALER's)."""
    roll = g.r.random()
    if roll < 0.05:
        return [g.blob(30) for _ in range(g.r.randrange(4))]  # no header at all
    if roll < 0.1:
        return [HEADER, g.blob(200)]  # not msgpack
    if roll < 0.15:
        return [HEADER, pack(g.value()), *([g.blob(10)] if g.chance(0.5) else [])]
    tag = g.r.choice(NATIVE_TAGS)
    body: list[Any] = [tag, *_native_fields(g, tag)]
    if g.chance(0.15):  # a field dropped, or one too many
        if len(body) > 1 and g.chance(0.5):
            del body[g.r.randrange(1, len(body))]
        else:
            body.append(g.value(1))
    return [HEADER, pack(body)]


def _native_fields(g: Gen, tag: str) -> list[Any]:
    rid = g.maybe(g.r.randrange(1, 2**31), 0.9)
    ids = [g.job_id() for _ in range(g.r.randrange(4))]
    safe = [g.safe_id() for _ in range(g.r.randrange(3))]
    if tag == "submit":
        return [rid, [g.spec() for _ in range(g.r.randrange(4))], g.chance(0.3)]
    if tag in ("get", "subscribe", "unsubscribe"):
        return [rid, ids]
    if tag == "wait":
        return [rid, ids, g.r.choice([0, 0.01, g.number()])]
    if tag in ("cancel", "retry"):
        return [rid, safe]
    if tag == "list":
        query = {
            "states": g.maybe([g.r.choice(["queued", "running", "failed", "bogus"])]),
            "limit": g.int64(),
            "offset": g.int64(),
            "service": g.maybe(g.text()),
        }
        return [rid, {k: v for k, v in query.items() if g.chance(0.6)}, g.chance(0.3)]
    if tag == "info":
        return [rid, g.r.choice(["stats", "workers", "services", "explain", "blocked", g.text()]), g.job_id()]
    if tag == "ping":
        return [rid]
    if tag == "worker":
        return [rid, g.r.choice(["drain", "resume", "evict", g.text()]), f"fuzz-{g.text(8)}"]
    if tag == "hello":
        return [
            f"fuzz-{g.r.randrange(10**9)}",
            [g.r.choice(SERVICES) for _ in range(g.r.randrange(3))],
            g.int64(),
            g.maybe({g.text(8): g.value(1)}),
            g.maybe(g.text()),
            [[g.job_id(), g.int64() % 2**63] for _ in range(g.r.randrange(3))],
        ]
    if tag == "hb":
        return [g.maybe({g.text(8): g.number()})]
    if tag == "slots":
        return [g.int64()]
    if tag == "done":
        return [[[g.job_id(), g.int64() % 2**63, [g.blob(40)]] for _ in range(g.r.randrange(3))]]
    if tag in ("fail", "progress"):
        return [g.job_id(), g.int64() % 2**63, g.maybe(g.text())]
    if tag == "release":
        return [[[g.job_id(), g.int64() % 2**63] for _ in range(g.r.randrange(3))]]
    return [g.value(1) for _ in range(g.r.randrange(4))]


def mdp_message(g: Gen) -> list[bytes]:
    """One Majordomo message (MDP/0.1, 0.2 or majortomo's framing), often bent."""
    lead = [b""] if g.chance(0.8) else []
    header = g.r.choice(MDP) if g.chance(0.9) else g.blob(8)
    service = g.r.choice(SERVICES).encode() if g.chance(0.8) else g.blob(20)
    if header.startswith(b"MDPC"):
        commands = [] if g.chance(0.5) else [g.r.choice([b"\x01", b"\x02", b"\x03", b"\x04", g.blob(2)])]
        return [*lead, header, *commands, service, *[g.blob(100) for _ in range(g.r.randrange(3))]]
    command = g.r.choice([b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"\x06", b"\x00", g.blob(3)])
    rest: list[bytes] = []
    if command == b"\x01":
        rest = [service]
    elif command in (b"\x03", b"\x04"):
        rest = [g.blob(6), b"", g.blob(50)]
    elif g.chance(0.5):
        rest = [g.blob(20) for _ in range(g.r.randrange(3))]
    return [*lead, header, command, *rest]


def zmtp_bytes(g: Gen) -> bytes:
    """Raw bytes for the ZeroMQ port: noise, a greeting then noise, or a greeting and the start
    of a frame that announces far more than is ever sent (the connection is then closed)."""
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x01" + b"NULL" + b"\x00" * 16 + b"\x00" + b"\x00" * 31
    roll = g.r.random()
    if roll < 0.4:
        return g.blob(200)
    if roll < 0.7:
        return greeting + g.blob(200)
    size = g.r.choice([2**20, 61 * 2**20, 2**40])
    return greeting + b"\x02" + size.to_bytes(8, "big") + g.blob(1000)


# ---------------------------------------------------------------- the line doors


def line_chunk(g: Gen) -> bytes:
    """A few lines for a line listener (either dialect): commands with hostile arguments,
    noise, invalid UTF-8, an over-long line now and then, maybe a half line at the end."""
    out = []
    for _ in range(g.r.randrange(1, 8)):
        roll = g.r.random()
        if roll < 0.1:
            out.append(g.blob(80) + b"\n")
            continue
        if roll < 0.13:
            out.append(b"JOB " + b"x" * g.r.choice([70_000, 5000]) + b"\n")
            continue
        verb = g.r.choice(LINE_VERBS)
        if verb == "QUIT" and g.chance(0.8):
            verb = "STATUS"
        arg = g.r.choice(
            [
                str(g.job_id()),
                str(g.big_int()),
                g.text(),
                "",
                "99999999999999999999999999",
                f"{g.job_id()} {g.text()}",
            ]
        )
        ending = g.r.choice(["\n", "\r\n", "\n", "\r", ""])
        out.append(f"{verb} {arg}{ending}".encode(errors="surrogatepass"))
    return b"".join(out)


# ---------------------------------------------------------------- HTTP and WebSocket


def http_request(g: Gen, port: int) -> tuple[bytes, bool]:
    """One raw HTTP/1.1 request (often malformed); and whether it is complete (so an answer
    is owed)."""
    method = g.r.choice(
        ["GET", "GET", "POST", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "BREW", "G\x00T"]
    )
    path = g.r.choice(REST_PATHS)
    destructive = method in ("DELETE", "PUT", "PATCH") or path.endswith("/retry")
    if g.chance(0.1):
        path = "/api/jobs/{id}/retry"
        destructive = True
    ident = g.safe_id() if destructive or method == "POST" else g.r.choice([g.job_id(), g.big_int()])
    path = path.replace("{id}", g.r.choice([str(ident), str(ident), g.text(8), "-0", "1e3", "%20"]))
    if g.chance(0.3):
        params = {
            "limit": g.big_int(),
            "offset": g.big_int(),
            "status": g.r.choice(["queued", "bogus", "failed,queued", ""]),
            "wait": g.r.choice([0, 0, -1, "nan", "1e309", 0.01]),
            "raw": g.r.choice(["true", "false", "maybe"]),
            "blocked": g.r.choice(["true", "2"]),
            g.text(5): g.text(5),
        }
        query = "&".join(f"{k}={v}" for k, v in params.items() if g.chance(0.4))
        path += "?" + query
    if g.chance(0.05):
        path = "/" + "a" * g.r.choice([10_000, 100_000])
    if g.chance(0.05):
        path = g.text(30)
    body = _http_body(g)
    headers = {
        "Host": f"127.0.0.1:{port}" if g.chance(0.9) else g.text(20),
        "Content-Type": "application/json" if g.chance(0.8) else g.text(20),
        "Connection": "close",
    }
    complete = True
    length = len(body)
    roll = g.r.random()
    if roll < 0.05:
        length += g.r.randrange(1, 1000)  # promises more than it sends
        complete = False
    elif roll < 0.08:
        headers["Content-Length"] = g.r.choice(["-1", "abc", str(2**64), "1e3"])
    elif roll < 0.1:
        headers["Transfer-Encoding"] = "chunked"
        chunk = hex(len(body))[2:].encode() + b"\r\n" + body + b"\r\n"
        body = g.r.choice([b"zz\r\n" + body + b"\r\n0\r\n\r\n", b"0\r\n\r\n", chunk + b"0\r\n\r\n"])
        if g.chance(0.3):  # a chunked body cut short: no answer is owed
            body = g.r.choice([b"5\r\nab", b"0\r\n", chunk])
            complete = False
    if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
        headers["Content-Length"] = str(length)
    if g.chance(0.05):
        headers[g.text(10)] = g.text(30)
    if g.chance(0.03):
        headers["X-Big"] = "b" * g.r.choice([8000, 70_000])
    if g.chance(0.05):
        headers["Authorization"] = g.r.choice(["Bearer " + g.text(), "Basic ???", ""])
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    if g.chance(0.03):
        head = g.text(50) + "\r\n\r\n"
        complete = False  # blank lines before a request line are skipped: no answer is owed
    return head.encode(errors="surrogatepass") + body, complete


def _http_body(g: Gen) -> bytes:
    roll = g.r.random()
    if roll < 0.3:
        return b""
    if roll < 0.6:
        kind = g.r.choice(["fuzz", "fuzz-a"]) if g.chance(0.7) else g.json_value(1)
        job: dict[str, Any] = {"type": kind, "payload": g.json_value(1)}
        for key in (
            "priority",
            "max_attempts",
            "timeout",
            "delay",
            "run_at",
            "customer_id",
            "requirements",
            "x",
        ):
            if g.chance(0.2):
                job[key] = g.json_value(1)
        if g.chance(0.1):
            job = {"jobs": [job] * g.r.randrange(3)}
        return json.dumps(job).encode(errors="surrogatepass")
    if roll < 0.7:
        return g.deep().encode()
    if roll < 0.8:
        return json.dumps(g.json_value()).encode(errors="surrogatepass")
    if roll < 0.9:
        return g.blob(300)
    return b'{"type": "fuzz", "payload": ' + g.blob(20)  # truncated


def ws_message(g: Gen, stream: str) -> str | bytes:
    """One WebSocket message for ``/ws/client``, ``/ws/worker`` or ``/ws/monitor``."""
    roll = g.r.random()
    if roll < 0.05:
        return g.blob(100)  # a binary frame
    if roll < 0.1:
        return g.deep()
    if roll < 0.15:
        return g.text(100).encode(errors="replace").decode()
    kind = g.r.choice(WS_TYPES[stream]) if g.chance(0.9) else g.text(10)
    message: dict[str, Any] = {"type": kind}
    destructive = kind == "cancel_job"
    fields = {
        "job_id": g.safe_id()
        if destructive
        else g.r.choice([g.job_id(), g.big_int(), str(g.job_id()), g.text()]),
        "id": g.json_value(1),
        "job_type": g.r.choice(["fuzz", "fuzz-a", g.text()]),
        "payload": g.json_value(1),
        "services": [g.r.choice(SERVICES) for _ in range(g.r.randrange(3))],
        "worker_id": f"fuzz-{g.r.randrange(10**9)}",
        "slots": g.big_int(),
        "count": g.big_int(),
        "token": g.big_int(),
        "progress": g.number(),
        "result": g.json_value(1),
        "jobs": [[g.job_id(), g.big_int()]],
        "results": [{"job_id": g.job_id(), "result": g.json_value(1)}],
        "jobs_limit": g.big_int(),
        "pull": g.chance(0.5),
        "held": [[g.job_id(), g.big_int()]],
        g.text(6): g.json_value(1),
    }
    for key, value in fields.items():
        if g.chance(0.35) or (key == "job_id" and destructive):
            message[key] = value
    return json.dumps(message, allow_nan=True)
