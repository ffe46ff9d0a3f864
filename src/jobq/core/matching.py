"""Which worker may run which job: requirements, capabilities, shapes and customer rules.

Pure functions of data. The rules, in the order they are checked (the first that fails is
the reason ``jobq explain`` gives), are written out with a table in ``docs/matching.md``:

1. The worker serves the job's service.
2. Customer access: a worker dedicated to one customer runs only that customer's jobs; a
   ``strict`` job runs only on a worker dedicated to its customer; a worker's
   ``denied_customers`` never get it, and a non-empty ``allowed_customers`` must list the
   job's customer.
3. Every requirement holds: a string equals the worker's value (or is one of the worker's
   values), a list is wholly among the worker's values, a number is a minimum.
4. No ``must_not`` value is among the worker's values.

Those are *static*: they depend on the job's shape and the worker's profile only, so they are
decided once per (shape, profile) and cached by the index. What depends on what a worker is
running now (free GPU memory, how many customers share it) is checked by :func:`load_allows`.

A *shape* is everything about a job that decides where it may run. Jobs of one shape have the
same eligible workers, so the index keeps one queue per shape and a worker looks only at the
heads of the shapes it satisfies (never a scan window over jobs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from jobq.core.errors import InvalidRequest

Op = Literal["eq", "all", "min", "not"]
Scalar = str | float | bool
Value = Scalar | tuple[str, ...]

#: Requirement names from the EmProps API and the worker capability each is checked against.
#: Everything else is compared key for key.
REQUIREMENT_ALIASES: dict[str, str] = {
    "component": "components",
    "workflow": "workflows",
    "geographic_region": "location.region",
    "region": "location.region",
    "compliance": "location.compliance_zones",
    "quality_level": "performance_tier",
}

#: Requirement keys that are not capabilities (they are job fields of their own).
NON_CAPABILITY_KEYS = frozenset(
    {"service_type", "customer_isolation", "timeout_minutes", "customer_id", "isolation"}
)

#: The capability whose minimum a running job also *consumes* from its worker.
GPU_MEMORY = "hardware.gpu_memory_gb"

#: Seconds a job that does not fit what its eligible worker has free now (GPU memory, customers)
#: lets smaller jobs pass it; after that it reserves the worker, which takes nothing that would
#: start before it (``core/index.py``; ``store/lua/claim.lua`` for the Redis store).
DEFAULT_RESERVE_AFTER = 30.0

#: A worker with this capability set can only carry a payload that is one line of text (the
#: line-protocol doors); jobs whose payload is not are never handed to it.
LINE_ONLY = "transport.line_only"
#: Longest payload a line-protocol worker can be given.
MAX_LINE_PAYLOAD = 64 * 1024

ALLOWED = "customer_access.allowed_customers"
DENIED = "customer_access.denied_customers"
WORKER_ISOLATION = "customer_access.isolation"
MAX_CUSTOMERS = "customer_access.max_concurrent_customers"

MAX_KEY_LENGTH = 128
MAX_STRING_LENGTH = 256
MAX_REQUIREMENTS = 64


@dataclass(frozen=True, slots=True)
class Constraint:
    key: str
    op: Op
    value: Value

    def describe(self) -> str:
        if self.op == "min":
            return f"{self.key} >= {_fmt(self.value)}"
        if self.op == "all":
            return f"{self.key} ⊇ {_fmt(self.value)}"
        if self.op == "not":
            return f"{self.key} not {_fmt(self.value)}"
        return f"{self.key} = {_fmt(self.value)}"


@dataclass(frozen=True, slots=True)
class Shape:
    """Everything about a job that decides where it may run (hashable, canonical)."""

    service: str
    constraints: tuple[Constraint, ...] = ()
    customer: str | None = None
    isolation: str = "none"
    #: The payload is one line of UTF-8 text (line-protocol workers can carry it).
    text_line: bool = True
    #: GPU memory (GB) a job of this shape holds on its worker while it runs (derived).
    gpu_demand: float = field(default=0.0, compare=False, hash=False)
    _hash: int = field(default=0, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        for c in self.constraints:
            if c.key == GPU_MEMORY and c.op == "min":
                object.__setattr__(self, "gpu_demand", float(c.value))  # type: ignore[arg-type]
        # Shapes are dictionary keys on every submit and claim: hash them once.
        key = (self.service, self.constraints, self.customer, self.isolation, self.text_line)
        object.__setattr__(self, "_hash", hash(key))

    def __hash__(self) -> int:
        return self._hash

    def describe(self) -> str:
        parts = [self.service, *(c.describe() for c in self.constraints)]
        if self.customer is not None:
            parts.append(f"customer={self.customer}/{self.isolation}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Profile:
    """What a worker offers: its services and flattened capabilities (hashable)."""

    services: frozenset[str]
    capabilities: tuple[tuple[str, Value], ...] = ()
    caps: Mapping[str, Value] = field(default_factory=dict, compare=False, hash=False)
    # Derived from ``caps`` once (matching reads them on every claim):
    #: The one customer a ``strict`` worker is dedicated to, if it is one.
    dedicated_to: str | None = field(default=None, compare=False, hash=False)
    gpu_memory: float = field(default=0.0, compare=False, hash=False)
    max_customers: int | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        caps = self.caps
        if caps.get(WORKER_ISOLATION) == "strict":
            allowed = caps.get(ALLOWED)
            if isinstance(allowed, tuple) and len(allowed) == 1:
                object.__setattr__(self, "dedicated_to", allowed[0])
            elif isinstance(allowed, str):
                object.__setattr__(self, "dedicated_to", allowed)
        gpu = caps.get(GPU_MEMORY)
        if isinstance(gpu, int | float) and not isinstance(gpu, bool):
            object.__setattr__(self, "gpu_memory", float(gpu))
        limit = caps.get(MAX_CUSTOMERS)
        if isinstance(limit, int | float) and not isinstance(limit, bool) and limit >= 1:
            object.__setattr__(self, "max_customers", int(limit))

    @classmethod
    def build(cls, services: Iterable[str], capabilities: Mapping[str, Any]) -> Profile:
        flat = normalize_capabilities(capabilities)
        return cls(frozenset(services), tuple(sorted(flat.items())), flat)


# --------------------------------------------------------------------------- normalising


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"hardware": {"gpu_memory_gb": 16}}`` → ``{"hardware.gpu_memory_gb": 16}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if not isinstance(key, str) or not key:
            raise InvalidRequest(f"requirement and capability keys must be strings: {key!r}")
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _scalar(key: str, value: Any) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidRequest(f"{key}: numbers must be finite")
        return float(value)
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise InvalidRequest(f"{key}: value longer than {MAX_STRING_LENGTH} characters")
        return value
    raise InvalidRequest(f"{key}: expected a string, number, boolean or list, got {value!r}")


def _value(key: str, value: Any) -> Value:
    if isinstance(value, list | tuple | set | frozenset):
        items = []
        for item in value:
            scalar = _scalar(key, item)
            items.append(scalar if isinstance(scalar, str) else _fmt(scalar))
        return tuple(sorted(set(items)))
    return _scalar(key, value)


def _check_key(key: str) -> None:
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidRequest(f"key longer than {MAX_KEY_LENGTH} characters: {key[:40]}...")


def normalize_capabilities(capabilities: Mapping[str, Any]) -> dict[str, Value]:
    flat = flatten(capabilities)
    out: dict[str, Value] = {}
    for key, value in flat.items():
        _check_key(key)
        out[key] = _value(key, value)
    return out


def constraints_of(requires: Mapping[str, Any], must_not: Mapping[str, Any]) -> tuple[Constraint, ...]:
    """Canonical, sorted constraints from a job's requirements (nested or dotted keys)."""
    flat = flatten(requires)
    excluded = flatten(must_not)
    if len(flat) + len(excluded) > MAX_REQUIREMENTS:
        raise InvalidRequest(f"at most {MAX_REQUIREMENTS} requirements per job")
    out: list[Constraint] = []
    for key, raw in flat.items():
        if key in NON_CAPABILITY_KEYS or raw is None:
            continue
        _check_key(key)
        key = REQUIREMENT_ALIASES.get(key, key)
        value = _value(key, raw)
        if isinstance(value, tuple):
            if value:
                out.append(Constraint(key, "all", value))
        elif isinstance(value, float):
            out.append(Constraint(key, "min", value))
        else:
            out.append(Constraint(key, "eq", value))
    for key, raw in excluded.items():
        _check_key(key)
        key = REQUIREMENT_ALIASES.get(key, key)
        value = _value(key, raw)
        out.append(Constraint(key, "not", value if isinstance(value, tuple) else (_fmt(value),)))
    return tuple(sorted(out, key=lambda c: (c.key, c.op)))


