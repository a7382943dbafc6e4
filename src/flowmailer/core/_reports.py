"""Statistics reports without overlapping requests: a stretch of time that is over is asked for once.

Flowmailer's guidelines ask clients to "avoid unnecessary load, for instance by requesting the same reports
repeatedly with large overlapping dateranges". A dashboard that shows the last 30 days every hour would ask for
29 days it already has, 24 times a day. ``plan_report`` splits a requested range at interval boundaries into
what a report store (:class:`ReportBook` in memory, or SQLite) holds and what it lacks, and plans requests only
for the gaps; the store keeps the answers for the part of time that is *settled* (ended more than
:attr:`ReportPolicy.settle` ago). The unsettled end of a range (today,
or the last week while bounces still arrive) is asked for every time and never kept.

Samples are only comparable across requests when they fall on the same boundaries, so a range must start and
end on multiples of its interval counted from the epoch (whole UTC hours for 3600, UTC midnights for 86400), and
an answer whose samples are not on its request's boundaries is refused (``interpret_stats``) rather than merged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from flowmailer.core._checks import require
from flowmailer.core._errors import ConfigurationError, FlowmailerError
from flowmailer.core._ranges import DateRange

__all__ = [
    "DataSet",
    "ReportBook",
    "ReportPiece",
    "ReportPolicy",
    "ReportStoreError",
    "Sample",
    "Stats",
    "StatsQuery",
    "assemble_report",
    "merge_stretches",
    "plan_report",
]


class ReportStoreError(FlowmailerError):
    """A report store's storage failed (disk, lock timeout); what was being kept may not have been."""


#: A week: bounces can arrive that long after a message was sent, changing the counts of its interval.
_WEEK = 7 * 86400.0


@attrs.frozen
class Sample:
    """One interval's count; ``timestamp`` is where the interval starts. Flowmailer may leave ``value`` null for an
    interval without messages: it reads as 0, and a value that is no count at all is kept in ``extra``."""

    timestamp: datetime
    value: int = attrs.field(default=0, metadata={"strict": True})
    extra: Mapping[str, Any] = attrs.field(factory=dict, hash=False, kw_only=True)


@attrs.frozen
class DataSet:
    """One counter (``processed``, ``delivered``, ...) over time, a sample per interval Flowmailer reported."""

    name: str
    #: Strict: a sample that cannot be read must refuse the report, never leave a count out of it.
    samples: tuple[Sample, ...] = attrs.field(default=(), metadata={"strict": True})
    extra: Mapping[str, Any] = attrs.field(factory=dict, hash=False, kw_only=True)

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


def _whole(value: object, field: str, fix: str) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    require(ok, field, f"{value!r} is not a whole number of at least 1", fix)


def _flow_ids(ids: Iterable[int | str]) -> tuple[str, ...]:
    if isinstance(ids, str | bytes):
        raise ConfigurationError("flow_ids", f"{ids!r} is one string, not a list of ids", f"give a list: [{ids!r}]")
    return tuple(sorted({str(i) for i in ids}))


