"""Listener addresses with their options, and the rule about exposing the hub (``listeners.py``)."""

from __future__ import annotations

import pytest

from jobq.core.auth import Principal
from jobq.core.errors import InvalidRequest
from jobq.listeners import Listener, check_exposure, is_loopback, parse_listener


def test_an_address_without_options_must_authenticate() -> None:
    listener = parse_listener("tcp://127.0.0.1:5555")
    assert listener == Listener(address="tcp://127.0.0.1:5555")
    assert (listener.trusted, listener.curve, listener.tls) == (None, False, False)
    assert listener.host == "127.0.0.1"
    assert listener.loopback


def test_a_trusted_listener_names_its_peers_role_and_scope() -> None:
    listener = parse_listener("tcp://127.0.0.1:5556?trusted=worker&service=echo&service=render&customer=B")
    assert listener.address == "tcp://127.0.0.1:5556"
    assert listener.trusted == Principal(
        name="trusted:tcp://127.0.0.1:5556",
        role="worker",
        customers=frozenset({"B"}),
        services=frozenset({"echo", "render"}),
    )


def test_a_line_listener_with_a_client_scope() -> None:
    listener = parse_listener("127.0.0.1:50000?trusted=client&customer=acme")
    assert listener.address == "127.0.0.1:50000"
    assert listener.host == "127.0.0.1"
    assert listener.trusted is not None
    assert (listener.trusted.role, listener.trusted.customers) == ("client", frozenset({"acme"}))


def test_curve_and_tls_flags() -> None:
    assert parse_listener("tcp://0.0.0.0:5557?curve").curve
    assert not parse_listener("tcp://0.0.0.0:5557?curve").tls
    assert parse_listener("0.0.0.0:50002?tls").tls
    both = parse_listener("tcp://127.0.0.1:5557?curve&trusted=monitor")
    assert both.curve
    assert both.trusted is not None
    assert both.trusted.role == "monitor"


@pytest.mark.parametrize("role", ["admin", "client", "worker", "monitor"])
def test_every_role_may_be_trusted(role: str) -> None:
    trusted = parse_listener(f"tcp://127.0.0.1:1?trusted={role}").trusted
    assert trusted is not None
    assert trusted.role == role


def test_an_unknown_option_is_refused_with_the_list_of_known_ones() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_listener("tcp://127.0.0.1:1?trusted=worker&sevice=echo")
    assert info.value.message == (
        "tcp://127.0.0.1:1?trusted=worker&sevice=echo: unknown listener option 'sevice'; "
        "known: curve, customer, service, tls, trusted"
    )


@pytest.mark.parametrize("role", ["root", "", "Worker"])
def test_trusted_takes_a_known_role(role: str) -> None:
    with pytest.raises(InvalidRequest, match="trusted= takes a role: admin, client, worker, monitor"):
        parse_listener(f"tcp://127.0.0.1:1?trusted={role}")


def test_a_scope_without_trusted_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="add trusted=ROLE"):
        parse_listener("tcp://127.0.0.1:1?service=echo")
    with pytest.raises(InvalidRequest, match="add trusted=ROLE"):
        parse_listener("127.0.0.1:1?customer=acme")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("*", False),
        ("::", False),
        ("10.0.0.7", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("text", "host", "loopback"),
    [
        ("tcp://[::1]:5555", "::1", True),
        ("tcp://localhost:5555", "localhost", True),
        ("tcp://*:5555", "*", False),
        ("tcp://0.0.0.0:5555", "0.0.0.0", False),
        ("tcp://[::]:5555", "::", False),
        ("[::1]:50000", "::1", True),
        ("127.0.0.1:50001/dsjq-compat", "127.0.0.1", True),
        ("0.0.0.0:50001/dsjq-compat", "0.0.0.0", False),
    ],
)
def test_a_listeners_host(text: str, host: str, loopback: bool) -> None:
    listener = parse_listener(text)
    assert listener.host == host
    assert listener.loopback is loopback


def listeners(*texts: str) -> list[Listener]:
    return [parse_listener(text) for text in texts]


def test_loopback_listeners_need_no_auth() -> None:
    check_exposure(
        listeners("tcp://127.0.0.1:1", "tcp://[::1]:2", "localhost:3", "tcp://127.0.0.1:4?trusted=worker"),
        auth=False,
        insecure=False,
    )


def test_a_non_loopback_listener_without_auth_is_refused_in_one_line() -> None:
    with pytest.raises(InvalidRequest) as info:
        check_exposure(listeners("tcp://127.0.0.1:1", "tcp://*:5555"), auth=False, insecure=False)
    message = info.value.message
    assert "\n" not in message
    assert message.startswith("refusing to listen on tcp://*:5555 without --auth")
    assert "--insecure" in message


@pytest.mark.parametrize("address", ["tcp://0.0.0.0:5555", "10.0.0.7:50000", "tcp://[::]:5555"])
def test_a_non_loopback_listener_is_allowed_with_auth_or_insecure(address: str) -> None:
    check_exposure(listeners(address), auth=True, insecure=False)
    check_exposure(listeners(address), auth=False, insecure=True)


def test_trusting_a_non_loopback_listener_is_refused_even_with_auth() -> None:
    with pytest.raises(InvalidRequest) as info:
        check_exposure(listeners("tcp://0.0.0.0:5556?trusted=worker"), auth=True, insecure=False)
    assert info.value.message.startswith("refusing to trust every peer on tcp://0.0.0.0:5556")
    assert "\n" not in info.value.message
    check_exposure(listeners("tcp://0.0.0.0:5556?trusted=worker"), auth=True, insecure=True)
    check_exposure(listeners("tcp://0.0.0.0:5556?trusted=worker"), auth=False, insecure=True)
