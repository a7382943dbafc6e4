"""What a resolver hands back, and the ``HOST=ADDR`` pins that stand in for DNS (``--resolve``, FLOWMAILER_RESOLVE)."""

from __future__ import annotations

import ipaddress

import attrs

from flowmailer.core._errors import ConfigurationError

__all__ = ["Resolution", "parse_resolve"]


@attrs.frozen
class Resolution:
    """Every address a DNS name resolved to (A and AAAA), and how long the answer may be trusted."""

    addresses: tuple[str, ...]
    ttl: float


def parse_resolve(text: str) -> dict[str, tuple[str, ...]]:
    """Read ``HOST=ADDR[,ADDR...]`` entries, separated by spaces; a host name is matched without regard to case."""
    fix = "write HOST=ADDR[,ADDR...] entries separated by spaces, e.g. api.flowmailer.test=127.0.0.2,127.0.0.3"
    pins: dict[str, tuple[str, ...]] = {}
    for entry in text.split():
        host, _, listed = entry.partition("=")
        host = host.lower().rstrip(".")
        if not host or not listed:
            raise ConfigurationError("resolve", f"{entry!r} is not HOST=ADDR[,ADDR...]", fix)
        if host in pins:
            raise ConfigurationError("resolve", f"{host!r} is given twice", "list all its addresses in one entry")
        try:
            pins[host] = tuple(dict.fromkeys(str(ipaddress.ip_address(a)) for a in listed.split(",")))
        except ValueError:
            raise ConfigurationError("resolve", f"{entry!r} holds something that is not an IP address", fix) from None
    return pins
