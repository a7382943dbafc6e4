"""AnyioTransport: the conformance suite, the configuration it refuses, and pipelining over real TLS, under asyncio
and trio (anyio's pytest plugin); connection ages under trio's MockClock."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from flowmailer.adapters.anyio_transport import _SHARES, AnyioTransport, _Conn, _Lot, _may_have_sent_all
from flowmailer.core import Ambiguous, ConfigurationError, Host, NotSent, WireRequest, WireResponse
from flowmailer.testing._async_transport_conformance import check_async_transport
from tests.adapters.tls_server import TlsServer, tls_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TlsServer]:
    with tls_server(tmp_path) as s:
        yield s


@pytest.mark.anyio
@pytest.mark.parametrize("depth", [1, 3])
async def test_the_anyio_transport_passes_the_conformance_suite(server: TlsServer, depth: int) -> None:
    def factory() -> AnyioTransport:
        return AnyioTransport(ca_bundle=server.ca_bundle, pipeline_depth=depth)

    await check_async_transport(factory, server)


def _get() -> WireRequest:
    return WireRequest("GET", Host.API, "/acct/messages/1")


@pytest.mark.parametrize("n", [0, 11, 100])
def test_more_than_ten_connections_or_none_is_refused(n: int) -> None:
    with pytest.raises(ConfigurationError) as e:
        AnyioTransport(max_connections=n)
    assert e.value.field == "max_connections"


@pytest.mark.parametrize("depth", [0, 17])
def test_a_pipeline_depth_outside_one_to_sixteen_is_refused(depth: int) -> None:
    with pytest.raises(ConfigurationError) as e:
        AnyioTransport(pipeline_depth=depth)
    assert e.value.field == "pipeline_depth"


def test_a_context_that_does_not_verify_is_refused() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with pytest.raises(ConfigurationError) as e:
        AnyioTransport(ssl_context=context)
    assert e.value.field == "ssl_context"


@pytest.mark.anyio
async def test_a_context_switched_off_after_construction_is_refused_and_nothing_is_sent(server: TlsServer) -> None:
    context = ssl.create_default_context(cafile=server.ca_bundle)
    transport = AnyioTransport(ssl_context=context)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with pytest.raises(ConfigurationError) as e:
        await transport.send(_get(), server.origin, server.addresses[0])
    assert e.value.field == "ssl_context"
    await transport.aclose()
    assert transport.stats().opened == 0
    assert server.received() == ()


@pytest.mark.anyio
async def test_the_operating_system_store_does_not_trust_a_private_ca(server: TlsServer) -> None:
    transport = AnyioTransport()
    result = await transport.send(_get(), server.origin, server.addresses[0])
    await transport.aclose()
    assert isinstance(result, NotSent)
    assert "certificate verify failed" in result.reason
    assert server.received() == ()


def test_connections_older_than_the_maximum_age_are_replaced(server: TlsServer) -> None:
    # A MockClock that never jumps by itself: time moves only when the test says, so no timeout fires early.
    clock = trio.testing.MockClock()

    async def main() -> None:
        transport = AnyioTransport(ca_bundle=server.ca_bundle, max_connection_age=60)
        for _ in range(2):
            assert isinstance(await transport.send(_get(), server.origin, server.addresses[0]), WireResponse)
        clock.jump(61)
        assert isinstance(await transport.send(_get(), server.origin, server.addresses[0]), WireResponse)
        assert transport.stats().opened == 2
        await transport.aclose()

    trio.run(main, clock=clock)
    assert server.handshakes() == 2


@pytest.mark.anyio
async def test_requests_on_one_connection_never_exceed_the_pipeline_depth(server: TlsServer) -> None:
    transport = AnyioTransport(ca_bundle=server.ca_bundle, max_connections=2, pipeline_depth=3)
    async with anyio.create_task_group() as tasks:
        for _ in range(40):
            tasks.start_soon(transport.send, _get(), server.origin, server.addresses[0])
    stats = transport.stats()
    assert (stats.opened, stats.max_in_flight) == (2, 3)
    await transport.aclose()
    assert transport.stats().open == 0


@pytest.mark.anyio
async def test_a_request_counts_as_in_flight_to_its_address_until_it_ends(server: TlsServer) -> None:
    transport = AnyioTransport(ca_bundle=server.ca_bundle, max_connections=1)
    seen: list[dict[str, int]] = []

    def answer(sock: ssl.SSLSocket) -> None:  # in the server's thread, while the request waits for its answer
        seen.append(dict(transport.in_flight(server.origin)))
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    server.answer_next_with(answer)
    assert isinstance(await transport.send(_get(), server.origin, server.addresses[0]), WireResponse)
    assert seen == [{server.addresses[0]: 1 * _SHARES}]  # one request on its one connection
    assert transport.in_flight(server.origin) == {}  # none left: the core reads an idle origin as no load
    await transport.aclose()
    assert isinstance(await transport.send(_get(), server.origin, server.addresses[1]), NotSent)
    assert transport.in_flight(server.origin) == {}  # a request refused at once is counted out too


@pytest.mark.anyio
async def test_the_load_told_for_each_address_is_per_open_connection_so_more_connections_take_more(
    server: TlsServer,
) -> None:
    transport = AnyioTransport(ca_bundle=server.ca_bundle, pipeline_depth=8)
    (first, second), third = server.addresses, "127.0.0.9"  # the third never connected
    origin = server.origin
    for address, connections in ((first, 4), (second, 3)):
        for _ in range(connections):
            assert isinstance(await transport._checkout((origin.host, origin.port, address), origin), _Conn)
    transport._in_flight.add(origin, first, 8)  # as eight sends to it would, two per connection
    transport._in_flight.add(origin, second, 7)  # fewer requests, but more on each of its three connections
    transport._in_flight.add(origin, third, 1)  # waiting for its first connection: counted as on one
    load = transport.in_flight(origin)
    assert load == {first: 2 * _SHARES, second: 7 * _SHARES // 3, third: _SHARES}
    assert min(load, key=load.__getitem__) == third
    assert load[first] < load[second]  # the core sends the next one to the address with more room
    for address, n in ((first, 8), (second, 7), (third, 1)):
        transport._in_flight.add(origin, address, -n)
    assert transport.in_flight(origin) == {}
    await transport.aclose()


@pytest.mark.anyio
async def test_a_closed_transport_sends_nothing(server: TlsServer) -> None:
    transport = AnyioTransport(ca_bundle=server.ca_bundle)
    assert isinstance(await transport.send(_get(), server.origin, server.addresses[0]), WireResponse)
    await transport.aclose()
    assert isinstance(await transport.send(_get(), server.origin, server.addresses[0]), NotSent)
    assert len(server.received()) == 1


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    with tls_server(tmp_path_factory.mktemp("tls")) as s:
        yield s


@pytest.mark.anyio
@settings(max_examples=25, deadline=None)
@given(depth=st.integers(1, 4), n=st.integers(1, 10), reset=st.booleans())
async def test_under_pipelining_not_sent_means_never_read_and_every_answer_is_its_own(
    shared_server: TlsServer, depth: int, n: int, reset: bool
) -> None:
    server = shared_server
    results: dict[int, object] = {}

    async def one(transport: AnyioTransport, i: int) -> None:
        request = WireRequest("POST", Host.API, f"/acct/messages/submit/{i}", body=b"x")
        results[i] = await transport.send(request, server.origin, server.addresses[0])

    before = len(server.received())
    if reset:
        server.reset_next_request()
    transport = AnyioTransport(ca_bundle=server.ca_bundle, max_connections=1, pipeline_depth=depth)
    async with anyio.create_task_group() as tasks:
        for i in range(n):
            tasks.start_soon(one, transport, i)
    await transport.aclose()
    received = server.received()
    read = {int(r.target.rsplit("/", 1)[1]) for r in received[before:]}
    for i, result in results.items():
        if isinstance(result, WireResponse):
            position = int((result.header("location") or "").rsplit("/", 1)[1])
            assert received[position - 1].target == f"/acct/messages/submit/{i}"
        elif isinstance(result, NotSent):
            assert i not in read, f"request {i} was read by the server but reported NotSent"
        else:
            assert isinstance(result, Ambiguous), result
    if not reset:
        assert all(isinstance(r, WireResponse) for r in results.values()), results


@pytest.mark.anyio
async def test_a_wake_up_whose_task_was_cancelled_passes_to_the_next_in_line() -> None:
    # What the pool's wait line must never do: wake a task that is cancelled before it runs and so lose the wake-up,
    # leaving the next task waiting for a place that is free (until its checkout timeout).
    lot = _Lot()
    scopes: dict[str, anyio.CancelScope] = {}
    woke: list[str] = []

    async def wait(name: str) -> None:
        with anyio.CancelScope() as scope:
            scopes[name] = scope
            await lot.park()
            woke.append(name)

    async with anyio.create_task_group() as tasks:
        for name in ("first", "second"):
            tasks.start_soon(wait, name)
        await anyio.wait_all_tasks_blocked()
        scopes["first"].cancel()  # delivered, but "first" has not run since: it is still first in line
        assert lot.unpark(1) == 1  # so the wake-up goes to it
        await anyio.wait_all_tasks_blocked()
        assert woke == ["second"]
        lot.unpark_all()
    assert not lot


# --- a cap lowered at run time (connection slots shared between relays) -------------------------------------


def _until(condition: Callable[[], bool]) -> None:
    """Poll another thread's state with a deadline (not a sleep to wait for something)."""
    tick = threading.Event()
    for _ in range(2000):
        if condition():
            return
        tick.wait(0.005)
    raise AssertionError("the condition never held within 10 s")


