"""A resolver that honours the records' own TTLs. Needs the ``dns`` extra: ``pip install flowmailer[dns]``."""

from __future__ import annotations

import ipaddress

import dns.exception
import dns.resolver

from flowmailer.core import NotSent, Resolution

__all__ = ["DnsPythonResolver"]


class DnsPythonResolver:
    """Asks for A and AAAA with dnspython; the answer is trusted for the smallest TTL among its records."""

    def __init__(self, resolver: dns.resolver.Resolver | None = None, *, min_ttl: float = 1.0) -> None:
        self._resolver = resolver if resolver is not None else dns.resolver.Resolver()
        self._min_ttl = min_ttl

    def resolve(self, host: str, port: int) -> Resolution | NotSent:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return Resolution((host,), float("inf"))
        addresses: list[str] = []
        ttls: list[float] = []
        problems: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = self._resolver.resolve(host, rdtype, search=False)
            except dns.resolver.NoAnswer:
                continue
            except dns.exception.DNSException as e:
                problems.append(f"{rdtype}: {e}")
                continue
            if answer.rrset is None:  # pragma: no cover - resolve() raises NoAnswer instead
                continue
            addresses.extend(sorted(r.address for r in answer.rrset))
            ttls.append(answer.rrset.ttl)
        if not addresses:
            detail = "; ".join(problems) or "no A or AAAA record"
            return NotSent(f"could not resolve {host!r}: {detail}")
        return Resolution(tuple(dict.fromkeys(addresses)), max(float(min(ttls)), self._min_ttl))
