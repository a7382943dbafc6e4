"""Statistics reports without overlapping requests: a stretch of time that is over is asked for once.

Flowmailer's guidelines ask clients to "avoid unnecessary load, for instance by requesting the same reports
repeatedly with large overlapping dateranges". A dashboard that shows the last 30 days every hour would ask for
29 days it already has, 24 times a day. The :class:`ReportBook` splits a requested range at interval boundaries
into what it holds and what it lacks, plans requests only for the gaps, and keeps the answers for the part of
time that is *settled* (ended more than :attr:`ReportPolicy.settle` ago). The unsettled end of a range (today,
or the last week while bounces still arrive) is fetched every time and never kept.

Samples are only comparable across requests when they fall on the same boundaries, so a range must start and
end on multiples of its interval counted from the epoch (whole UTC hours for 3600, UTC midnights for 86400).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import attrs

from flowmailer.core._checks import require
from flowmailer.core._errors import ConfigurationError
from flowmailer.core._ranges import DateRange

__all__ = ["DataSet", "ReportBook", "ReportPiece", "ReportPolicy", "Sample", "Stats", "StatsQuery"]

#: A week: bounces can arrive that long after a message was sent, changing the counts of its interval.
_WEEK = 7 * 86400.0


@attrs.frozen
class Sample:
    """One interval's count; ``timestamp`` is where the interval starts."""

    timestamp: datetime
    value: int


@attrs.frozen
class DataSet:
    """One counter (``processed``, ``delivered``, ...) over time, a sample per interval."""

    name: str
    samples: tuple[Sample, ...] = ()

    @property
    def total(self) -> int:
        return sum(s.value for s in self.samples)


@attrs.frozen
class Stats:
    """What ``messagestats`` answers: one data set per counter."""

    datasets: tuple[DataSet, ...] = ()

    def __getitem__(self, name: str) -> DataSet:
        for d in self.datasets:
            if d.name == name:
                return d
        raise KeyError(name)

    def totals(self) -> dict[str, int]:
        """Each counter summed over the whole range."""
        return {d.name: d.total for d in self.datasets}


def _check_interval(interval: object) -> None:
    ok = isinstance(interval, int) and not isinstance(interval, bool) and interval >= 1
    require(ok, "interval", f"{interval!r} is not a whole number of seconds", "give e.g. 3600 (hourly) or 86400")


@attrs.frozen
class StatsQuery:
    """Everything that makes two reports comparable except their time range: what a kept answer is filed under."""

    interval: int = 86400
    flow_ids: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        _check_interval(self.interval)


@attrs.frozen
class ReportPolicy:
    """When an interval counts as final, how long one request may be, and how many reports are kept."""

    #: An interval that ended longer ago than this is final: its answer is kept and never asked for again.
    settle: float = _WEEK
    #: Intervals in one request; a longer gap is asked for in several.
    max_samples: int = 10_000
    #: Queries (interval and filters) kept; the least recently used goes first.
    max_queries: int = 32

    def __attrs_post_init__(self) -> None:
        require(
            math.isfinite(self.settle) and self.settle >= 0,
            "ReportPolicy.settle",
            f"{self.settle!r} is not a finite number of seconds",
            "give e.g. 604800 (a week, while bounces still arrive)",
        )
        for name in ("max_samples", "max_queries"):
            value = getattr(self, name)
            require(
                isinstance(value, int) and value >= 1, f"ReportPolicy.{name}", f"{value!r} is below 1", "give 1 or more"
            )


@attrs.frozen
class ReportPiece:
    """One request to make: ``[start, end)`` in epoch seconds; ``settled`` answers are kept."""

    start: int
    end: int
    settled: bool

    @property
    def daterange(self) -> DateRange:
        return DateRange(datetime.fromtimestamp(self.start, UTC), datetime.fromtimestamp(self.end, UTC))


@attrs.frozen
class _Kept:
    """A settled stretch ``[start, end)`` and its samples by counter, in time order."""

    start: int
    end: int
    samples: Mapping[str, tuple[Sample, ...]]


