"""The line protocols on the wire, with no I/O: bytes in → requests out, outcomes in → reply bytes.

Two command sets share every listener (their verbs do not collide), as PROTOCOLS.md §2 has them:

    DSJQ        SUBMIT <payload>   REQUEST   ACK <id>   FAIL <id>   QUIT
    work queue  JOB <text>         STATUS <id>          FETCH       DONE <id>

and jobq adds one line to both: ``AUTH <token>``, the first line on a listener that needs a
token (docs/security.md). It is answered ``OK``, or ``ERR <reason>`` before the door closes
the connection.

Rules of a line:

- A line ends at ``\\n``; one ``\\r`` before it is dropped. A line counts only once its newline
  has arrived: a half line left at disconnect is not a request.
- Blanks (space, tab) at both ends are dropped, inner ones kept; a blank line is no request and
  gets no reply.
- The verb is case-insensitive; the argument is the rest of the line after the first run of
  blanks. Ids are decimal integers from 1.
- A line longer than the listener's limit (not counting its ending) is refused and the
  connection closed; a line that is not UTF-8 is refused and the connection kept.

Replies, by request and outcome. ``-`` is nothing at all; ``dsjq-compat`` is the listener switch
for the known C++ DSJQ server (no ``JOB`` prefix on ``REQUEST``, silence for ``SUBMIT``, ``ACK``,
``FAIL`` and anything it does not know). ``ERR <reason>`` is only used for the door's own
limits; a protocol's own refusals are the bare ``ERR`` its peers expect.

    request    outcome    document               dsjq-compat
    SUBMIT     created    JOB_ID <id>            -
    SUBMIT     refused    ERR                    -
    REQUEST    a job      JOB <id> <payload>     <id> <payload>
    REQUEST    none       EMPTY                  EMPTY
    ACK, FAIL  done       OK                     -
    ACK, FAIL  refused    ERR                    -
    QUIT       -          (connection closed)    (connection closed)
    JOB        created    ID <n>                 ID <n>
    JOB        refused    ERR                    ERR
    STATUS     -          waiting | running | completed | failed | cancelled | unknown
    FETCH      a job      JOB <id> <text>        JOB <id> <text>
    FETCH      none       NOJOB                  NOJOB
    DONE       done       OK                     OK
    DONE       refused    ERR                    ERR
    other      -          ERR                    -
    not UTF-8  -          ERR <reason>           -
    too long   -          ERR <reason>, closed   ERR <reason>, closed
    AUTH       accepted   OK                     OK
    AUTH       refused    ERR <reason>, closed   ERR <reason>, closed
    refused by the hub's access rules (not authorized, not allowed):
               -          ERR <reason>           as a protocol refusal (above)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from jobq.core.states import JobState
from jobq.protocol.inflight import InflightBudget

#: Default longest line (bytes, not counting its ending).
DEFAULT_MAX_LINE = 64 * 1024
#: Largest job id a line may name (the stores keep ids as signed 64-bit integers).
MAX_ID = 2**63 - 1

_BLANKS = " \t"


class Family(Enum):
    """Which command set a request belongs to: it picks the reply's words."""

    DSJQ = "dsjq"
    WORKQUEUE = "workqueue"


# ---------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class Submit:
    """``SUBMIT <payload>`` (DSJQ) or ``JOB <text>`` (work queue); ``text`` may be empty."""

    family: Family
    text: str


@dataclass(frozen=True, slots=True)
class Status:
    """``STATUS <id>``; ``job_id`` is None when the argument is not an id."""

    job_id: int | None


@dataclass(frozen=True, slots=True)
class Fetch:
    """``REQUEST`` (DSJQ) or ``FETCH`` (work queue): a worker asks for a job."""

    family: Family


@dataclass(frozen=True, slots=True)
class Finish:
    """``ACK <id>`` (DSJQ) or ``DONE <id>`` (work queue); text after the id is the result."""

    family: Family
    job_id: int | None
    result: str = ""


