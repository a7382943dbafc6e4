from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import truststore

from flowmailer.adapters import PoolStats, Urllib3Transport
from flowmailer.core import ConfigurationError, Host, NotSent, WireRequest, WireResponse
from flowmailer.testing import FakeClock, check_transport

from .tls_server import TlsServer, tls_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TlsServer]:
    with tls_server(tmp_path) as s:
        yield s


def _get() -> WireRequest:
    return WireRequest("GET", Host.API, "/acct/messages/1")


def test_urllib3_transport_passes_the_conformance_suite(server: TlsServer) -> None:
    check_transport(lambda: Urllib3Transport(ca_bundle=server.ca_bundle, connect_timeout=0.5), server)


def test_the_operating_system_store_does_not_trust_a_private_ca(server: TlsServer) -> None:
    with closing(Urllib3Transport()) as transport:
        result = transport.send(_get(), server.origin, server.addresses[0])
    assert isinstance(result, NotSent)
    assert "certificate verify failed" in result.reason
    assert server.received() == ()


def test_an_extra_ca_can_be_added_to_a_truststore_context(server: TlsServer) -> None:
    context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(server.ca_bundle)
    with closing(Urllib3Transport(ssl_context=context)) as transport:
        assert isinstance(transport.send(_get(), server.origin, server.addresses[0]), WireResponse)


def test_an_expired_certificate_is_refused_and_nothing_is_sent(tmp_path: Path) -> None:
    with (
        tls_server(tmp_path, expired=True) as server,
        closing(Urllib3Transport(ca_bundle=server.ca_bundle)) as transport,
    ):
        result = transport.send(_get(), server.origin, server.addresses[0])
        assert isinstance(result, NotSent)
        assert "expired" in result.reason
        assert server.received() == ()


@pytest.mark.parametrize("n", [0, 11, 100])
def test_more_than_ten_connections_or_none_is_refused(n: int) -> None:
    with pytest.raises(ConfigurationError) as e:
        Urllib3Transport(max_connections=n)
    assert e.value.field == "max_connections"


def test_a_context_that_does_not_verify_is_refused() -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with pytest.raises(ConfigurationError) as e:
        Urllib3Transport(ssl_context=context)
    assert e.value.field == "ssl_context"


def test_a_context_switched_off_after_construction_is_refused_and_nothing_is_sent(server: TlsServer) -> None:
    context = ssl.create_default_context(cafile=server.ca_bundle)
    with closing(Urllib3Transport(ssl_context=context)) as transport:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with pytest.raises(ConfigurationError) as e:
            transport.send(_get(), server.origin, server.addresses[0])
        assert e.value.field == "ssl_context"
        assert transport.stats() == PoolStats(open=0, idle=0, opened=0)
    assert server.received() == ()


def test_an_unreadable_ca_bundle_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as e:
        Urllib3Transport(ca_bundle=str(tmp_path / "missing.pem"))
    assert e.value.field == "ca_bundle"


def test_a_non_positive_timeout_is_refused() -> None:
    with pytest.raises(ConfigurationError) as e:
        Urllib3Transport(read_timeout=0)
    assert e.value.field == "read_timeout"


def test_connections_older_than_the_maximum_age_are_replaced(server: TlsServer) -> None:
    clock = FakeClock()
    with closing(Urllib3Transport(ca_bundle=server.ca_bundle, max_connection_age=60, clock=clock)) as transport:
        for _ in range(3):
            assert isinstance(transport.send(_get(), server.origin, server.addresses[0]), WireResponse)
        clock.advance(61)
        for _ in range(3):
            assert isinstance(transport.send(_get(), server.origin, server.addresses[0]), WireResponse)
        assert server.handshakes() == 2
        assert transport.stats() == PoolStats(open=1, idle=1, opened=2)


def test_at_the_cap_an_idle_connection_to_another_address_is_closed_for_a_new_one(server: TlsServer) -> None:
    with closing(Urllib3Transport(ca_bundle=server.ca_bundle, max_connections=1)) as transport:
        for address in server.addresses * 2:
            assert isinstance(transport.send(_get(), server.origin, address), WireResponse)
        assert transport.stats() == PoolStats(open=1, idle=1, opened=4)


def test_a_lower_cap_is_kept_under_concurrency(server: TlsServer) -> None:
    server.max_open_connections()
    with closing(Urllib3Transport(ca_bundle=server.ca_bundle, max_connections=2)) as transport:
        threads = [
            threading.Thread(
                target=lambda: [transport.send(_get(), server.origin, server.addresses[0]) for _ in range(5)]
            )
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(server.received()) == 40
        assert server.max_open_connections() <= 2
        assert transport.stats().opened <= 2


def test_a_closed_transport_sends_nothing(server: TlsServer) -> None:
    transport = Urllib3Transport(ca_bundle=server.ca_bundle)
    assert isinstance(transport.send(_get(), server.origin, server.addresses[0]), WireResponse)
    transport.close()
    assert transport.stats().open == 0
    assert isinstance(transport.send(_get(), server.origin, server.addresses[0]), NotSent)


def test_a_request_waiting_at_the_cap_gives_up_as_not_sent(server: TlsServer) -> None:
    transport = Urllib3Transport(ca_bundle=server.ca_bundle, max_connections=1, connect_timeout=1, checkout_timeout=0.1)
    with closing(transport):
        holder = threading.Thread(target=transport.send, args=(_get(), server.origin, server.blackhole_address))
        holder.start()
        deadline = threading.Event()
        for _ in range(1000):
            if transport.stats().open == 1:
                break
            deadline.wait(0.005)
        result = transport.send(_get(), server.origin, server.addresses[0])
        holder.join()
    assert isinstance(result, NotSent)
    assert "busy" in result.reason
