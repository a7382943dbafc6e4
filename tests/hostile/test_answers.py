"""Answers no Flowmailer gives: trickled, endless, compressed, or naming another host or account. Both clients
stop within their limits, and a submit that may have gone through is reported ambiguous, never accepted."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest
import trio

from flowmailer.adapters import Urllib3Transport
from flowmailer.adapters.anyio_transport import AnyioTransport
from flowmailer.core import (
    Ambiguous,
    AmbiguousError,
    Host,
    ProtocolError,
    RetryPolicy,
    SubmitMessage,
    WireRequest,
)
from flowmailer.testing import FakeClock
from tests.adapters.tls_server import TlsServer, tls_server

from .server import (
    ACCOUNT,
    MESSAGE_ID,
    Flood,
    Trickle,
    TrioTicks,
    answer,
    async_client,
    created,
    run_trio,
    sync_client,
    token_answer,
)

MESSAGE = SubmitMessage(sender_address="a@example.com", recipient_address="b@example.com", subject="hi", text="x")
#: The head of a 201 that never ends its body.
ENDLESS = b"HTTP/1.1 201 Created\r\nLocation: /acct/messages/x\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TlsServer]:
    with tls_server(tmp_path) as s:
        yield s


def _submit() -> WireRequest:
    return WireRequest(
        "POST", Host.API, f"/{ACCOUNT}/messages/submit", body=b"{}", idempotent=False, answer_limit=64 * 1024
    )


# --- 1. a slow answer -----------------------------------------------------------------------------------------


def test_the_sync_transport_bounds_a_trickled_answer_as_a_whole(server: TlsServer) -> None:
    clock = FakeClock()
    trickle = Trickle(created(server, padding=300), lambda: clock.advance(1))
    server.answer_next_with(trickle)
    with closing(Urllib3Transport(ca_bundle=server.ca_bundle, read_timeout=3, clock=clock)) as transport:
        result = transport.send(_submit(), server.origin, server.addresses[0])
    assert isinstance(result, Ambiguous), result
    assert "after 3 s" in result.reason


def test_the_async_transport_bounds_a_trickled_answer_as_a_whole(server: TlsServer) -> None:
    results: list[object] = []

    async def main(clock: trio.testing.MockClock) -> None:
        ticks = TrioTicks(clock)
        trickle = Trickle(created(server, padding=300), ticks.tick)
        server.answer_next_with(trickle)
        transport = AnyioTransport(ca_bundle=server.ca_bundle, read_timeout=3, connect_timeout=1e6)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticks.run)
            results.append(await transport.send(_submit(), server.origin, server.addresses[0]))
            ticks.stop()
        await transport.aclose()

    run_trio(main)
    (result,) = results
    assert isinstance(result, Ambiguous), result
    assert "after 3 s" in result.reason


def test_the_retry_deadline_bounds_a_sync_submit_s_attempt(server: TlsServer) -> None:
    clock = FakeClock()
    server.answer_next(token_answer())
    trickle = Trickle(created(server, padding=300), lambda: clock.advance(1))
    server.answer_next_with(trickle)
    with (
        sync_client(server, clock, read_timeout=30, policy=RetryPolicy(deadline=10)) as client,
        pytest.raises(AmbiguousError) as e,
    ):
        client.submit(MESSAGE)
    assert "after 10 s" in str(e.value)  # the retry deadline's 10 s, not the read timeout's 30 s


def test_the_retry_deadline_bounds_an_async_submit_s_attempt(server: TlsServer) -> None:
    errors: list[AmbiguousError] = []

    async def main(clock: trio.testing.MockClock) -> None:
        ticks = TrioTicks(clock)
        server.answer_next(token_answer())
        trickle = Trickle(created(server, padding=300), ticks.tick)
        server.answer_next_with(trickle)
        async with (
            async_client(server, read_timeout=30, policy=RetryPolicy(deadline=10)) as client,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(ticks.run)
            try:
                await client.submit(MESSAGE)
            except AmbiguousError as e:
                errors.append(e)
            ticks.stop()

    run_trio(main)
    (error,) = errors
    assert "after 10 s" in str(error)


# --- 2. answers without a limit -------------------------------------------------------------------------------

#: Far more than any endpoint returns, counted as the server writes it.
HUGE = 40 * 1024 * 1024
#: What the kernel's socket buffers may hold on top of what the client read, at most.
BUFFERS = 16 * 1024 * 1024


def _huge_201() -> Flood:
    head = b"HTTP/1.1 201 Created\r\nLocation: /acct/messages/x\r\nContent-Length: %d\r\n\r\n" % HUGE
    return Flood(head, b"x" * 65536, HUGE)


def _endless_201() -> Flood:
    return Flood(ENDLESS, b"10000\r\n" + b"x" * 65536 + b"\r\n")


@pytest.mark.parametrize("flood", [_huge_201, _endless_201], ids=["content-length", "endless-chunked"])
def test_a_sync_submit_answered_at_length_is_ambiguous_and_read_no_further(
    server: TlsServer, flood: Callable[[], Flood]
) -> None:
    writer = flood()
    server.answer_next(token_answer())
    server.answer_next_with(writer)
    with sync_client(server, FakeClock()) as client, pytest.raises(AmbiguousError) as e:
        client.submit(MESSAGE)
    assert "longer than 65536 bytes" in str(e.value)
    assert writer.sent < BUFFERS


@pytest.mark.parametrize("flood", [_huge_201, _endless_201], ids=["content-length", "endless-chunked"])
def test_an_async_submit_answered_at_length_is_ambiguous_and_read_no_further(
    server: TlsServer, flood: Callable[[], Flood]
) -> None:
    writer = flood()
    server.answer_next(token_answer())
    server.answer_next_with(writer)
    errors: list[AmbiguousError] = []

    async def main(clock: trio.testing.MockClock) -> None:
        async with async_client(server) as client:
            try:
                await client.submit(MESSAGE)
            except AmbiguousError as e:
                errors.append(e)

    run_trio(main)
    (error,) = errors
    assert "longer than 65536 bytes" in str(error)
    assert writer.sent < BUFFERS


def _gzip_bomb() -> bytes:
    """Half a megabyte that decodes to half a gigabyte."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    return b"".join(packer.compress(zeros) for _ in range(512)) + packer.flush()


