from __future__ import annotations

import gzip
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import truststore
from urllib3.connection import HTTPSConnection

from flowmailer.adapters import PoolStats, Urllib3Transport
from flowmailer.adapters._http1 import ONE_WRITE_LIMIT
from flowmailer.core import Ambiguous, ConfigurationError, Host, NotSent, WireRequest, WireResponse
from flowmailer.testing import FakeClock, check_transport

from .tls_server import TlsServer, tls_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TlsServer]:
    with tls_server(tmp_path) as s:
        yield s


def _get() -> WireRequest:
    return WireRequest("GET", Host.API, "/acct/messages/1")


def _post() -> WireRequest:
    return WireRequest("POST", Host.API, "/acct/messages/submit", body=b"{}", idempotent=False)


def test_urllib3_transport_passes_the_conformance_suite(server: TlsServer) -> None:
    check_transport(lambda: Urllib3Transport(ca_bundle=server.ca_bundle), server)


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


def _key(server: TlsServer, address: str) -> tuple[str, int, str]:
    return (server.origin.host, server.origin.port, address)


def _until(condition: Callable[[], bool]) -> None:
    """Poll with a deadline (not a sleep to wait for something): fail if ``condition`` never holds."""
    tick = threading.Event()
    for _ in range(2000):
        if condition():
            return
        tick.wait(0.005)
    raise AssertionError("the condition never held within 10 s")


def test_a_request_waiting_at_the_cap_gives_up_as_a_local_not_sent(server: TlsServer) -> None:
    transport = Urllib3Transport(ca_bundle=server.ca_bundle, max_connections=1, checkout_timeout=0.1)
    with closing(transport):
        held = transport._checkout(_key(server, server.addresses[1]))  # the one slot, taken and never connected
        assert not isinstance(held, NotSent)
        assert transport.stats().open == 1
        result = transport.send(_get(), server.origin, server.addresses[0])
        transport._checkin(held[0], reusable=False)
    assert isinstance(result, NotSent)
    assert "busy" in result.reason
    assert result.local
    assert server.received() == ()


def test_two_slots_freed_at_once_wake_waiters_for_every_address(server: TlsServer) -> None:
    transport = Urllib3Transport(ca_bundle=server.ca_bundle, max_connections=2, checkout_timeout=60)
    a, b = (_key(server, address) for address in server.addresses)
    held = [transport._checkout(a), transport._checkout(a)]
    got: dict[str, object] = {}
    waiters = [
        threading.Thread(target=lambda k=k, name=name: got.update({name: transport._checkout(k)}), daemon=True)
        for name, k in (("a", a), ("b", b))
    ]
    for w in waiters:
        w.start()
    _until(lambda: transport.stats().waiting == 2)
    transport._close_and_forget([h[0] for h in held if not isinstance(h, NotSent)])  # both slots, one lock hold
    for w in waiters:
        w.join(timeout=10)  # a deadline far below checkout_timeout: a missed wake-up would sleep for 60 s
    assert not any(w.is_alive() for w in waiters)
    assert all(isinstance(g, tuple) and g[1] for g in got.values())
    transport.close()


