"""The conformance check every :class:`flowmailer.ports.ReportStore` must pass (ReportBook, SQLiteReportStore)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flowmailer.core import DataSet, ReportPiece, Sample, Stats, StatsQuery
from flowmailer.ports import ReportStore

__all__ = ["check_report_store"]

_HOUR = 3600
_T0 = 1_700_000_000 - 1_700_000_000 % 86400  # a UTC midnight


def _answer(start: int, end: int, base: int = 0) -> Stats:
    """Two counters, ``processed`` first, with a sample per hour from ``start`` up to ``end``."""
    hours = range(start, end, _HOUR)
    return Stats(
        (
            DataSet("processed", tuple(Sample(datetime.fromtimestamp(t, UTC), base + t // _HOUR % 97) for t in hours)),
            DataSet("delivered", tuple(Sample(datetime.fromtimestamp(t, UTC), base + t // _HOUR % 89) for t in hours)),
        )
    )


def _values(answer: Stats) -> dict[str, dict[int, int]]:
    return {d.name: {int(s.timestamp.timestamp()): s.value for s in d.samples} for d in answer.datasets}


def check_report_store(factory: Callable[[], ReportStore]) -> None:
    """Check a fresh, empty store from ``factory``; raises AssertionError saying what failed."""
    store = factory()
    hourly, flows = StatsQuery(_HOUR), StatsQuery(_HOUR, ["7"])
    h = [_T0 + i * _HOUR for i in range(13)]
    assert list(store.stretches(hourly)) == [], "a fresh store holds stretches"
    assert dict(store.held(hourly, h[0], h[12])) == {}, "a fresh store holds samples"

    store.keep(hourly, ReportPiece(h[0], h[3], settled=False), _answer(h[0], h[3]))
    assert list(store.stretches(hourly)) == [], "an unsettled answer was kept"

    first = _answer(h[0], h[3])
    store.keep(hourly, ReportPiece(h[0], h[3], settled=True), first)
    assert list(store.stretches(hourly)) == [(h[0], h[3])], "a settled answer's stretch is not kept"
    held = store.held(hourly, h[0], h[3])
    assert list(held) == ["processed", "delivered"], "counters come back in another order than Flowmailer's"
    assert {n: dict(v) for n, v in held.items()} == _values(first), "the samples come back changed"
    assert {n: dict(v) for n, v in store.held(hourly, h[1], h[2]).items()} == _values(_answer(h[1], h[2])), (
        "held() returns samples outside the stretch asked for"
    )

    store.keep(hourly, ReportPiece(h[3], h[5], settled=True), _answer(h[3], h[5]))
    store.keep(hourly, ReportPiece(h[10], h[12], settled=True), _answer(h[10], h[12]))
    assert list(store.stretches(hourly)) == [(h[0], h[5]), (h[10], h[12])], "touching stretches are not joined"
    store.keep(hourly, ReportPiece(h[5], h[10], settled=True), _answer(h[5], h[10]))
    assert list(store.stretches(hourly)) == [(h[0], h[12])], "a stretch filling a gap does not join both sides"
    store.keep(hourly, ReportPiece(h[2], h[4], settled=True), _answer(h[2], h[4]))  # asked again: nothing doubles
    assert list(store.stretches(hourly)) == [(h[0], h[12])], "keeping a stretch again changed the stretches"
    assert {n: dict(v) for n, v in store.held(hourly, h[0], h[12]).items()} == _values(_answer(h[0], h[12])), (
        "the samples of joined stretches are not all there, once each"
    )

    daily = StatsQuery(86400)
    assert list(store.stretches(daily)) == [], "another query (another interval) sees this one's stretches"
    assert list(store.stretches(flows)) == [], "another query (other flows) sees this one's stretches"
    store.keep(flows, ReportPiece(h[0], h[1], settled=True), _answer(h[0], h[1], base=1000))
    assert {n: dict(v) for n, v in store.held(flows, h[0], h[1]).items()} == _values(_answer(h[0], h[1], 1000))
    assert {n: dict(v) for n, v in store.held(hourly, h[0], h[1]).items()} == _values(_answer(h[0], h[1])), (
        "one query's samples overwrote another's"
    )

    later = _answer(h[0], h[1], base=500)
    store.keep(hourly, ReportPiece(h[0], h[1], settled=True), later)
    assert {n: dict(v) for n, v in store.held(hourly, h[0], h[1]).items()} == _values(later), (
        "a later answer for a kept interval did not replace the earlier one"
    )
    quiet = Stats((DataSet("processed", (Sample(datetime.fromtimestamp(h[0], UTC), 3),)), DataSet("bounced", ())))
    store.keep(daily, ReportPiece(h[0], h[0] + 86400, settled=True), quiet)
    assert {n: dict(v) for n, v in store.held(daily, h[0], h[0] + 86400).items()} == {"processed": {h[0]: 3}}, (
        "held() lists a counter without samples in the range, or mixes intervals"
    )
