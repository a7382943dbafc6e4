"""The report book: every report right, every settled stretch of time asked for once, the unsettled end always."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.core import (
    ConfigurationError,
    DataSet,
    DateRange,
    ReportBook,
    ReportPiece,
    ReportPolicy,
    Sample,
    Stats,
    StatsQuery,
    assemble_report,
    plan_report,
)
from flowmailer.testing import check_report_store

HOUR = 3600
NAMES = ("processed", "delivered")
BASE = 1_800_000_000 - 1_800_000_000 % 86400  # a UTC midnight in 2027


def _at(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _range(start: int, end: int) -> DateRange:
    return DateRange(_at(start), _at(end))


class Server:
    """Counts that stay put once their interval is settled and change with every request before that."""

    def __init__(self, interval: int, settle: float) -> None:
        self.interval = interval
        self.settle = settle
        self.asked: list[ReportPiece] = []

    def value(self, name: str, t: int, now: float) -> int:
        final = t + self.interval <= now - self.settle
        key = f"{name}/{t}" if final else f"{name}/{t}/{now}"
        return int(hashlib.sha256(key.encode()).hexdigest()[:4], 16)

    def answer(self, start: int, end: int, now: float) -> Stats:
        times = range(start, end, self.interval)
        return Stats(tuple(DataSet(n, tuple(Sample(_at(t), self.value(n, t, now)) for t in times)) for n in NAMES))


@st.composite
def visits(draw: st.DrawFn) -> tuple[int, int, float, list[tuple[int, int, float]]]:
    """An interval, a settle time, a request length cap, and requests (start, end, now) with time moving on."""
    interval = draw(st.sampled_from([60, HOUR, 86400]))
    settle = draw(st.sampled_from([0.0, 2.5 * interval, 7 * 86400.0]))
    max_samples = draw(st.integers(min_value=1, max_value=50))
    now = float(BASE + draw(st.integers(min_value=0, max_value=200)) * interval)
    requests = []
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        now += draw(st.integers(min_value=0, max_value=20 * interval))
        start = BASE + draw(st.integers(min_value=-30, max_value=220)) * interval
        end = start + draw(st.integers(min_value=1, max_value=60)) * interval
        requests.append((start, end, now))
    return interval, max_samples, settle, requests


def _visit(
    book: ReportBook, server: Server, query: StatsQuery, span: DateRange, now: float, policy: ReportPolicy | None = None
) -> Stats:
    """What a client does: read what is held, fetch each piece and keep it as it arrives, build the report."""
    start, end = query.span(span)
    held = book.held(query, start, end)
    fetched = {}
    for piece in _plan(book, query, span, now, policy):
        fetched[piece] = server.answer(piece.start, piece.end, now)
        server.asked.append(piece)
        book.keep(query, piece, fetched[piece])
    return assemble_report(query, span, held, fetched)


def _plan(
    book: ReportBook, query: StatsQuery, span: DateRange, now: float, policy: ReportPolicy | None = None
) -> tuple[ReportPiece, ...]:
    return plan_report(query, span, now, policy or ReportPolicy(), book.stretches(query))


@given(visits())
def test_every_report_is_right_and_no_settled_interval_is_asked_for_twice(
    visit: tuple[int, int, float, list[tuple[int, int, float]]],
) -> None:
    interval, max_samples, settle, requests = visit
    server = Server(interval, settle)
    query = StatsQuery(interval)
    policy = ReportPolicy(settle=settle, max_samples=max_samples)
    book = ReportBook()
    settled_asked: set[int] = set()
    for start, end, now in requests:
        before = len(server.asked)
        report = _visit(book, server, query, _range(start, end), now, policy)
        assert report == server.answer(start, end, now)
        for p in server.asked[before:]:
            assert start <= p.start < p.end <= end
            assert p.start % interval == 0
            assert p.end % interval == 0
            assert (p.end - p.start) // interval <= max_samples
            assert p.settled == (p.end <= now - settle)  # a piece is wholly settled or wholly not
            if p.settled:
                buckets = set(range(p.start, p.end, interval))
                assert not buckets & settled_asked, "a settled interval was asked for again"
                settled_asked |= buckets


def test_a_dashboard_refreshed_every_hour_asks_only_for_the_unsettled_days() -> None:
    day = 86400
    query = StatsQuery(day)
    server = Server(day, 7 * 86400.0)
    book = ReportBook()
    now = float(BASE + 40 * day + 1800)
    last_30_days = _range(BASE + 11 * day, BASE + 41 * day)
    for _ in range(24):
        assert _visit(book, server, query, last_30_days, now) == server.answer(BASE + 11 * day, BASE + 41 * day, now)
        now += HOUR
    unsettled_week = ReportPiece(BASE + 33 * day, BASE + 41 * day, settled=False)
    assert server.asked == [ReportPiece(BASE + 11 * day, BASE + 33 * day, settled=True)] + [unsettled_week] * 24


def test_what_was_kept_before_a_failure_is_not_asked_for_again() -> None:
    query, span, now = StatsQuery(HOUR), _range(BASE, BASE + 4 * HOUR), float(BASE + 100 * HOUR)
    server = Server(HOUR, 0.0)
    policy, book = ReportPolicy(settle=0.0, max_samples=2), ReportBook()
    first, second = _plan(book, query, span, now, policy)
    book.keep(query, first, server.answer(first.start, first.end, now))
    # the second request failed; the next report asks only for it
    assert _plan(book, query, span, now, policy) == (second,)


def test_the_least_recently_used_query_is_forgotten_first() -> None:
    day_of_hours = _range(BASE, BASE + 24 * HOUR)
    now = float(BASE + 100 * HOUR)
    server = Server(HOUR, 0.0)
    policy, book = ReportPolicy(settle=0.0), ReportBook(max_kept_samples=2 * 2 * 24)  # two queries' worth
    a, b, c = StatsQuery(HOUR), StatsQuery(HOUR, [7]), StatsQuery(HOUR, [8])
    for query in (a, b, a, c):  # a used again after b: b is the least recently used when c arrives
        _visit(book, server, query, day_of_hours, now, policy)
    assert book.queries() == (a, c)
    assert book.kept_samples == 2 * 2 * 24
    assert _plan(book, b, day_of_hours, now, policy) != ()
    assert _plan(book, a, day_of_hours, now, policy) == ()


def test_one_query_beyond_the_limit_keeps_its_newest_intervals() -> None:
    now = float(BASE + 100 * HOUR)
    server = Server(HOUR, 0.0)
    policy, book = ReportPolicy(settle=0.0), ReportBook(max_kept_samples=2 * 10)
    query = StatsQuery(HOUR)
    _visit(book, server, query, _range(BASE, BASE + 10 * HOUR), now, policy)
    _visit(book, server, query, _range(BASE + 20 * HOUR, BASE + 25 * HOUR), now, policy)  # apart: its own stretch
    assert book.kept_samples == 2 * 10
    assert _plan(book, query, _range(BASE + 5 * HOUR, BASE + 25 * HOUR), now, policy) == (
        ReportPiece(BASE + 10 * HOUR, BASE + 20 * HOUR, settled=True),
    )
    assert _plan(book, query, _range(BASE, BASE + 5 * HOUR), now, policy) == (
        ReportPiece(BASE, BASE + 5 * HOUR, settled=True),
    )


def test_a_report_larger_than_what_is_kept_is_still_whole() -> None:
    now = float(BASE + 1000 * HOUR)
    server = Server(HOUR, 0.0)
    policy, book = ReportPolicy(settle=0.0, max_samples=7), ReportBook(max_kept_samples=10)
    span = _range(BASE, BASE + 100 * HOUR)
    assert _visit(book, server, StatsQuery(HOUR), span, now, policy) == server.answer(BASE, BASE + 100 * HOUR, now)
    assert book.kept_samples <= 10


def test_what_a_report_held_before_it_kept_more_is_in_the_report() -> None:
    now = float(BASE + 1000 * HOUR)
    server = Server(HOUR, 0.0)
    policy, book = ReportPolicy(settle=0.0), ReportBook(max_kept_samples=2 * 15)
    query = StatsQuery(HOUR)
    _visit(book, server, query, _range(BASE, BASE + 10 * HOUR), now, policy)
    # keeping hours 10-20 pushes hours 0-4 out of the book, but this report had them in hand
    report = _visit(book, server, query, _range(BASE, BASE + 20 * HOUR), now, policy)
    assert report == server.answer(BASE, BASE + 20 * HOUR, now)


def test_nothing_is_kept_for_a_query_with_nothing_settled() -> None:
    book = ReportBook()
    server, now = Server(HOUR, 7 * 86400.0), float(BASE)
    _visit(book, server, StatsQuery(HOUR), _range(BASE - 2 * HOUR, BASE), now)
    assert book.queries() == ()


def test_the_same_flows_in_another_order_are_the_same_query() -> None:
    assert StatsQuery(HOUR, [2, "1", 2]) == StatsQuery(HOUR, ("1", "2"))


def test_flow_ids_as_one_string_are_refused_not_split_into_characters() -> None:
    with pytest.raises(ConfigurationError) as e:
        StatsQuery(HOUR, "12")
    assert e.value.field == "flow_ids"
    assert "['12']" in e.value.fix


def test_a_range_that_is_not_a_date_range_is_refused() -> None:
    with pytest.raises(ConfigurationError) as e:
        StatsQuery(HOUR).span((_at(BASE), _at(BASE + HOUR)))  # type: ignore[arg-type]
    assert e.value.field == "daterange"


def test_a_range_off_the_interval_boundaries_is_refused_with_the_nearest_that_fits() -> None:
    with pytest.raises(ConfigurationError) as e:
        plan_report(StatsQuery(86400), _range(BASE + HOUR, BASE + 86400 + HOUR), float(BASE), ReportPolicy(), [])
    assert e.value.field == "daterange"
    assert f"{_range(BASE, BASE + 2 * 86400).param()}" in e.value.fix


@pytest.mark.parametrize("interval", [0, -60, 1.5, True, "3600"])
def test_an_interval_that_is_not_whole_positive_seconds_is_refused(interval: object) -> None:
    with pytest.raises(ConfigurationError) as e:
        StatsQuery(interval)  # type: ignore[arg-type]
    assert e.value.field == "interval"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"settle": -1.0}, "settle"),
        ({"settle": float("nan")}, "settle"),
        ({"settle": "x"}, "settle"),
        ({"max_samples": 0}, "max_samples"),
        ({"max_samples": 2.5}, "max_samples"),
        ({"max_samples": True}, "max_samples"),
    ],
)
def test_a_policy_out_of_range_is_refused(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        ReportPolicy(**kwargs)  # type: ignore[arg-type]
    assert e.value.field == f"ReportPolicy.{field}"


def test_stats_by_name_and_totals() -> None:
    stats = Stats((DataSet("sent", (Sample(_at(BASE), 2), Sample(_at(BASE + HOUR), 3))), DataSet("bounced")))
    assert stats["sent"].total == 5
    assert stats.totals() == {"sent": 5, "bounced": 0}
    with pytest.raises(KeyError):
        stats["opened"]


def test_the_book_passes_the_report_store_conformance_suite() -> None:
    check_report_store(ReportBook)


@pytest.mark.parametrize("limit", [0, 2.5, True])
def test_a_book_that_could_keep_nothing_is_refused(limit: object) -> None:
    with pytest.raises(ConfigurationError) as e:
        ReportBook(limit)  # type: ignore[arg-type]
    assert e.value.field == "max_kept_samples"


def test_a_query_key_names_its_interval_and_flows() -> None:
    assert StatsQuery(86400).key == "86400"
    assert StatsQuery(3600, [2, 1]).key == "3600;flows=1,2"
