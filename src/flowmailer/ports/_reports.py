"""Where settled report answers are kept, so that a stretch of time that is over is asked for once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from flowmailer.core import ReportPiece, Stats, StatsQuery

__all__ = ["ReportStore"]


class ReportStore(Protocol):
    """Settled answers to ``messagestats``, by query: :class:`flowmailer.core.ReportBook` in memory,
    :class:`flowmailer.adapters.SQLiteReportStore` across processes. Callers serialise their use (a client holds
    one lock across a report); storage failures raise ``ReportStoreError``."""

    def stretches(self, query: StatsQuery) -> Sequence[tuple[int, int]]:
        """The ``[start, end)`` stretches (epoch seconds) kept for ``query``: in time order, not touching."""
        ...

    def held(self, query: StatsQuery, start: int, end: int) -> Mapping[str, Mapping[int, int]]:
        """The kept samples from ``start`` up to ``end``: counter -> interval start (epoch seconds) -> value."""
        ...

    def keep(self, query: StatsQuery, piece: ReportPiece, answer: Stats) -> None:
        """Keep the answer to a settled piece (an unsettled piece is ignored); durable when it returns."""
        ...
