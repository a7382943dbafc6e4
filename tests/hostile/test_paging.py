"""Page cursors that point back, or at themselves, or never end: each listing stops with an error naming its
endpoint, after a counted number of requests, in both clients and in the EventFollower."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from flowmailer.app import EventFollower
from flowmailer.core import ProtocolError
from flowmailer.testing import FakeClock, MemoryCursorStore
from tests.adapters.tls_server import TlsServer, tls_server

from .server import answer, async_client, run_trio, sync_client, token_answer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TlsServer]:
    with tls_server(tmp_path) as s:
        yield s


def page(first: int, next_ref: str | None, count: int = 2) -> bytes:
    items = [{"id": f"e{i}", "messageId": f"m{i}", "type": "DELIVERED"} for i in range(first, first + count)]
    headers = () if next_ref is None else (("Next-Range", f"items={next_ref}:100"),)
    return answer("206 Partial Content", *headers, body=json.dumps(items).encode())


def pages_to(server: TlsServer, *answers: bytes) -> None:
    server.answer_next(token_answer())
    for raw in answers:
        server.answer_next(raw)


#: The first page points on to A, A points back to the start: read for ever before.
BACK = (page(0, "A"), page(2, ""))
#: A points at itself.
ITSELF = (page(0, "A"), page(2, "A"))


@pytest.mark.parametrize("answers", [BACK, ITSELF], ids=["back", "itself"])
def test_message_events_stops_at_a_cursor_that_does_not_move_on(server: TlsServer, answers: tuple[bytes, ...]) -> None:
    pages_to(server, *answers)
    with sync_client(server, FakeClock()) as client:
        pages = client.message_events()
        seen = [next(pages)]
        with pytest.raises(ProtocolError) as e:
            next(pages)
    assert "message_events" in str(e.value)
    assert len(seen) == 1  # the page with the bad cursor is not handed over
    assert len(server.received()) == 3

    pages_to(server, *answers)
    got: list[object] = []
    errors: list[ProtocolError] = []

    async def main(clock: trio.testing.MockClock) -> None:
        async with async_client(server) as client:
            try:
                async for p in client.message_events():
                    got.append(p)  # noqa: PERF401 - the pages before the error count
            except ProtocolError as e:
                errors.append(e)

    run_trio(main)
    (error,) = errors
    assert "message_events" in str(error)
    assert len(got) == 1
    assert len(server.received()) == 6


def test_a_tag_search_stops_at_a_repeating_cursor_and_after_max_pages(server: TlsServer) -> None:
    def message_page(first: int, next_ref: str | None) -> bytes:
        items = [{"id": f"m{i}"} for i in range(first, first + 2)]
        headers = () if next_ref is None else (("Next-Range", f"items={next_ref}:100"),)
        return answer("206 Partial Content", *headers, body=json.dumps(items).encode())

    pages_to(server, message_page(0, "A"), message_page(2, "B"), message_page(4, "A"))
    with sync_client(server, FakeClock()) as client, pytest.raises(ProtocolError) as e:
        list(client.messages_by_tag("ref:x"))
    assert "messages_by_tag" in str(e.value)
    assert len(server.received()) == 4

    pages_to(server, message_page(0, "A"), message_page(2, "B"))  # a third is never asked for
    with sync_client(server, FakeClock()) as client, pytest.raises(ProtocolError) as e:
        list(client.messages_by_tag("ref:x", max_pages=2))
    assert "past 2 pages" in str(e.value)
    assert len(server.received()) == 4 + 3

    pages_to(server, message_page(0, "A"), message_page(2, "B"), message_page(4, "A"))
    for raw in (message_page(0, "A"), message_page(2, "B")):
        server.answer_next(raw)  # the same client: its token serves on
    errors: list[ProtocolError] = []

    async def main(clock: trio.testing.MockClock) -> None:
        async with async_client(server) as client:
            for limit in (100, 2):
                try:
                    async for _ in client.messages_by_tag("ref:x", max_pages=limit):
                        pass
                except ProtocolError as e:
                    errors.append(e)

    run_trio(main)
    repeated, too_many = errors
    assert "messages_by_tag" in str(repeated)
    assert "past 2 pages" in str(too_many)


def test_the_event_follower_never_hands_over_events_twice_when_a_later_poll_points_back(server: TlsServer) -> None:
    store = MemoryCursorStore()
    # Poll 1 reads from the start to A, then an empty page ends it. Poll 2, from A, is pointed back to the start.
    server.answer_next(token_answer())
    server.answer_next(page(0, "A"))
    server.answer_next(answer("206 Partial Content", body=b"[]"))
    server.answer_next(page(2, ""))
    with sync_client(server, FakeClock()) as client:
        follower = EventFollower(client, store, clock=FakeClock())
        handed = [e.id for e in follower.poll()]
        with pytest.raises(ProtocolError) as e:
            follower.poll()
    assert handed == ["e0", "e1"]
    assert "message_events" in str(e.value)
    assert store.load("default") == "A"  # the cursor stays where the events handed over end
