"""The line door's listeners: ``HOST:PORT[/dsjq-compat][?OPTIONS]``, and TLS for ``?tls`` ones."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from jobq.config import HubConfig
from jobq.core.auth import Principal
from jobq.errors import InvalidRequest
from jobq.listeners import parse_listener

COMPAT = "dsjq-compat"


@dataclass(frozen=True, slots=True)
class Listener:
    host: str
    port: int
    #: Answer DSJQ commands as the known C++ DSJQ server does.
    compat: bool = False
    #: Who its peers are without ``AUTH`` (``?trusted=ROLE&customer=..&service=..``); None:
    #: they must send a token when the hub has ``--auth``.
    trusted: Principal | None = None
    #: TLS with the hub's certificate (``?tls``).
    tls: bool = False

    @classmethod
    def parse(cls, spec: str) -> Listener:
        """``HOST:PORT`` or ``HOST:PORT/dsjq-compat``, then options (``?trusted=ROLE&customer=ID``,
        ``?tls``: jobq.listeners). ``line://`` in front is allowed; IPv6 hosts in brackets."""
        options = parse_listener(spec.strip().removeprefix("line://"))
        text = options.address
        address, _, option = text.partition("/")
        if option not in ("", COMPAT):
            raise InvalidRequest(f"line listener {spec!r}: unknown option {option!r} (only {COMPAT})")
        host, sep, port_text = address.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
            raise InvalidRequest(f"line listener {spec!r} is not HOST:PORT[/{COMPAT}]")
        return cls(host, int(port_text), option == COMPAT, options.trusted, options.tls)

    def endpoint(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        flags = [f"trusted={self.trusted.role}"] if self.trusted is not None else []
        flags += ["tls"] if self.tls else []
        return (
            f"line://{host}:{port}"
            + (f"/{COMPAT}" if self.compat else "")
            + ("?" + "&".join(flags) if flags else "")
        )


def tls_context(config: HubConfig) -> ssl.SSLContext:
    """The server side of ``?tls`` listeners, from ``--tls-cert`` and ``--tls-key``."""
    if not config.tls_cert or not config.tls_key:
        raise InvalidRequest("a line listener asks for ?tls: give the hub --tls-cert and --tls-key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidRequest(f"cannot load --tls-cert/--tls-key for the line door: {exc}") from None
    return context


__all__ = ["COMPAT", "Listener", "tls_context"]