async def _hold(transport: AnyioTransport, server: TlsServer, n: int) -> list[_Conn]:
    """``n`` connected connections to the first address, each holding a place (as a request being sent does)."""
    key = (server.origin.host, server.origin.port, server.addresses[0])
    held = [await transport._checkout(key, server.origin) for _ in range(n)]
    assert all(isinstance(conn, _Conn) for conn in held)
    return [conn for conn in held if isinstance(conn, _Conn)]


async def _give_back(transport: AnyioTransport, conn: _Conn) -> None:
    conn.in_flight -= 1  # as send() does once its answer is read
    await transport._checkin(conn)


@pytest.mark.anyio
async def test_a_cap_lowered_at_run_time_closes_idle_connections_at_once(server: TlsServer) -> None:
    """Idle keep-alive connections count at Flowmailer: a lower cap closes them, it does not only stop new ones."""
    transport = AnyioTransport(ca_bundle=server.ca_bundle, max_connections=6, checkout_timeout=0.05)
    for conn in await _hold(transport, server, 4):
        await _give_back(transport, conn)
    assert transport.stats().open == 4
    assert await transport.limit_connections(2) == 2
    assert transport.stats().open == 2
    await anyio.to_thread.run_sync(_until, lambda: server.open_connections() == 2)
    assert await transport.limit_connections(10) == 2  # raised back, but never past the 6 it was built with
    for conn in await _hold(transport, server, 6):  # two idle ones reused, four new
        await _give_back(transport, conn)
    assert transport.stats().open == 6
    assert await transport.limit_connections(0) == 0
    result = await transport.send(_get(), server.origin, server.addresses[0])
    assert isinstance(result, NotSent)
    assert result.local
    assert "no connection" in result.reason
    await anyio.to_thread.run_sync(_until, lambda: server.open_connections() == 0)
    with pytest.raises(ConfigurationError, match="limit"):
        await transport.limit_connections(-1)
    await transport.aclose()