@dataclass(frozen=True, slots=True)
class Fail:
    """``FAIL <id>`` (DSJQ); text after the id is the error."""

    job_id: int | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class Quit:
    """``QUIT`` (the C++ DSJQ server's undocumented close)."""


@dataclass(frozen=True, slots=True)
class Auth:
    """``AUTH <token>`` (jobq's own line): who speaks on this connection. The token is kept
    out of ``repr`` so that no log line ever shows it."""

    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Unknown:
    """A verb neither command set has."""

    verb: str


@dataclass(frozen=True, slots=True)
class NotText:
    """A line that is not UTF-8."""


Request = Submit | Status | Fetch | Finish | Fail | Quit | Auth | Unknown | NotText


def parse_id(text: str) -> int | None:
    """The job id at the start of ``text`` (decimal, 1..2**63-1), or None."""
    token = text.split(None, 1)[0] if text.strip() else ""
    if not (token.isascii() and token.isdigit()) or len(token) > 19:
        return None
    value = int(token)
    return value if 1 <= value <= MAX_ID else None


def _after_id(text: str) -> str:
    parts = text.split(None, 1)
    return parts[1] if len(parts) > 1 else ""


def parse(line: bytes) -> Request | None:
    """One line (without its ``\\n``) → a request, or None for a blank line."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return NotText()
    text = text.strip(_BLANKS + "\r")
    if not text:
        return None
    cut = min((i for i in (text.find(" "), text.find("\t")) if i >= 0), default=len(text))
    verb = text[:cut].upper()
    arg = text[cut:].lstrip(_BLANKS)
    if verb == "JOB":
        return Submit(Family.WORKQUEUE, arg)
    if verb == "SUBMIT":
        return Submit(Family.DSJQ, arg)
    if verb == "STATUS":
        return Status(parse_id(arg))
    if verb == "FETCH":
        return Fetch(Family.WORKQUEUE)
    if verb == "REQUEST":
        return Fetch(Family.DSJQ)
    if verb == "DONE":
        return Finish(Family.WORKQUEUE, parse_id(arg), _after_id(arg))
    if verb == "ACK":
        return Finish(Family.DSJQ, parse_id(arg), _after_id(arg))
    if verb == "FAIL":
        return Fail(parse_id(arg), _after_id(arg))
    if verb == "QUIT":
        return Quit()
    if verb == "AUTH":
        return Auth(arg)
    return Unknown(verb[:64])


# ---------------------------------------------------------------------------- lines


class LineSplitter:
    """Cuts a byte stream into lines, refusing any line longer than ``max_line`` bytes.

    Once a line is too long, ``too_long`` is set and nothing more is returned: the connection
    is to be closed (its framing can no longer be trusted). With a ``budget`` (the hub's
    budget of partly received bytes, every connection and door together), the line still
    arriving holds its bytes there; when the budget cannot take them, ``busy`` is set, and the
    same follows. ``discard`` gives them back (the connection closed).
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE, budget: InflightBudget | None = None) -> None:
        if max_line < 1:
            raise ValueError("max_line must be at least 1")
        self.max_line = max_line
        self.too_long = False
        self.busy = False
        self.budget = budget
        self._rest = b""
        self._held = 0

    @property
    def pending(self) -> int:
        """Bytes of a line whose newline has not arrived yet."""
        return len(self._rest)

    def feed(self, data: bytes) -> list[bytes]:
        """The lines completed by ``data``, in order, without their endings."""
        if self.too_long or self.busy:
            return []
        if b"\n" not in data:
            self._rest += data
            if len(self._rest) > self.max_line + 1:  # +1: a "\r" may still end it
                self._refuse()
            elif self.budget is not None:
                self._hold()
            return []
        parts = (self._rest + data).split(b"\n")
        self._rest = parts.pop()
        lines: list[bytes] = []
        for raw in parts:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if len(line) > self.max_line:
                self._refuse()
                return lines
            lines.append(line)
        if len(self._rest) > self.max_line + 1:
            self._refuse()
        elif self.budget is not None and (self._rest or self._held):
            self._hold()
        return lines

    def _hold(self) -> None:
        """Hold as many bytes of the budget as the line still arriving has."""
        budget = self.budget
        assert budget is not None
        size, held = len(self._rest), self._held
        if size > held and not budget.reserve(size - held):
            self.busy = True
            self.discard()
            return
        if size < held:
            budget.release(held - size)
        self._held = size

    def _refuse(self) -> None:
        self.too_long = True
        self.discard()

    def discard(self) -> None:
        """Drop the line still arriving and give its bytes back to the budget."""
        if self._held and self.budget is not None:
            self.budget.release(self._held)
        self._held = 0
        self._rest = b""


