"""EventFollower over a scripted event source: oldest first from the stored cursor, saved only after hand-over."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.adapters import SQLiteCursorStore
from flowmailer.app import Client, EventFollower
from flowmailer.core import ConfigurationError, Credentials, MessageEvent, Page, ReferenceRange, SortOrder
from flowmailer.ports import CursorStore
from flowmailer.testing import FakeClock, MemoryCursorStore
from tests.client.scripted import API, LOGIN, ScriptedTransport, page, resolver


class Events:
    """``message_events`` as Flowmailer pages it oldest first: a Next-Range after every non-empty page."""

    def __init__(self, count: int = 0, *, next_range: bool = True) -> None:
        self.events: list[MessageEvent] = []
        self.requests: list[tuple[ReferenceRange, SortOrder | None]] = []
        self.next_range = next_range
        self.add(count)

    def add(self, count: int) -> None:
        for _ in range(count):
            n = len(self.events)
            self.events.append(MessageEvent(id=f"{n:012x}", message_id=f"m{n // 2}", type="DELIVERED"))

    def message_events(self, *, start: ReferenceRange, sortorder: SortOrder | None) -> Iterator[Page[MessageEvent]]:
        page_range: ReferenceRange | None = start
        while page_range is not None:
            self.requests.append((page_range, sortorder))
            after = int(page_range.reference, 16) + 1 if page_range.reference else 0
            items = tuple(self.events[after : after + page_range.count])
            if items and self.next_range:
                page_range = ReferenceRange(items[-1].id or "", page_range.count)
                yield Page(items, page_range)
            else:
                page_range = None
                yield Page(items)


def ids(events: list[MessageEvent]) -> list[int]:
    return [int(e.id or "", 16) for e in events]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CursorStore]:
    if request.param == "memory":
        yield MemoryCursorStore()
    else:
        with SQLiteCursorStore(tmp_path / "cursors.db") as sqlite:
            yield sqlite


def follower(source: Events, store: CursorStore, **kwargs: object) -> EventFollower:
    return EventFollower(source, store, page_size=3, clock=FakeClock(), **kwargs)  # type: ignore[arg-type]


def test_first_poll_reads_every_page_from_the_beginning_oldest_first(store: CursorStore) -> None:
    source = Events(7)
    assert ids(follower(source, store).poll()) == list(range(7))
    assert [r.reference for r, _ in source.requests] == ["", "000000000002", "000000000005", "000000000006"]


def test_every_request_asks_oldest_first_with_the_page_size(store: CursorStore) -> None:
    source = Events(4)
    follower(source, store).poll()
    assert {(r.count, order) for r, order in source.requests} == {(3, SortOrder.ASC)}


def test_poll_saves_no_cursor_before_the_caller_comes_back(store: CursorStore) -> None:
    source = Events(4)
    follower(source, store).poll()
    assert store.load("default") is None


def test_next_poll_saves_the_cursor_and_returns_only_new_events(store: CursorStore) -> None:
    source = Events(4)
    f = follower(source, store)
    f.poll()
    source.add(2)
    assert ids(f.poll()) == [4, 5]
    assert store.load("default") == "000000000003"


def test_a_poll_that_fails_midway_saves_nothing_and_the_next_delivers_from_the_same_place(store: CursorStore) -> None:
    source = Events(7)
    f = follower(source, store)

    class BrokenError(Exception):
        pass

    def failing(*, start: ReferenceRange, sortorder: SortOrder | None) -> Iterator[Page[MessageEvent]]:
        pages = Events.message_events(source, start=start, sortorder=sortorder)
        yield next(pages)
        raise BrokenError

    source.message_events = failing  # type: ignore[method-assign]
    with pytest.raises(BrokenError):
        f.poll()
    del source.message_events
    assert ids(f.poll()) == list(range(7))
    assert store.load("default") is None


def test_commit_saves_the_cursor_after_the_last_poll(store: CursorStore) -> None:
    source = Events(4)
    f = follower(source, store)
    f.poll()
    f.commit()
    assert store.load("default") == "000000000003"


def test_a_crash_before_the_save_delivers_again_and_skips_nothing(store: CursorStore) -> None:
    source = Events(4)
    follower(source, store).poll()  # handed over, then the process dies before the next poll or commit
    assert ids(follower(source, store).poll()) == [0, 1, 2, 3]


def test_a_second_follower_starts_where_the_first_committed(store: CursorStore) -> None:
    source = Events(4)
    first = follower(source, store)
    first.poll()
    first.commit()
    source.add(3)
    assert ids(follower(source, store).poll()) == [4, 5, 6]


def test_followers_under_different_names_keep_their_own_place(store: CursorStore) -> None:
    source = Events(4)
    first = follower(source, store, name="audit")
    first.poll()
    first.commit()
    assert ids(follower(source, store, name="bounces").poll()) == [0, 1, 2, 3]


def test_poll_with_nothing_new_saves_nothing_new(store: CursorStore) -> None:
    source = Events(2)
    f = follower(source, store)
    f.poll()
    assert f.poll() == []
    f.commit()
    assert store.load("default") == "000000000001"


def test_follow_hands_over_every_event_and_saves_after_each_page(store: CursorStore) -> None:
    source = Events(7)
    saved: list[str | None] = []
    got: list[MessageEvent] = []

    def handler(event: MessageEvent) -> None:
        got.append(event)
        saved.append(store.load("default"))

    handed = follower(source, store).follow(handler, idle_wait=1.0, stop=lambda: len(got) == 7)
    assert (handed, ids(got)) == (7, list(range(7)))
    assert saved == [None] * 3 + ["000000000002"] * 3 + ["000000000005"]
    assert store.load("default") == "000000000006"


def test_a_raising_handler_gets_the_page_again_from_a_new_follower(store: CursorStore) -> None:
    source = Events(7)
    got: list[int] = []

    def fails_on_4(event: MessageEvent) -> None:
        if event.id == "000000000004":
            raise RuntimeError("the handler's database went away")
        got.append(int(event.id or "", 16))

    with pytest.raises(RuntimeError):
        follower(source, store).follow(fails_on_4, idle_wait=1.0, stop=lambda: False)
    assert ids(follower(source, store).poll()) == [3, 4, 5, 6]
    assert got == [0, 1, 2, 3]


def test_follow_waits_idle_wait_only_after_a_poll_that_found_nothing(store: CursorStore) -> None:
    source = Events(4)
    clock = FakeClock()

    def stop() -> bool:
        if clock.slept == [2.5] and len(source.events) == 4:
            source.add(2)
        return len(clock.slept) == 3

    handed = EventFollower(source, store, page_size=3, clock=clock).follow(lambda event: None, idle_wait=2.5, stop=stop)
    # polls: 4 events (3 requests), nothing (1), 2 events (2), nothing (1), nothing (1)
    assert (handed, clock.slept, len(source.requests)) == (6, [2.5] * 3, 8)


def test_follow_starts_after_what_poll_handed_over(store: CursorStore) -> None:
    source = Events(4)
    f = follower(source, store)
    f.poll()
    source.add(1)
    got: list[MessageEvent] = []
    f.follow(got.append, idle_wait=1.0, stop=lambda: bool(got))
    assert ids(got) == [4]


def test_a_page_without_next_range_is_delivered_again_not_skipped(store: CursorStore) -> None:
    source = Events(2, next_range=False)
    clock = FakeClock()
    got: list[MessageEvent] = []
    EventFollower(source, store, clock=clock).follow(got.append, idle_wait=1.0, stop=lambda: len(clock.slept) == 2)
    assert (ids(got), clock.slept, store.load("default")) == ([0, 1, 0, 1], [1.0, 1.0], None)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"name": ""}, "name"), ({"page_size": 0}, "page_size"), ({"page_size": True}, "page_size")],
)
def test_bad_settings_are_refused_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        EventFollower(Events(), MemoryCursorStore(), clock=FakeClock(), **kwargs)  # type: ignore[arg-type]
    assert e.value.field == field


def test_a_bad_idle_wait_is_refused_before_anything_is_read() -> None:
    source = Events(3)
    with pytest.raises(ConfigurationError) as e:
        follower(source, MemoryCursorStore()).follow(lambda event: None, idle_wait=0.0, stop=lambda: False)
    assert (e.value.field, source.requests) == ("idle_wait", [])


@given(
    batches=st.lists(st.integers(0, 7), min_size=1, max_size=6),
    crashes=st.lists(st.integers(0, 40), max_size=4),
    page_size=st.integers(1, 4),
)
def test_restarted_followers_deliver_every_event_in_order_and_lose_none(
    batches: list[int], crashes: list[int], page_size: int
) -> None:
    """Events arrive in batches; a follower dies at the n-th hand-over and a new one takes its place."""
    source, store = Events(), MemoryCursorStore()
    delivered: list[int] = []
    crash_at = sorted(crashes)

    class DiedError(Exception):
        pass

    def handler(event: MessageEvent) -> None:
        if crash_at and len(delivered) == crash_at[0]:
            crash_at.pop(0)
            raise DiedError
        delivered.append(int(event.id or "", 16))

    for batch in batches:
        source.add(batch)
        done: Callable[[], bool] = lambda: delivered[-1:] == [len(source.events) - 1] or not source.events  # noqa: E731
        while not done():
            try:
                EventFollower(source, store, page_size=page_size, clock=FakeClock()).follow(
                    handler, idle_wait=1.0, stop=done
                )
            except DiedError:
                continue
    assert sorted(set(delivered)) == list(range(len(source.events)))
    firsts = [i for n, i in enumerate(delivered) if i not in delivered[:n]]
    assert firsts == sorted(firsts)
    redelivered = len(delivered) - len(set(delivered))
    assert redelivered <= (len(crashes) - len(crash_at)) * page_size


def test_a_page_of_events_shaped_as_flowmailer_writes_them_is_handed_over_and_the_cursor_moves_on() -> None:
    """Flowmailer types ``data`` as text and ``extraData`` as a list, and adds fields: none of it stalls a follower."""
    events: list[dict[str, object]] = [
        {"id": "E1", "messageId": "m1", "type": "DELIVERED", "data": "250 2.0.0 OK", "extraData": [{"k": 1}]},
        {"id": "E2", "type": "CLICKED", "data": None, "extraData": [], "userAgentDisplayName": "Firefox", "new": 1},
        {"id": "E3", "type": "SOMETHING_NEW", "received": "2026-01-31T12:00:00.000+0000", "inserted": "garbage"},
    ]
    transport = ScriptedTransport()
    transport.queue("/message_events", page(events, next_ref="0000000000000000000E3"), page([]))
    clock = FakeClock()
    client = Client(
        Credentials("acct", "id", "secret"),
        api_url=f"https://{API}",
        login_url=f"https://{LOGIN}",
        transport=transport,
        resolver=resolver(),
        clock=clock,
        rng=random.Random(7),
    )
    store = MemoryCursorStore()
    follower = EventFollower(client, store, clock=clock)
    got = follower.poll()
    assert [e.id for e in got] == ["E1", "E2", "E3"]
    assert (got[0].data, got[0].extra_data, got[1].user_agent_display_name) == ("250 2.0.0 OK", [{"k": 1}], "Firefox")
    assert (got[1].extra, got[2].type, got[2].extra) == ({"new": 1}, "SOMETHING_NEW", {"inserted": "garbage"})
    follower.commit()
    assert store.load("default") == "0000000000000000000E3"
