"""The conformance suite every :class:`flowmailer.ports.AsyncTransport` must pass: the sync checks, async, under
asyncio or trio (through anyio).

anyio is imported where a check runs, as ``FakeFlowmailer.serving`` does, so ``flowmailer.testing`` can re-export
this module without loading anyio for synchronous users.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from flowmailer.core import Ambiguous, Host, NotSent, Origin, WireRequest, WireResponse
from flowmailer.ports import AsyncTransport
from flowmailer.testing._transport_conformance import TransportTestServer, _answered, _post

__all__ = ["check_async_transport"]

_Check = Callable[[AsyncTransport, TransportTestServer], Awaitable[None]]


async def check_async_transport(factory: Callable[[], AsyncTransport], server: TransportTestServer) -> None:
    """Run every check against fresh transports from ``factory`` (inside ``anyio.run``, ``asyncio.run`` or
    ``trio.run``); AssertionError on failure.

    The same contract as :func:`check_transport`, plus what concurrency in one thread adds: many tasks share
    the transport, and their answers still go to the requests that asked. For that check the server's
    ``Location`` must end with the request's 1-based position in ``received()`` (the test server's does).
    """
    for check in _CHECKS:
        transport = factory()
        try:
            await check(transport, server)
        finally:
            await transport.aclose()


async def _check_round_trip(transport: AsyncTransport, server: TransportTestServer) -> None:
    before = len(server.received())
    body = bytes(range(256)) * 8
    response = _answered(await transport.send(_post(body=body), server.origin, server.addresses[0]))
    assert response.status == 201, response
    assert response.header("location"), "the Location header was lost"
    got = server.received()[before]
    assert (got.method, got.target, got.body) == ("POST", "/acct/messages/submit?a=b%20c", body)
    assert got.header("X-Check") == "yes"
    assert got.header("Host") in (server.origin.host, f"{server.origin.host}:{server.origin.port}")
    assert got.header("Content-Length") == str(len(body))


async def _check_get_without_body(transport: AsyncTransport, server: TransportTestServer) -> None:
    before = len(server.received())
    request = WireRequest("GET", Host.API, "/acct/messages/1")
    _answered(await transport.send(request, server.origin, server.addresses[0]))
    got = server.received()[before]
    assert (got.method, got.body) == ("GET", b"")


async def _check_keep_alive(transport: AsyncTransport, server: TransportTestServer) -> None:
    before = server.handshakes()
    for _ in range(5):
        _answered(await transport.send(_post(), server.origin, server.addresses[0]))
    assert server.handshakes() - before == 1, "five sequential requests to one address needed more than one handshake"


async def _check_every_address_gets_its_own_connection(transport: AsyncTransport, server: TransportTestServer) -> None:
    before = server.handshakes()
    for address in server.addresses * 2:
        _answered(await transport.send(_post(), server.origin, address))
    assert server.handshakes() - before == len(server.addresses)


async def _check_refused_is_not_sent(transport: AsyncTransport, server: TransportTestServer) -> None:
    result = await transport.send(_post(), server.origin, server.refusing_address)
    assert isinstance(result, NotSent), result


async def _check_blackhole_is_not_sent(transport: AsyncTransport, server: TransportTestServer) -> None:
    result = await transport.send(_post(), server.origin, server.blackhole_address)
    assert isinstance(result, NotSent), result


async def _check_wrong_name_is_refused_before_sending(transport: AsyncTransport, server: TransportTestServer) -> None:
    before = len(server.received())
    wrong = Origin("not-the-certificate-name.invalid", server.origin.port)
    result = await transport.send(_post(), wrong, server.addresses[0])
    assert isinstance(result, NotSent), result
    assert len(server.received()) == before, "a request went to a server whose certificate did not match"


async def _check_reset_after_write_is_ambiguous(transport: AsyncTransport, server: TransportTestServer) -> None:
    before = len(server.received())
    server.reset_next_request()
    result = await transport.send(_post(), server.origin, server.addresses[0])
    assert isinstance(result, Ambiguous), result
    assert len(server.received()) == before + 1
    _answered(await transport.send(_post(), server.origin, server.addresses[0]))


async def _check_idle_connection_closed_by_server_is_replaced(
    transport: AsyncTransport, server: TransportTestServer
) -> None:
    _answered(await transport.send(_post(), server.origin, server.addresses[0]))
    before = server.handshakes()
    server.close_idle_connections()
    _answered(await transport.send(_post(), server.origin, server.addresses[0]))
    assert server.handshakes() - before == 1


async def _check_answers_go_to_the_tasks_that_asked(transport: AsyncTransport, server: TransportTestServer) -> None:
    """Concurrent requests on shared (perhaps pipelined) connections: each task gets the answer to its request."""
    locations: dict[int, str] = {}

    async def one(i: int) -> None:
        result = await transport.send(_post(path=f"/acct/messages/submit/{i}"), server.origin, server.addresses[0])
        locations[i] = _answered(result).header("location") or ""

    import anyio

    async with anyio.create_task_group() as tasks:
        for i in range(30):
            tasks.start_soon(one, i)
    received = server.received()
    for i, location in locations.items():
        position = int(location.rsplit("/", 1)[1])
        assert received[position - 1].target == f"/acct/messages/submit/{i}?a=b%20c", (i, location)


async def _check_a_reset_under_concurrency_calls_nothing_read_not_sent(
    transport: AsyncTransport, server: TransportTestServer
) -> None:
    """A connection reset while other tasks' requests share it: none the server read may be reported NotSent."""
    import anyio

    before = len(server.received())
    results: dict[int, object] = {}

    async def one(i: int) -> None:
        request = _post(path=f"/acct/messages/submit/{i}")
        results[i] = await transport.send(request, server.origin, server.addresses[0])

    server.reset_next_request()
    async with anyio.create_task_group() as tasks:
        for i in range(8):
            tasks.start_soon(one, i)
    read = {r.target.split("?")[0].rsplit("/", 1)[1] for r in server.received()[before:]}
    assert any(isinstance(r, Ambiguous) for r in results.values()), "the reset request was not reported Ambiguous"
    for i, result in results.items():
        assert isinstance(result, WireResponse | Ambiguous | NotSent), result
        assert not (isinstance(result, NotSent) and str(i) in read), f"request {i} was read, yet reported NotSent"