def test_a_slot_is_freed_only_after_its_socket_is_closed(server: TlsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    transport = Urllib3Transport(ca_bundle=server.ca_bundle, max_connections=1, max_connection_age=10, clock=clock)
    open_at_close: list[int] = []
    real_close, real_connect = HTTPSConnection.close, HTTPSConnection.connect

    def close(self: HTTPSConnection) -> None:
        open_at_close.append(transport.stats().open)
        real_close(self)

    def connect(self: HTTPSConnection) -> None:
        real_connect(self)
        clock.advance(11)  # the connection grows too old during its request: it is closed when it comes back

    monkeypatch.setattr(HTTPSConnection, "close", close)
    monkeypatch.setattr(HTTPSConnection, "connect", connect)
    with closing(transport):
        assert isinstance(transport.send(_get(), server.origin, server.addresses[0]), WireResponse)
        assert open_at_close == [1]  # a thread woken for the slot could not have connected before this close
        assert transport.stats() == PoolStats(open=0, idle=0, opened=1)


def _open_idle(transport: Urllib3Transport, server: TlsServer, n: int) -> None:
    """``n`` connected keep-alive connections to the first address, all idle: idle ones reused, new ones connected.

    Whether an idle one is reused depends on timing: one never used is readable once the server's TLS 1.3 session
    tickets arrive, and is then closed as unusable. Connecting a reused one again would leak its socket."""
    held = [transport._checkout(_key(server, server.addresses[0])) for _ in range(n)]
    for got in held:
        assert not isinstance(got, NotSent)
        if got[1]:
            assert transport._connect(got[0], server.origin, server.addresses[0], 5.0) is None
    for got in held:
        assert not isinstance(got, NotSent)
        transport._checkin(got[0], reusable=True)


def test_a_cap_lowered_at_run_time_closes_idle_connections_at_once(server: TlsServer) -> None:
    """Idle keep-alive connections count at Flowmailer: a lower cap closes them, it does not only stop new ones."""
    transport = Urllib3Transport(ca_bundle=server.ca_bundle, max_connections=6, checkout_timeout=0.05)
    with closing(transport):
        _open_idle(transport, server, 4)
        assert transport.stats() == PoolStats(open=4, idle=4, opened=4)
        assert transport.limit_connections(2) == 2
        assert transport.stats() == PoolStats(open=2, idle=2, opened=4)
        _until(lambda: server.open_connections() == 2)
        assert transport.limit_connections(10) == 2  # raised back, but never past the 6 it was built with
        _open_idle(transport, server, 6)
        assert transport.stats().open == 6
        assert transport.limit_connections(0) == 0
        result = transport.send(_get(), server.origin, server.addresses[0])
        assert isinstance(result, NotSent)
        assert result.local
        assert "no connection" in result.reason
        _until(lambda: server.open_connections() == 0)
        with pytest.raises(ConfigurationError, match="limit"):
            transport.limit_connections(-1)


def test_connections_in_use_over_a_lowered_cap_close_when_they_come_back(server: TlsServer) -> None:
    with closing(Urllib3Transport(ca_bundle=server.ca_bundle, checkout_timeout=0.05)) as transport:
        key = _key(server, server.addresses[0])
        held = [transport._checkout(key) for _ in range(3)]
        assert transport.limit_connections(1) == 3  # none idle: all three are in use
        assert isinstance(transport.send(_get(), server.origin, server.addresses[1]), NotSent)  # at the cap
        for n, got in enumerate(held):
            assert not isinstance(got, NotSent)
            transport._checkin(got[0], reusable=True)
            assert transport.stats().open == max(1, 2 - n)
        assert transport.stats() == PoolStats(open=1, idle=1, opened=3)


# --- the exchange: one write, every answer framing http.client reads -----------------------------------------


def test_a_request_with_a_header_that_would_split_the_head_is_refused_and_nothing_is_sent(server: TlsServer) -> None:
    bad = WireRequest("GET", Host.API, "/acct/messages/1", headers=(("Authorization", "Bearer x\r\nX-Evil: 1"),))
    with closing(Urllib3Transport(ca_bundle=server.ca_bundle)) as transport:
        with pytest.raises(ConfigurationError) as e:
            transport.send(bad, server.origin, server.addresses[0])
        assert e.value.field == "request.headers"
        assert transport.stats() == PoolStats(open=0, idle=0, opened=0)
    assert server.received() == ()


def test_head_and_body_arrive_as_the_server_reads_them(server: TlsServer) -> None:
    body = b'{"subject": "\xc3\xa9"}'
    request = WireRequest("POST", Host.API, "/acct/messages/submit", headers=(("Content-Type", "a/b"),), body=body)
    with closing(Urllib3Transport(ca_bundle=server.ca_bundle, user_agent="tests/1")) as transport:
        assert isinstance(transport.send(request, server.origin, server.addresses[0]), WireResponse)
    got = server.received()[0]
    assert (got.method, got.target, got.body) == ("POST", "/acct/messages/submit", body)
    assert got.header("Host") == f"{server.origin.host}:{server.origin.port}"
    assert got.header("User-Agent") == "tests/1"
    assert got.header("Accept-Encoding") == "identity"
    assert got.header("Content-Length") == str(len(body))


def test_a_chunked_answer_is_read_whole_and_the_connection_kept(server: TlsServer) -> None:
    server.answer_next(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    with closing(Urllib3Transport(ca_bundle=server.ca_bundle)) as transport:
        answer = transport.send(_get(), server.origin, server.addresses[0])
        assert isinstance(answer, WireResponse)
        assert (answer.status, answer.body) == (200, b"abcde")
        assert isinstance(transport.send(_get(), server.origin, server.addresses[0]), WireResponse)
        assert server.handshakes() == 1


def test_an_interim_100_continue_is_skipped(server: TlsServer) -> None:
    server.answer_next(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    with closing(Urllib3Transport(ca_bundle=server.ca_bundle)) as transport:
        answer = transport.send(_get(), server.origin, server.addresses[0])
        assert isinstance(answer, WireResponse)
        assert answer.status == 204


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\n\r\nok",  # no length: the body runs to the end of the connection
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
)
def test_an_answer_that_ends_the_connection_is_read_and_the_connection_not_reused(
    server: TlsServer, raw: bytes
) -> None:
    server.answer_next(raw, then_close=True)
    with closing(Urllib3Transport(ca_bundle=server.ca_bundle)) as transport:
        answer = transport.send(_get(), server.origin, server.addresses[0])
        assert isinstance(answer, WireResponse)
        assert answer.body == b"ok"
        assert transport.stats() == PoolStats(open=0, idle=0, opened=1)
        assert isinstance(transport.send(_get(), server.origin, server.addresses[0]), WireResponse)
        assert server.handshakes() == 2


def test_no_answer_within_the_read_timeout_is_ambiguous(server: TlsServer) -> None:
    server.answer_next(None)
    with closing(Urllib3Transport(ca_bundle=server.ca_bundle, read_timeout=0.2)) as transport:
        result = transport.send(_post(), server.origin, server.addresses[0])
        assert isinstance(result, Ambiguous)
        assert "timed out" in result.reason
        assert transport.stats() == PoolStats(open=0, idle=0, opened=1)
    assert len(server.received()) == 1


def test_a_truncated_answer_is_ambiguous(server: TlsServer) -> None:
    server.answer_next(b"HTTP/1.1 201 Created\r\nContent-Length: 10\r\n\r\nshort", then_close=True)
    with closing(Urllib3Transport(ca_bundle=server.ca_bundle)) as transport:
        result = transport.send(_post(), server.origin, server.addresses[0])
        assert isinstance(result, Ambiguous)
        assert transport.stats() == PoolStats(open=0, idle=0, opened=1)


def test_an_interim_answer_other_than_100_is_ambiguous_and_the_connection_dropped(server: TlsServer) -> None:
    final = b"HTTP/1.1 201 Created\r\nLocation: https://x/acct/messages/ABC\r\nContent-Length: 0\r\n\r\n"
    server.answer_next(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + final)
    with closing(Urllib3Transport(ca_bundle=server.ca_bundle)) as transport:
        result = transport.send(_post(), server.origin, server.addresses[0])
        assert isinstance(result, Ambiguous)
        assert "103" in result.reason
        assert transport.stats() == PoolStats(open=0, idle=0, opened=1)


def test_a_gzip_answer_that_was_not_asked_for_is_not_decoded(server: TlsServer) -> None:
    body = gzip.compress(b'{"id": "1"}')
    server.answer_next(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    with closing(Urllib3Transport(ca_bundle=server.ca_bundle)) as transport:
        answer = transport.send(_get(), server.origin, server.addresses[0])
        assert isinstance(answer, Ambiguous)
        assert answer.unreadable
        assert "gzip" in answer.reason
        assert transport.stats().open == 0


@pytest.mark.parametrize(("size", "writes"), [(2000, 1), (ONE_WRITE_LIMIT + 1, 2)])
def test_a_request_is_one_write_unless_its_body_is_large(
    server: TlsServer, monkeypatch: pytest.MonkeyPatch, size: int, writes: int
) -> None:
    counted: list[int] = []
    real = ssl.SSLSocket.sendall

    def sendall(self: ssl.SSLSocket, data: Any, flags: int = 0) -> None:
        if not self.server_side:
            counted.append(len(data))
        real(self, data, flags)

    monkeypatch.setattr(ssl.SSLSocket, "sendall", sendall)
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    request = WireRequest("POST", Host.API, "/acct/messages/submit", body=body, idempotent=False)
    with closing(Urllib3Transport(ca_bundle=server.ca_bundle)) as transport:
        assert isinstance(transport.send(request, server.origin, server.addresses[0]), WireResponse)
    assert len(counted) == writes
    assert server.received()[0].body == body


def test_a_request_counts_as_in_flight_to_its_address_from_its_checkout_until_it_ends(
    server: TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = Urllib3Transport(ca_bundle=server.ca_bundle, max_connections=1, checkout_timeout=0.1)
    during: list[dict[str, int]] = []
    real_connect = HTTPSConnection.connect

    def connect(self: HTTPSConnection) -> None:
        during.append(dict(transport.in_flight(server.origin)))
        real_connect(self)

    monkeypatch.setattr(HTTPSConnection, "connect", connect)
    with closing(transport):
        assert isinstance(transport.send(_get(), server.origin, server.addresses[0]), WireResponse)
        assert during == [{server.addresses[0]: 1}]
        assert transport.in_flight(server.origin) == {}  # none left: the core reads an idle origin as no load
        held = transport._checkout(_key(server, server.addresses[1]))  # the one slot, taken elsewhere
        assert not isinstance(held, NotSent)
        busy = transport.send(_get(), server.origin, server.addresses[0])  # waits at the cap, then gives up
        transport._checkin(held[0], reusable=False)
        assert isinstance(busy, NotSent)
        assert transport.in_flight(server.origin) == {}
