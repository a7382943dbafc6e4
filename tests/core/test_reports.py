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
)

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

    def fetch(self, pieces: tuple[ReportPiece, ...], now: float) -> dict[ReportPiece, Stats]:
        self.asked.extend(pieces)
        return {p: self.answer(p.start, p.end, now) for p in pieces}


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


@given(visits())
def test_every_report_is_right_and_no_settled_interval_is_asked_for_twice(
    visit: tuple[int, int, float, list[tuple[int, int, float]]],
) -> None:
    interval, max_samples, settle, requests = visit
    server = Server(interval, settle)
    query = StatsQuery(interval)
    book = ReportBook(ReportPolicy(settle=settle, max_samples=max_samples))
    settled_asked: set[int] = set()
    for start, end, now in requests:
        pieces = book.plan(query, _range(start, end), now)
        for p in pieces:
            assert start <= p.start < p.end <= end
            assert p.start % interval == 0
            assert p.end % interval == 0
            assert (p.end - p.start) // interval <= max_samples
            assert p.settled == (p.end <= now - settle)  # a piece is wholly settled or wholly not
            if p.settled:
                buckets = set(range(p.start, p.end, interval))
                assert not buckets & settled_asked, "a settled interval was asked for again"
                settled_asked |= buckets
        report, book = book.assemble(query, _range(start, end), server.fetch(pieces, now))
        assert report == server.answer(start, end, now)


def test_a_dashboard_refreshed_every_hour_asks_only_for_the_unsettled_days() -> None:
    query = StatsQuery(86400)
    server = Server(86400, 7 * 86400.0)
    book = ReportBook()
    now = float(BASE + 40 * 86400 + 1800)
    for _ in range(24):
        last_30_days = _range(BASE + 11 * 86400, BASE + 41 * 86400)
        pieces = book.plan(query, last_30_days, now)
        report, book = book.assemble(query, last_30_days, server.fetch(pieces, now))
        assert report == server.answer(BASE + 11 * 86400, BASE + 41 * 86400, now)
        now += HOUR
    day = 86400
    unsettled_week = ReportPiece(BASE + 33 * day, BASE + 41 * day, settled=False)
    assert server.asked == [ReportPiece(BASE + 11 * day, BASE + 33 * day, settled=True)] + [unsettled_week] * 24


def test_queries_are_kept_apart_and_the_least_recently_used_is_forgotten() -> None:
    settle_nothing = ReportPolicy(settle=0.0, max_queries=2)
    book = ReportBook(settle_nothing)
    span, now = _range(BASE, BASE + 2 * HOUR), float(BASE + 10 * HOUR)
    server = Server(HOUR, 0.0)
    for query in (StatsQuery(HOUR), StatsQuery(HOUR, ("7",)), StatsQuery(HOUR, ("8",))):
        assert book.plan(query, span, now) == (ReportPiece(BASE, BASE + 2 * HOUR, True),)
        _, book = book.assemble(query, span, server.fetch(book.plan(query, span, now), now))
        assert book.plan(query, span, now) == ()
    assert [q for q, _ in book.kept] == [StatsQuery(HOUR, ("7",)), StatsQuery(HOUR, ("8",))]
    assert book.plan(StatsQuery(HOUR), span, now) != ()


def test_a_range_off_the_interval_boundaries_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigurationError) as e:
        ReportBook().plan(StatsQuery(86400), _range(BASE + HOUR, BASE + 86400), float(BASE))
    assert e.value.field == "daterange"
    assert "UTC midnight" in e.value.fix


@pytest.mark.parametrize("interval", [0, -60, 1.5, True, "3600"])
def test_an_interval_that_is_not_whole_positive_seconds_is_refused(interval: object) -> None:
    with pytest.raises(ConfigurationError) as e:
        StatsQuery(interval)  # type: ignore[arg-type]
    assert e.value.field == "interval"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"settle": -1.0}, "settle"), ({"settle": float("nan")}, "settle"), ({"max_samples": 0}, "max_samples")],
)
def test_a_policy_out_of_range_is_refused(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        ReportPolicy(**kwargs)  # type: ignore[arg-type]
    assert e.value.field == f"ReportPolicy.{field}"


def test_stats_by_name_and_totals() -> None:
    stats = Stats((DataSet("sent", (Sample(_at(BASE), 2), Sample(_at(BASE + HOUR), 3))), DataSet("bounced")))
    assert stats["sent"].total == 5
    assert stats.totals() == {"sent": 5, "bounced": 0}
    with pytest.raises(KeyError):
        stats["opened"]
