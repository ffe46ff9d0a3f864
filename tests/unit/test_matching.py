from typing import Any

import pytest

from jobq.core.matching import Load, Profile, constraints_of, first_miss, load_miss, shape_of
from jobq.errors import InvalidRequest


def profile(services: tuple[str, ...] = ("render",), **caps: Any) -> Profile:
    return Profile.build(services, {k.replace("__", "."): v for k, v in caps.items()})


def shape(
    requires: dict[str, Any] | None = None,
    must_not: dict[str, Any] | None = None,
    customer: str | None = None,
    isolation: str = "none",
    service: str = "render",
) -> Any:
    return shape_of(service, requires or {}, must_not or {}, customer, isolation)


@pytest.mark.parametrize(
    ("requires", "caps", "eligible"),
    [
        ({}, {}, True),
        ({"hardware.gpu_memory_gb": 16}, {"hardware.gpu_memory_gb": 24}, True),
        ({"hardware.gpu_memory_gb": 16}, {"hardware.gpu_memory_gb": 16}, True),
        ({"hardware.gpu_memory_gb": 16}, {"hardware.gpu_memory_gb": 8}, False),
        ({"hardware": {"gpu_memory_gb": 16}}, {"hardware": {"gpu_memory_gb": 24}}, True),
        ({"hardware.gpu_memory_gb": 16}, {}, False),
        ({"region": "eu"}, {"location.region": "eu"}, True),
        ({"geographic_region": "eu"}, {"location": {"region": "us"}}, False),
        ({"compliance": ["hipaa"]}, {"location.compliance_zones": ["hipaa", "gdpr"]}, True),
        ({"compliance": ["hipaa", "soc2"]}, {"location.compliance_zones": ["hipaa", "gdpr"]}, False),
        ({"models": ["sdxl"]}, {"models": ["sdxl", "flux"]}, True),
        ({"models": ["sdxl", "x"]}, {"models": ["sdxl", "flux"]}, False),
        ({"component": "upscaler"}, {"components": ["upscaler", "face"]}, True),
        ({"quality_level": "premium"}, {"performance_tier": "premium"}, True),
        ({"quality_level": "premium"}, {"performance_tier": "economy"}, False),
        ({"gpu": True}, {"gpu": True}, True),
        ({"gpu": True}, {"gpu": False}, False),
        ({"os": "linux"}, {"os": ["linux", "mac"]}, True),
    ],
)
def test_requirements(requires: dict[str, Any], caps: dict[str, Any], eligible: bool) -> None:
    p = Profile.build(["render"], caps)
    assert (first_miss(shape(requires), p) is None) == eligible


def test_service_is_checked_first() -> None:
    assert first_miss(shape(service="other"), profile()) == "does not serve other"


def test_must_not_excludes() -> None:
    s = shape(must_not={"location.region": "cn"})
    assert first_miss(s, profile(location__region="eu")) is None
    assert first_miss(s, profile()) is None
    miss = first_miss(s, profile(location__region="cn"))
    assert miss is not None and "not" in miss


def test_miss_names_the_requirement_and_what_the_worker_has() -> None:
    miss = first_miss(shape({"hardware.gpu_memory_gb": 16}), profile(hardware__gpu_memory_gb=8))
    assert miss == "needs hardware.gpu_memory_gb >= 16, worker has 8"


def test_constraints_are_canonical() -> None:
    a = constraints_of({"b": 1, "a": ["y", "x"]}, {})
    b = constraints_of({"a": ["x", "y"], "b": 1.0}, {})
    assert a == b


def test_bad_requirements_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        constraints_of({"x": {"y": object()}}, {})
    with pytest.raises(InvalidRequest):
        constraints_of({"x": float("nan")}, {})
    with pytest.raises(InvalidRequest):
        shape_of("s", {}, {}, None, "strict")


# Customer isolation: the table in docs/matching.md, row by row.
SHARED: dict[str, Any] = {}
DENIES_ACME = {"customer_access.denied_customers": ["acme"]}
ONLY_GLOBEX = {"customer_access.allowed_customers": ["globex"]}
DEDICATED_ACME = {"customer_access.isolation": "strict", "customer_access.allowed_customers": ["acme"]}
DEDICATED_GLOBEX = {"customer_access.isolation": "strict", "customer_access.allowed_customers": ["globex"]}


@pytest.mark.parametrize(
    ("caps", "customer", "isolation", "eligible"),
    [
        (SHARED, "acme", "none", True),
        (SHARED, "acme", "loose", True),
        (SHARED, "acme", "strict", False),
        (SHARED, None, "none", True),
        (DENIES_ACME, "acme", "none", False),
        (DENIES_ACME, "acme", "loose", False),
        (DENIES_ACME, "globex", "loose", True),
        (ONLY_GLOBEX, "acme", "none", False),
        (ONLY_GLOBEX, "globex", "none", True),
        (DEDICATED_ACME, "acme", "strict", True),
        (DEDICATED_ACME, "acme", "loose", True),
        (DEDICATED_ACME, "acme", "none", True),
        (DEDICATED_ACME, "globex", "none", False),
        (DEDICATED_ACME, None, "none", False),
        (DEDICATED_GLOBEX, "acme", "strict", False),
    ],
)
def test_customer_rules(caps: dict[str, Any], customer: str | None, isolation: str, eligible: bool) -> None:
    p = Profile.build(["render"], caps)
    assert (first_miss(shape(customer=customer, isolation=isolation), p) is None) == eligible


def test_gpu_memory_is_consumed_while_running() -> None:
    p = profile(hardware__gpu_memory_gb=24)
    big = shape({"hardware.gpu_memory_gb": 16})
    load = Load()
    assert load_miss(big, p, load) is None
    load.take(big)
    assert load_miss(big, p, load) == "needs 16 GB of GPU memory, 8 GB free now"
    load.give_back(big)
    assert load_miss(big, p, load) is None


def test_max_concurrent_customers_counts_loose_and_strict_jobs_only() -> None:
    p = profile(customer_access__max_concurrent_customers=1)
    load = Load()
    load.take(shape(customer="acme", isolation="loose"))
    assert load_miss(shape(customer="acme", isolation="loose"), p, load) is None
    assert load_miss(shape(customer="globex", isolation="loose"), p, load) is not None
    # isolation none: no customer constraint beyond allow/deny lists
    assert load_miss(shape(customer="globex", isolation="none"), p, load) is None


def test_line_workers_only_get_one_line_of_text() -> None:
    line_worker = profile(transport__line_only=True)
    one_line = shape_of("render", {}, {}, None, "none", [b"hello world"])
    assert first_miss(one_line, line_worker) is None
    for payload in ([b"two\nlines"], [b"\xff\xfe"], [b"a", b"b"], [b"x" * 70_000]):
        s = shape_of("render", {}, {}, None, "none", payload)
        assert not s.text_line
        assert (
            first_miss(s, line_worker)
            == "payload is not one line of text, which a line-protocol worker cannot carry"
        )
        assert first_miss(s, profile()) is None


def test_models_may_be_advertised_per_service() -> None:
    p = Profile.build(["render", "upscale"], {"models": {"render": ["sdxl"], "upscale": ["esrgan"]}})
    assert first_miss(shape({"models": ["sdxl"]}), p) is None
    assert first_miss(shape({"models": ["esrgan"]}), p) is not None
    assert first_miss(shape({"models": ["esrgan"]}, service="upscale"), p) is None