def is_text_line(frames: Sequence[bytes]) -> bool:
    """Whether a payload can travel as one line of a line protocol."""
    if len(frames) > 1:
        return False
    data = frames[0] if frames else b""
    if len(data) > MAX_LINE_PAYLOAD or b"\n" in data or b"\r" in data:
        return False
    if data.isascii():
        return True  # ASCII is UTF-8: no need to decode (the common case, and fast)
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def shape_of(
    service: str,
    requires: Mapping[str, Any],
    must_not: Mapping[str, Any],
    customer: str | None,
    isolation: str,
    payload: Sequence[bytes] = (),
) -> Shape:
    if isolation != "none" and customer is None:
        raise InvalidRequest(f"isolation {isolation!r} needs a customer_id")
    return Shape(service, constraints_of(requires, must_not), customer, isolation, is_text_line(payload))


# --------------------------------------------------------------------------- deciding


def _fmt(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _as_set(value: Value | None) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, tuple):
        return frozenset(value)
    return frozenset({_fmt(value)})


def constraint_holds(c: Constraint, have: Value | None) -> bool:
    if c.op == "not":
        return not (_as_set(have) & frozenset(c.value))  # type: ignore[arg-type]
    if have is None:
        return False
    if c.op == "min":
        return isinstance(have, float) and have >= c.value  # type: ignore[operator]
    if c.op == "all":
        return frozenset(c.value) <= _as_set(have)  # type: ignore[arg-type]
    if isinstance(have, tuple):
        return _fmt(c.value) in have
    return have == c.value