def _json_gzip() -> bytes:
    return gzip.compress(json.dumps({"id": MESSAGE_ID}).encode())


def _too_long_page() -> bytes:
    return answer("200 OK", body=b"[" + b" " * (16 * 1024 * 1024) + b"]")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (lambda: answer("200 OK", ("Content-Encoding", "gzip"), body=_gzip_bomb()), "gzip"),
        (lambda: answer("200 OK", ("Content-Encoding", "gzip"), body=_json_gzip()), "gzip"),
        (_too_long_page, "longer than 16777216 bytes"),
    ],
    ids=["gzip-bomb", "gzip-not-asked-for", "over-the-cap"],
)
def test_a_read_with_an_unreadable_answer_stops_with_a_protocol_error_asked_once(
    server: TlsServer, body: object, says: str
) -> None:
    assert callable(body)
    raw = body()
    server.answer_next(token_answer())
    server.answer_next(raw)
    with sync_client(server, FakeClock()) as client, pytest.raises(ProtocolError) as e:
        client.message(MESSAGE_ID)
    assert says in str(e.value)
    assert len(server.received()) == 2  # the token and one read: asking again would get the same

    server.answer_next(token_answer())
    server.answer_next(raw)
    errors: list[ProtocolError] = []

    async def main(clock: trio.testing.MockClock) -> None:
        async with async_client(server) as client:
            try:
                await client.message(MESSAGE_ID)
            except ProtocolError as e:
                errors.append(e)

    run_trio(main)
    (error,) = errors
    assert says in str(error)
    assert len(server.received()) == 4


# --- 6. Location ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        f"https://evil.example/{ACCOUNT}/messages/{MESSAGE_ID}",
        f"https://api.flowmailer.test:1/{ACCOUNT}/messages/{MESSAGE_ID}",
        f"/other-account/messages/{MESSAGE_ID}",
        f"/{ACCOUNT}/messages/..",
        f"/{ACCOUNT}/messages/not-an-id",
    ],
    ids=["other-host", "other-port", "other-account", "dot-dot", "not-an-id"],
)
def test_a_201_whose_location_is_not_ours_is_ambiguous_for_both_clients(server: TlsServer, location: str) -> None:
    server.answer_next(token_answer())
    server.answer_next(created(server, location))
    with sync_client(server, FakeClock()) as client, pytest.raises(AmbiguousError) as e:
        client.submit(MESSAGE)
    assert "without a usable Location" in str(e.value)

    server.answer_next(token_answer())
    server.answer_next(created(server, location))
    errors: list[AmbiguousError] = []

    async def main(clock: trio.testing.MockClock) -> None:
        async with async_client(server) as client:
            try:
                await client.submit(MESSAGE)
            except AmbiguousError as e:
                errors.append(e)

    run_trio(main)
    (error,) = errors
    assert "without a usable Location" in str(error)


def test_a_201_with_our_location_is_accepted_by_both_clients(server: TlsServer) -> None:
    server.answer_next(token_answer())
    server.answer_next(created(server))
    with sync_client(server, FakeClock()) as client:
        assert client.submit(MESSAGE) == MESSAGE_ID
    server.answer_next(token_answer())
    server.answer_next(created(server))
    ids: list[str] = []

    async def main(clock: trio.testing.MockClock) -> None:
        async with async_client(server) as client:
            ids.append(await client.submit(MESSAGE))

    run_trio(main)
    assert ids == [MESSAGE_ID]