@attrs.frozen
class StatsQuery:
    """Everything that makes two reports comparable except their time range: what a kept answer is filed under.

    ``flow_ids`` are kept sorted and without repeats, so the same flows in another order are the same query.
    """

    interval: int = 86400
    flow_ids: tuple[str, ...] = attrs.field(default=(), converter=_flow_ids)

    def __attrs_post_init__(self) -> None:
        _whole(self.interval, "interval", "give seconds between samples, e.g. 3600 (hourly) or 86400 (daily)")

    @property
    def key(self) -> str:
        """What a store files kept answers under: ``86400`` or ``3600;flows=1,2``."""
        return f"{self.interval};flows={','.join(self.flow_ids)}" if self.flow_ids else str(self.interval)

    def fitting(self, daterange: DateRange) -> DateRange:
        """The smallest range on this query's interval boundaries that holds ``daterange``."""
        step = self.interval
        start, end = daterange.start.timestamp(), daterange.end.timestamp()
        return DateRange(_at(math.floor(start / step) * step), _at(math.ceil(end / step) * step))

    def span(self, daterange: DateRange) -> tuple[int, int]:
        """``daterange`` in epoch seconds; refused, with the nearest range that fits, unless on interval boundaries."""
        if not isinstance(daterange, DateRange):
            raise ConfigurationError(
                "daterange", f"{daterange!r} is not a DateRange", "pass flowmailer.core.DateRange(start, end)"
            )
        start, end = daterange.start.timestamp(), daterange.end.timestamp()
        if start % self.interval or end % self.interval:
            fits = self.fitting(daterange).param()
            raise ConfigurationError(
                "daterange",
                f"{daterange.param()} does not start and end on multiples of the {self.interval} s interval",
                f"samples must fall on the same boundaries in every request: use e.g. {fits}",
            )
        return int(start), int(end)


@attrs.frozen
class ReportPolicy:
    """When an interval counts as final, and how long one request may be."""

    #: An interval that ended longer ago than this is final: its answer is kept and never asked for again.
    settle: float = _WEEK
    #: Intervals in one request; a longer gap is asked for in several.
    max_samples: int = 10_000

    def __attrs_post_init__(self) -> None:
        number = isinstance(self.settle, int | float) and not isinstance(self.settle, bool)  # type: ignore[redundant-expr]
        require(
            number and math.isfinite(self.settle) and self.settle >= 0,
            "ReportPolicy.settle",
            f"{self.settle!r} is not a finite number of seconds of at least 0",
            "give e.g. 604800 (a week, while bounces still arrive)",
        )
        _whole(self.max_samples, "ReportPolicy.max_samples", "give e.g. 10000")


@attrs.frozen
class ReportPiece:
    """One request to make: ``[start, end)`` in epoch seconds; ``settled`` answers are kept."""

    start: int
    end: int
    settled: bool

    @property
    def daterange(self) -> DateRange:
        return DateRange(_at(self.start), _at(self.end))


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def plan_report(
    query: StatsQuery, daterange: DateRange, now: float, policy: ReportPolicy, kept: Iterable[tuple[int, int]]
) -> tuple[ReportPiece, ...]:
    """The requests still needed for ``daterange`` at ``now`` (epoch seconds), oldest first, given the ``kept``
    stretches (``[start, end)`` epoch seconds, in time order, not overlapping).

    Kept stretches are skipped; each gap is split where settled time ends and into at most ``max_samples``
    intervals a request. A ConfigurationError names ``daterange`` if it is not on interval boundaries.
    """
    start, end = query.span(daterange)
    step = query.interval
    settled_until = math.floor((now - policy.settle) / step) * step
    longest = policy.max_samples * step
    pieces: list[ReportPiece] = []
    cursor = start
    for kept_start, kept_end in (*kept, (end, end)):  # the last one closes the range
        gap_end = min(kept_start, end)
        settled_part = (cursor, min(gap_end, settled_until), True)
        open_part = (max(cursor, settled_until), gap_end, False)
        for lo, hi, settled in (settled_part, open_part):
            pieces.extend(ReportPiece(a, min(a + longest, hi), settled) for a in range(lo, hi, longest))
        cursor = max(cursor, kept_end)
        if cursor >= end:
            break
    return tuple(pieces)


def assemble_report(
    query: StatsQuery,
    daterange: DateRange,
    held: Mapping[str, Mapping[int, int]],
    fetched: Mapping[ReportPiece, Stats],
) -> Stats:
    """The report for ``daterange`` from ``held`` samples (counter -> interval start -> value, as a store keeps
    them) and ``fetched``, the answers to ``plan_report``'s pieces. A counter has a sample for each interval
    Flowmailer reported; nothing is filled in."""
    start, end = query.span(daterange)
    fresh: dict[str, dict[int, int]] = {}  # this call's answers, settled ones too: a store may keep less
    for answer in fetched.values():
        for d in answer.datasets:
            fresh.setdefault(d.name, {}).update(_by_start(d))
    datasets = []
    for name in dict.fromkeys((*held, *fresh)):
        mine, new = held.get(name, {}), fresh.get(name, {})
        samples = []
        for t in range(start, end, query.interval):
            value = new.get(t, mine.get(t))
            if value is not None:
                samples.append(Sample(_at(t), value))
        datasets.append(DataSet(name, tuple(samples)))
    return Stats(tuple(datasets))