# ---------------------------------------------------------------------------- replies


def status_word(state: JobState | None) -> str:
    """A job's state in the work queue's words (``failed`` and ``cancelled`` are jobq's: the
    original system had no such end)."""
    if state is None:
        return "unknown"
    if state in (JobState.QUEUED, JobState.SCHEDULED):
        return "waiting"
    return state.value


def _line(text: str) -> bytes:
    return text.encode() + b"\n"


OK = b"OK\n"
ERR = b"ERR\n"


@dataclass(frozen=True, slots=True)
class Replies:
    """The reply table above, for one listener (``compat``: the known C++ DSJQ server)."""

    compat: bool = False

    def submitted(self, request: Submit, job_id: int) -> bytes | None:
        if request.family is Family.WORKQUEUE:
            return _line(f"ID {job_id}")
        return None if self.compat else _line(f"JOB_ID {job_id}")

    def job(self, request: Fetch, job_id: int, text: str) -> bytes:
        if request.family is Family.DSJQ and self.compat:
            return _line(f"{job_id} {text}")
        return _line(f"JOB {job_id} {text}")

    def no_job(self, request: Fetch) -> bytes:
        return b"EMPTY\n" if request.family is Family.DSJQ else b"NOJOB\n"

    def status(self, state: JobState | None) -> bytes:
        return _line(status_word(state))

    def done(self, request: Finish | Fail) -> bytes | None:
        """``ACK``, ``DONE`` or ``FAIL`` was taken."""
        if isinstance(request, Finish) and request.family is Family.WORKQUEUE:
            return OK
        return None if self.compat else OK

    def refused(self, request: Request) -> bytes | None:
        """The protocol's own refusal: the bare ``ERR`` (nothing, for compat DSJQ peers)."""
        if isinstance(request, Status):
            return self.status(None)
        if isinstance(request, Fetch):
            return self.no_job(request)
        if self.compat and _is_dsjq(request):
            return None
        return ERR

    def error(self, request: Request | None, reason: str) -> bytes | None:
        """A refusal of the door's own (a limit, text that is not UTF-8, the hub refusing):
        ``ERR <reason>``, except where the peer expects other words or no reply at all."""
        if request is not None and (
            isinstance(request, Status | Fetch) or (self.compat and _is_dsjq(request))
        ):
            return self.refused(request)
        return _line(f"ERR {reason}")

    def denied(self, request: Request, reason: str) -> bytes | None:
        """The hub's access rules refused ``request`` (no or a bad token, a token without the
        right): ``ERR <reason>``, so the peer can tell a refusal from an answer; a compat DSJQ
        peer, which reads no such line, gets its protocol's own refusal."""
        dsjq_fetch = isinstance(request, Fetch) and request.family is Family.DSJQ
        if self.compat and (dsjq_fetch or _is_dsjq(request)):
            return self.refused(request)
        return _line(f"ERR {reason}")

    def fatal(self, reason: str) -> bytes:
        """Sent before the door closes the connection (always sent: the close is the signal)."""
        return _line(f"ERR {reason}")


def _is_dsjq(request: Request) -> bool:
    """Requests a compat peer reads no reply to (everything DSJQ but REQUEST, and noise)."""
    if isinstance(request, Submit | Finish):
        return request.family is Family.DSJQ
    return isinstance(request, Fail | Unknown | NotText | Quit)
