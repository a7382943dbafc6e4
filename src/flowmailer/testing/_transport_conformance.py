"""The conformance suite every synchronous :class:`flowmailer.ports.Transport` must pass."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import attrs

from flowmailer.core import Ambiguous, Host, NotSent, Origin, WireRequest, WireResponse
from flowmailer.ports import Transport

__all__ = ["ReceivedRequest", "TransportTestServer", "check_transport"]


@attrs.frozen
class ReceivedRequest:
    """One request as the test server read it off the wire."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)


class TransportTestServer(Protocol):
    """What :func:`check_transport` needs of an HTTPS test server (FakeFlowmailer, or a smaller one).

    The server answers every request with 201 and a ``Location`` header unless told otherwise; its certificate
    is valid for ``origin.host`` and trusted by the transports the factory builds.
    """

    @property
    def origin(self) -> Origin: ...

    @property
    def addresses(self) -> tuple[str, ...]:
        """Loopback addresses on which the server answers at ``origin.port``; at least one."""
        ...

    @property
    def refusing_address(self) -> str:
        """An address where connecting to ``origin.port`` is refused."""
        ...

    @property
    def blackhole_address(self) -> str:
        """An address where connecting to ``origin.port`` never completes."""
        ...

    def handshakes(self) -> int:
        """TLS handshakes completed so far."""
        ...

    def received(self) -> tuple[ReceivedRequest, ...]:
        """Every complete request read so far, in order."""
        ...

    def open_connections(self) -> int:
        """Connections open right now."""
        ...

    def max_open_connections(self) -> int:
        """The most connections open at the same time since the previous call (which resets the peak)."""
        ...

    def reset_next_request(self) -> None:
        """Read the next request in full, then reset the connection without answering."""
        ...

    def close_idle_connections(self) -> None:
        """Close every keep-alive connection that is waiting for a request, as a server's idle timeout does."""
        ...


def check_transport(factory: Callable[[], Transport], server: TransportTestServer) -> None:
    """Run every check against fresh transports from ``factory``; raises AssertionError on the first failure.

    The factory's transport must trust the server's CA, allow at most 10 connections and use a connect timeout
    short enough to wait out once (the blackhole check waits for it).
    """
    for check in _CHECKS:
        transport = factory()
        try:
            check(transport, server)
        finally:
            transport.close()


def _post(path: str = "/acct/messages/submit", body: bytes = b'{"x": 1}') -> WireRequest:
    return WireRequest(
        "POST",
        Host.API,
        path,
        query=(("a", "b c"),),
        headers=(("Content-Type", "application/json"), ("X-Check", "yes")),
        body=body,
        idempotent=False,
    )


def _answered(result: object) -> WireResponse:
    assert isinstance(result, WireResponse), f"expected an HTTP response, got {result!r}"
    return result


def _check_round_trip(transport: Transport, server: TransportTestServer) -> None:
    before = len(server.received())
    body = bytes(range(256)) * 8
    response = _answered(transport.send(_post(body=body), server.origin, server.addresses[0]))
    assert response.status == 201, response
    assert response.header("location"), "the Location header was lost"
    got = server.received()[before]
    assert (got.method, got.target, got.body) == ("POST", "/acct/messages/submit?a=b%20c", body)
    assert got.header("X-Check") == "yes"
    assert got.header("Host") in (server.origin.host, f"{server.origin.host}:{server.origin.port}")
    assert got.header("Content-Length") == str(len(body))


def _check_get_without_body(transport: Transport, server: TransportTestServer) -> None:
    before = len(server.received())
    request = WireRequest("GET", Host.API, "/acct/messages/1")
    _answered(transport.send(request, server.origin, server.addresses[0]))
    got = server.received()[before]
    assert (got.method, got.body) == ("GET", b"")


def _check_keep_alive(transport: Transport, server: TransportTestServer) -> None:
    before = server.handshakes()
    for _ in range(5):
        _answered(transport.send(_post(), server.origin, server.addresses[0]))
    assert server.handshakes() - before == 1, "five sequential requests to one address needed more than one handshake"


def _check_every_address_gets_its_own_connection(transport: Transport, server: TransportTestServer) -> None:
    before = server.handshakes()
    for address in server.addresses * 2:
        _answered(transport.send(_post(), server.origin, address))
    assert server.handshakes() - before == len(server.addresses)


def _check_refused_is_not_sent(transport: Transport, server: TransportTestServer) -> None:
    result = transport.send(_post(), server.origin, server.refusing_address)
    assert isinstance(result, NotSent), result


def _check_blackhole_is_not_sent(transport: Transport, server: TransportTestServer) -> None:
    result = transport.send(_post(), server.origin, server.blackhole_address)
    assert isinstance(result, NotSent), result


def _check_wrong_name_is_refused_before_sending(transport: Transport, server: TransportTestServer) -> None:
    before = len(server.received())
    wrong = Origin("not-the-certificate-name.invalid", server.origin.port)
    result = transport.send(_post(), wrong, server.addresses[0])
    assert isinstance(result, NotSent), result
    assert len(server.received()) == before, "a request went to a server whose certificate did not match"


def _check_reset_after_write_is_ambiguous(transport: Transport, server: TransportTestServer) -> None:
    before = len(server.received())
    server.reset_next_request()
    result = transport.send(_post(), server.origin, server.addresses[0])
    assert isinstance(result, Ambiguous), result
    assert len(server.received()) == before + 1
    _answered(transport.send(_post(), server.origin, server.addresses[0]))


def _check_idle_connection_closed_by_server_is_replaced(transport: Transport, server: TransportTestServer) -> None:
    _answered(transport.send(_post(), server.origin, server.addresses[0]))
    before = server.handshakes()
    server.close_idle_connections()
    _answered(transport.send(_post(), server.origin, server.addresses[0]))
    assert server.handshakes() - before == 1


def _check_at_most_ten_connections(transport: Transport, server: TransportTestServer) -> None:
    _wait_until(lambda: server.open_connections() == 0, "the server still holds connections of earlier checks")
    server.max_open_connections()
    results: list[object] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(10):
            result = transport.send(_post(), server.origin, server.addresses[0])
            with lock:
                results.append(result)

    threads = [threading.Thread(target=work) for _ in range(25)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 250
    assert all(isinstance(r, WireResponse) for r in results), [r for r in results if not isinstance(r, WireResponse)]
    assert server.max_open_connections() <= 10


def _wait_until(condition: Callable[[], bool], problem: str, timeout: float = 10.0) -> None:
    done = threading.Event()
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(problem)
        done.wait(0.01)


_CHECKS: tuple[Callable[[Transport, TransportTestServer], None], ...] = (
    _check_round_trip,
    _check_get_without_body,
    _check_keep_alive,
    _check_every_address_gets_its_own_connection,
    _check_refused_is_not_sent,
    _check_blackhole_is_not_sent,
    _check_wrong_name_is_refused_before_sending,
    _check_reset_after_write_is_ambiguous,
    _check_idle_connection_closed_by_server_is_replaced,
    _check_at_most_ten_connections,
)