def _by_start(d: DataSet) -> dict[int, int]:
    return {int(s.timestamp.timestamp()): s.value for s in d.samples}


def merge_stretches(stretches: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Stretches in time order, overlapping or touching ones joined."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(stretches):
        if merged and merged[-1][1] >= start:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


class _Kept:
    """One query's settled stretches, merged and in time order, and their samples: counter -> start -> value."""

    def __init__(self) -> None:
        self.stretches: list[tuple[int, int]] = []
        self.values: dict[str, dict[int, int]] = {}
        self.size = 0

    def add(self, start: int, end: int, answer: Stats) -> None:
        for d in answer.datasets:
            values = self.values.setdefault(d.name, {})
            for t, value in _by_start(d).items():
                self.size += t not in values
                values[t] = value
        self.stretches = merge_stretches([*self.stretches, (start, end)])

    def drop_oldest(self, step: int) -> None:
        """Forget the oldest kept interval; its stretch then starts one interval later."""
        start, end = self.stretches[0]
        if start + step < end:
            self.stretches[0] = (start + step, end)
        else:
            self.stretches.pop(0)
        for values in self.values.values():
            if values.pop(start, None) is not None:
                self.size -= 1


class ReportBook:
    """A :class:`flowmailer.ports.ReportStore` in memory, for one process: pure (no I/O) but not thread-safe; a
    client holds one lock across a whole report, which is also what keeps its report requests from overlapping.

    At most ``max_kept_samples`` samples are kept (every counter's counted): the least recently used queries go
    first, then the oldest intervals of the query at hand.
    """

    def __init__(self, max_kept_samples: int = 1_000_000) -> None:
        _whole(max_kept_samples, "max_kept_samples", "give e.g. 1000000")
        self.max_kept_samples = max_kept_samples
        self._kept: dict[StatsQuery, _Kept] = {}  # least recently used first

    @property
    def kept_samples(self) -> int:
        return sum(k.size for k in self._kept.values())

    def queries(self) -> tuple[StatsQuery, ...]:
        """The queries with something kept, least recently used first."""
        return tuple(self._kept)

    def stretches(self, query: StatsQuery) -> list[tuple[int, int]]:
        kept = self._use(query)
        return list(kept.stretches) if kept is not None else []

    def held(self, query: StatsQuery, start: int, end: int) -> dict[str, dict[int, int]]:
        kept = self._kept.get(query)
        if kept is None:
            return {}
        wanted = range(start, end, query.interval)
        held = {name: {t: values[t] for t in wanted if t in values} for name, values in kept.values.items()}
        return {name: values for name, values in held.items() if values}

    def keep(self, query: StatsQuery, piece: ReportPiece, answer: Stats) -> None:
        if not piece.settled:
            return
        self._kept.setdefault(query, _Kept()).add(piece.start, piece.end, answer)
        self._use(query)
        self._shrink(query)

    def _use(self, query: StatsQuery) -> _Kept | None:
        kept = self._kept.pop(query, None)
        if kept is not None:
            self._kept[query] = kept
        return kept

    def _shrink(self, current: StatsQuery) -> None:
        for query in list(self._kept):
            if self.kept_samples <= self.max_kept_samples:
                return
            if query != current:
                del self._kept[query]
        kept = self._kept[current]
        while kept.size > self.max_kept_samples and kept.stretches:
            kept.drop_oldest(current.interval)