def _epoch(value: datetime, field: str, interval: int) -> int:
    seconds = value.timestamp()
    if seconds % interval:
        raise ConfigurationError(
            "daterange",
            f"its {field} {value.isoformat()} is not on a multiple of the {interval} s interval",
            "start and end on interval boundaries counted from the epoch: whole UTC hours for 3600, UTC midnight "
            "for 86400",
        )
    return int(seconds)


def _span(query: StatsQuery, daterange: DateRange) -> tuple[int, int]:
    return _epoch(daterange.start, "start", query.interval), _epoch(daterange.end, "end", query.interval)


def _in(samples: Iterable[Sample], start: int, end: int) -> tuple[Sample, ...]:
    return tuple(s for s in samples if start <= s.timestamp.timestamp() < end)


@attrs.frozen
class ReportBook:
    """The kept answers, by query, most recently used last; a value: ``assemble`` returns the next book."""

    policy: ReportPolicy = ReportPolicy()
    kept: tuple[tuple[StatsQuery, tuple[_Kept, ...]], ...] = ()

    def _kept_for(self, query: StatsQuery) -> tuple[_Kept, ...]:
        return next((pieces for q, pieces in self.kept if q == query), ())

    def plan(self, query: StatsQuery, daterange: DateRange, now: float) -> tuple[ReportPiece, ...]:
        """The requests still needed for ``daterange`` at ``now`` (epoch seconds), oldest first.

        Kept stretches are skipped; each gap is split where settled time ends and into at most ``max_samples``
        intervals a request. A ConfigurationError names ``daterange`` if it is not on interval boundaries.
        """
        start, end = _span(query, daterange)
        step = query.interval
        settled_until = math.floor((now - self.policy.settle) / step) * step
        longest = self.policy.max_samples * step
        pieces: list[ReportPiece] = []
        cursor = start
        for kept in (*self._kept_for(query), _Kept(end, end, {})):  # in time order; the last one closes the range
            gap_end = min(kept.start, end)
            settled_part = (cursor, min(gap_end, settled_until), True)
            open_part = (max(cursor, settled_until), gap_end, False)
            for lo, hi, settled in (settled_part, open_part):
                pieces.extend(ReportPiece(a, min(a + longest, hi), settled) for a in range(lo, hi, longest))
            cursor = max(cursor, kept.end)
            if cursor >= end:
                break
        return tuple(pieces)

    def assemble(
        self, query: StatsQuery, daterange: DateRange, fetched: Mapping[ReportPiece, Stats]
    ) -> tuple[Stats, ReportBook]:
        """The report for ``daterange`` from kept answers and ``fetched`` (the answers to ``plan``'s pieces), and
        the book that keeps the settled ones."""
        start, end = _span(query, daterange)
        kept = list(self._kept_for(query))
        for piece, stats in fetched.items():
            if piece.settled:
                samples = {d.name: _in(d.samples, piece.start, piece.end) for d in stats.datasets}
                kept.append(_Kept(piece.start, piece.end, samples))
        merged = _merge(kept)
        sources: list[tuple[int, Mapping[str, tuple[Sample, ...]]]] = [(k.start, k.samples) for k in merged]
        sources += [(p.start, {d.name: d.samples for d in s.datasets}) for p, s in fetched.items() if not p.settled]
        sources.sort(key=lambda source: source[0])
        names = list(dict.fromkeys(name for _, samples in sources for name in samples))
        datasets = tuple(
            DataSet(name, tuple(s for _, samples in sources for s in _in(samples.get(name, ()), start, end)))
            for name in names
        )
        others = tuple((q, pieces) for q, pieces in self.kept if q != query)
        book = attrs.evolve(self, kept=(*others, (query, tuple(merged)))[-self.policy.max_queries :])
        return Stats(datasets), book


def _merge(kept: list[_Kept]) -> list[_Kept]:
    """Kept stretches in time order, touching ones joined (fewer pieces to walk)."""
    merged: list[_Kept] = []
    for k in sorted(kept, key=lambda k: k.start):
        if merged and merged[-1].end >= k.start:
            last = merged[-1]
            names = dict.fromkeys((*last.samples, *k.samples))
            samples = {n: (*last.samples.get(n, ()), *_in(k.samples.get(n, ()), last.end, k.end)) for n in names}
            merged[-1] = _Kept(last.start, max(last.end, k.end), samples)
        else:
            merged.append(k)
    return merged
