from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest

from flowmailer.adapters import SystemResolver
from flowmailer.adapters.dns_resolver import DnsPythonResolver
from flowmailer.core import ConfigurationError, NotSent, Resolution
from flowmailer.ports import Resolver
from flowmailer.testing import StaticResolver


def test_system_resolver_returns_ip_literals_with_the_configured_ttl() -> None:
    assert SystemResolver(ttl=30).resolve("127.0.0.2", 443) == Resolution(("127.0.0.2",), 30)


def test_system_resolver_finds_localhost() -> None:
    result = SystemResolver().resolve("localhost", 443)
    assert isinstance(result, Resolution)
    assert set(result.addresses) & {"127.0.0.1", "::1"}


def test_system_resolver_reports_an_unresolvable_name_as_not_sent() -> None:
    result = SystemResolver().resolve("no-such-host.invalid", 443)
    assert isinstance(result, NotSent)
    assert "no-such-host.invalid" in result.reason


def test_system_resolver_refuses_a_non_positive_ttl() -> None:
    with pytest.raises(ConfigurationError) as e:
        SystemResolver(ttl=0)
    assert e.value.field == "ttl"


def test_static_resolver_answers_what_the_test_set_and_follows_changes() -> None:
    resolver = StaticResolver({"api.example": ["127.0.0.2", "127.0.0.3"]}, ttl=5)
    assert resolver.resolve("api.example", 443) == Resolution(("127.0.0.2", "127.0.0.3"), 5)
    resolver.set("api.example", ["127.0.0.4"], ttl=7)
    assert resolver.resolve("api.example", 443) == Resolution(("127.0.0.4",), 7)
    assert isinstance(resolver.resolve("other.example", 443), NotSent)
    assert resolver.calls == 3


class _DnsServer:
    """A one-zone authoritative DNS server on loopback UDP, answering from ``records``."""

    def __init__(self, records: dict[tuple[str, str], tuple[int, list[str]]]) -> None:
        self.records = records
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            if not data:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            if (name, rdtype) in self.records:
                ttl, addresses = self.records[(name, rdtype)]
                response.answer.append(dns.rrset.from_text_list(name, ttl, "IN", rdtype, addresses))
            elif not any(n == name for n, _ in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as waker:
            waker.sendto(b"", ("127.0.0.1", self.port))
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def dns_server() -> Iterator[_DnsServer]:
    server = _DnsServer(
        {
            ("api.example.", "A"): (30, ["192.0.2.1", "192.0.2.2"]),
            ("api.example.", "AAAA"): (20, ["2001:db8::1"]),
            ("v4only.example.", "A"): (300, ["192.0.2.9"]),
        }
    )
    yield server
    server.close()


def _dnspython(server: _DnsServer) -> DnsPythonResolver:
    inner = dns.resolver.Resolver(configure=False)
    inner.nameservers = ["127.0.0.1"]
    inner.port = server.port
    inner.lifetime = 5
    return DnsPythonResolver(inner)


def test_dnspython_resolver_returns_a_and_aaaa_with_the_smallest_record_ttl(dns_server: _DnsServer) -> None:
    result = _dnspython(dns_server).resolve("api.example", 443)
    assert result == Resolution(("192.0.2.1", "192.0.2.2", "2001:db8::1"), 20.0)


def test_dnspython_resolver_accepts_a_name_without_aaaa(dns_server: _DnsServer) -> None:
    assert _dnspython(dns_server).resolve("v4only.example", 443) == Resolution(("192.0.2.9",), 300.0)


def test_dnspython_resolver_reports_nxdomain_as_not_sent(dns_server: _DnsServer) -> None:
    result = _dnspython(dns_server).resolve("missing.example", 443)
    assert isinstance(result, NotSent)
    assert "missing.example" in result.reason


def test_dnspython_resolver_passes_ip_literals_through(dns_server: _DnsServer) -> None:
    result = _dnspython(dns_server).resolve("127.0.0.2", 443)
    assert isinstance(result, Resolution)
    assert result.addresses == ("127.0.0.2",)


def test_every_resolver_satisfies_the_port() -> None:
    resolvers: list[Resolver] = [SystemResolver(), StaticResolver(), DnsPythonResolver()]
    assert len(resolvers) == 3