def customer_miss(shape: Shape, profile: Profile) -> str | None:
    """Why the customer rules keep this worker from the shape, or ``None``."""
    customer = shape.customer
    dedicated = profile.dedicated_to
    if dedicated is not None and customer != dedicated:
        return f"worker is dedicated to customer {dedicated}"
    if shape.isolation == "strict" and dedicated != customer:
        return f"strict isolation needs a worker dedicated to customer {customer}"
    if customer is None:
        return None
    if customer in _as_set(profile.caps.get(DENIED)):
        return f"worker denies customer {customer}"
    allowed = _as_set(profile.caps.get(ALLOWED))
    if allowed and customer not in allowed:
        return f"customer {customer} is not among the worker's allowed customers"
    return None


def first_miss(shape: Shape, profile: Profile) -> str | None:
    """The first rule that keeps ``profile`` from running jobs of ``shape``, or ``None``."""
    if shape.service not in profile.services:
        return f"does not serve {shape.service}"
    if not shape.text_line and profile.caps.get(LINE_ONLY) is True:
        return "payload is not one line of text, which a line-protocol worker cannot carry"
    miss = customer_miss(shape, profile)
    if miss is not None:
        return miss
    for c in shape.constraints:
        have = profile.caps.get(c.key)
        if c.key == "models":
            # Models may be advertised per service: models.<service> = [...]
            have = profile.caps.get(f"models.{shape.service}", have)
        if not constraint_holds(c, have):
            shown = "nothing" if have is None else _fmt(have)
            return f"needs {c.describe()}, worker has {shown}"
    return None


def eligible(shape: Shape, profile: Profile) -> bool:
    return first_miss(shape, profile) is None


@dataclass(slots=True)
class Load:
    """What a worker is running now, as far as matching cares."""

    gpu_in_use: float = 0.0
    #: Customers with a ``loose`` or ``strict`` job running here → how many such jobs.
    customers: dict[str, int] = field(default_factory=dict)

    def take(self, shape: Shape) -> None:
        self.gpu_in_use += shape.gpu_demand
        if shape.customer is not None and shape.isolation != "none":
            self.customers[shape.customer] = self.customers.get(shape.customer, 0) + 1

    def give_back(self, shape: Shape) -> None:
        self.gpu_in_use = max(0.0, self.gpu_in_use - shape.gpu_demand)
        if shape.customer is not None and shape.isolation != "none":
            left = self.customers.get(shape.customer, 0) - 1
            if left > 0:
                self.customers[shape.customer] = left
            else:
                self.customers.pop(shape.customer, None)


def load_miss(shape: Shape, profile: Profile, load: Load) -> str | None:
    """Why the worker cannot start a job of ``shape`` *now* (a statically eligible worker)."""
    demand = shape.gpu_demand
    if demand and load.gpu_in_use + demand > profile.gpu_memory + 1e-9:
        free = profile.gpu_memory - load.gpu_in_use
        return f"needs {_fmt(demand)} GB of GPU memory, {_fmt(free)} GB free now"
    limit = profile.max_customers
    if (
        limit is not None
        and shape.isolation != "none"
        and shape.customer is not None
        and shape.customer not in load.customers
        and len(load.customers) >= limit
    ):
        return f"worker already serves {len(load.customers)} customers (max {limit})"
    return None