async def _check_at_most_ten_connections(transport: AsyncTransport, server: TransportTestServer) -> None:
    await _wait_until(lambda: server.open_connections() == 0, "the server still holds connections of earlier checks")
    server.max_open_connections()
    results: list[object] = []

    async def work() -> None:
        for _ in range(10):
            result = await transport.send(_post(), server.origin, server.addresses[0])
            results.append(result)

    import anyio

    async with anyio.create_task_group() as tasks:
        for _ in range(25):
            tasks.start_soon(work)
    assert len(results) == 250
    assert all(isinstance(r, WireResponse) for r in results), [r for r in results if not isinstance(r, WireResponse)]
    assert server.max_open_connections() <= 10


async def _wait_until(condition: Callable[[], bool], problem: str, timeout: float = 10.0) -> None:
    """Poll a server running in other threads, with a deadline (there is nothing to wait on across threads)."""
    import anyio

    with anyio.move_on_after(timeout):
        while not condition():
            await anyio.sleep(0.01)
        return
    raise AssertionError(problem)


_CHECKS: tuple[_Check, ...] = (
    _check_round_trip,
    _check_get_without_body,
    _check_keep_alive,
    _check_every_address_gets_its_own_connection,
    _check_refused_is_not_sent,
    _check_blackhole_is_not_sent,
    _check_wrong_name_is_refused_before_sending,
    _check_reset_after_write_is_ambiguous,
    _check_idle_connection_closed_by_server_is_replaced,
    _check_answers_go_to_the_tasks_that_asked,
    _check_a_reset_under_concurrency_calls_nothing_read_not_sent,
    _check_at_most_ten_connections,
)