@pytest.mark.anyio
async def test_busy_connections_over_a_lowered_cap_take_no_new_request_and_close_once_drained(
    server: TlsServer,
) -> None:
    transport = AnyioTransport(ca_bundle=server.ca_bundle, pipeline_depth=2, checkout_timeout=0.05)
    held = await _hold(transport, server, 3)
    assert await transport.limit_connections(1) == 3  # none idle: all three are in use
    assert isinstance(await transport.send(_get(), server.origin, server.addresses[0]), WireResponse)  # pipelined
    kept = [conn for conn in held if not conn.retired]
    assert len(kept) == 1
    kept[0].in_flight += 1  # fill the kept one to its depth: the two draining ones take nothing meanwhile
    assert isinstance(await transport.send(_get(), server.origin, server.addresses[0]), NotSent)
    kept[0].in_flight -= 1
    for n, conn in enumerate(conn for conn in held if conn.retired):
        await _give_back(transport, conn)
        assert transport.stats().open == 2 - n
    await _give_back(transport, kept[0])
    assert transport.stats().open == 1
    await anyio.to_thread.run_sync(_until, lambda: server.open_connections() == 1)
    await transport.aclose()


@pytest.mark.anyio
async def test_a_new_connection_has_its_connect_timeout_for_the_handshake_not_what_the_checkout_wait_had_left(
    server: TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """checkout_timeout bounds the wait for a place; a handshake cut by it was reported as "all connections stayed
    busy" (and a loaded machine's TLS handshake outlasts a short checkout_timeout)."""
    real_connect = anyio.connect_tcp
    left: list[float] = []

    async def measured_connect(*args: Any, **kwargs: Any) -> Any:
        left.append(anyio.current_effective_deadline() - anyio.current_time())
        return await real_connect(*args, **kwargs)

    monkeypatch.setattr(anyio, "connect_tcp", measured_connect)
    transport = AnyioTransport(ca_bundle=server.ca_bundle, connect_timeout=30.0, checkout_timeout=0.05)
    held = await _hold(transport, server, 1)  # through the checkout, as a request that finds no idle connection
    assert len(left) == 1
    assert left[0] > 1.0  # the connect's own 30 s, far from the checkout's 0.05 s
    await _give_back(transport, held[0])
    await transport.aclose()


@pytest.mark.anyio
async def test_a_connection_still_connecting_when_the_cap_is_lowered_closes_once_its_request_is_answered(
    server: TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    connecting, go = anyio.Event(), anyio.Event()
    real_connect = anyio.connect_tcp

    async def held_connect(*args: Any, **kwargs: Any) -> Any:
        connecting.set()
        await go.wait()
        return await real_connect(*args, **kwargs)

    monkeypatch.setattr(anyio, "connect_tcp", held_connect)
    transport = AnyioTransport(ca_bundle=server.ca_bundle)
    results: list[object] = []

    async def send() -> None:
        results.append(await transport.send(_get(), server.origin, server.addresses[0]))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(send)
        await connecting.wait()
        assert await transport.limit_connections(0) == 1  # counted, though not open yet: nothing to close
        go.set()
    assert isinstance(results[0], WireResponse)
    assert transport.stats().open == 0
    await transport.aclose()


@pytest.mark.anyio
async def test_a_failed_write_is_told_apart_by_the_backend_s_own_stream(server: TlsServer, anyio_backend: str) -> None:
    """What ``_may_have_sent_all`` reads of a real stream is there: trio's socket (whose sends are exact), or
    asyncio's transport and its buffer, empty once a write went out. If anyio stopped keeping either where it is
    read, every failed write on asyncio would be reconciled (safe, but a search each): this says so first."""
    context = ssl.create_default_context(cafile=server.ca_bundle)
    stream = await anyio.connect_tcp(
        server.addresses[0], server.origin.port, ssl_context=context, tls_hostname=server.origin.host
    )
    try:
        await stream.send(b"GET /acct/messages/1 HTTP/1.1\r\n")  # a head not ended: the server only reads
        inner = stream.transport_stream
        if anyio_backend == "trio":
            assert hasattr(inner, "_trio_socket")
            assert _may_have_sent_all(stream) is False
        else:
            transport: Any = getattr(inner, "_transport", None)
            assert transport.get_write_buffer_size() == 0
            assert _may_have_sent_all(stream) is True
    finally:
        await anyio.aclose_forcefully(stream)


@pytest.mark.anyio
async def test_a_connection_dropped_with_bytes_still_buffered_never_delivers_them() -> None:
    """A write that timed out with bytes still buffered is NotSent because of this: the transport drops the
    connection with ``aclose_forcefully``, and what the event loop still held is discarded, not flushed. anyio
    4.16 aborts asyncio's transport; earlier releases flushed it (hence ``anyio>=4.16``). trio never hands on
    what its send did not send."""
    size = 64 * 1024 * 1024  # far more than the kernel's socket buffers take
    listener = socket.create_server(("127.0.0.2", 0))
    given_up, done = threading.Event(), threading.Event()
    received: list[int] = []

    def peer() -> None:
        conn, _ = listener.accept()
        with conn:
            given_up.wait(10)  # reads nothing until the client gave up on its write
            conn.settimeout(10)
            total = 0
            while data := conn.recv(1 << 20):
                total += len(data)
        received.append(total)
        done.set()

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    try:
        stream = await anyio.connect_tcp("127.0.0.2", listener.getsockname()[1])
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(stream.send, b"x" * size)
            await anyio.wait_all_tasks_blocked()  # the write is stuck: the peer reads nothing
            tasks.cancel_scope.cancel()
        await anyio.aclose_forcefully(stream)
        given_up.set()
        assert await anyio.to_thread.run_sync(done.wait, 10)
    finally:
        given_up.set()
        thread.join(10)
        listener.close()
    assert 0 < received[0] < size
