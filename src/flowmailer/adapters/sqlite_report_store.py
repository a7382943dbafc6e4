"""Settled report answers in SQLite: by default two small tables in the outbox's own file, one file to keep safe."""

from __future__ import annotations

import contextlib
import sqlite3

from flowmailer.adapters._sqlite_store import SQLiteStore
from flowmailer.core import (
    ReportPiece,
    ReportStoreError,
    Stats,
    StatsQuery,
    merge_stretches,
)

__all__ = ["SQLiteReportStore"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS report_stretches (query TEXT NOT NULL, start INTEGER NOT NULL, end_ INTEGER NOT NULL,"
    " PRIMARY KEY (query, start)) WITHOUT ROWID",
    # ordinal: the counter's place in Flowmailer's answer, so that a report lists counters as Flowmailer does.
    "CREATE TABLE IF NOT EXISTS report_samples (query TEXT NOT NULL, name TEXT NOT NULL, t INTEGER NOT NULL,"
    " value INTEGER NOT NULL, ordinal INTEGER NOT NULL, PRIMARY KEY (query, name, t)) WITHOUT ROWID",
)


class SQLiteReportStore(SQLiteStore):
    """A :class:`flowmailer.ports.ReportStore` in one SQLite file (WAL, ``synchronous=FULL``, mode 0600), for a
    report asked for again by another process: a cron job, ``flowmailer stats``, a restarted dashboard.

    The file is opened as :class:`SQLiteOutbox` opens it (the default path is the outbox's). Nothing is ever
    dropped: settled counts do not change, and a year of daily samples for four counters is about 1,500 rows.
    """

    SCHEMA = _SCHEMA
    TABLES = {  # noqa: RUF012 - read, never changed
        "report_stretches": frozenset({"query", "start", "end_"}),
        "report_samples": frozenset({"query", "name", "t", "value", "ordinal"}),
    }
    HOLDS = "reports"
    FIELD = "reports"
    ERROR = ReportStoreError

    def stretches(self, query: StatsQuery) -> list[tuple[int, int]]:
        with self._connection("read") as conn:
            rows = conn.execute(
                "SELECT start, end_ FROM report_stretches WHERE query = ? ORDER BY start", (query.key,)
            ).fetchall()
        return [(int(a), int(b)) for a, b in rows]

    def held(self, query: StatsQuery, start: int, end: int) -> dict[str, dict[int, int]]:
        with self._connection("read") as conn:
            rows = conn.execute(
                "SELECT name, t, value FROM report_samples WHERE query = ? AND t >= ? AND t < ? ORDER BY ordinal, t",
                (query.key, start, end),
            ).fetchall()
        held: dict[str, dict[int, int]] = {}
        for name, t, value in rows:
            held.setdefault(str(name), {})[int(t)] = int(value)
        return held

    def keep(self, query: StatsQuery, piece: ReportPiece, answer: Stats) -> None:
        if not piece.settled:
            return
        key = query.key
        samples = [
            (key, d.name, int(s.timestamp.timestamp()), s.value, ordinal)
            for ordinal, d in enumerate(answer.datasets)
            for s in d.samples
            if piece.start <= s.timestamp.timestamp() < piece.end
        ]
        with self._connection("keep") as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")  # one transaction: the samples and their stretch, or neither
                self._keep(conn, key, piece, samples)
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:  # something failed; SQLite may already have rolled back by itself
                    with contextlib.suppress(sqlite3.Error):  # the first error is the one to report
                        conn.execute("ROLLBACK")

    @staticmethod
    def _keep(
        conn: sqlite3.Connection, key: str, piece: ReportPiece, samples: list[tuple[str, str, int, int, int]]
    ) -> None:
        conn.executemany(
            "INSERT INTO report_samples (query, name, t, value, ordinal) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (query, name, t) DO UPDATE SET value = excluded.value",
            samples,
        )
        touching = (key, piece.end, piece.start)
        rows = conn.execute(
            "SELECT start, end_ FROM report_stretches WHERE query = ? AND start <= ? AND end_ >= ?", touching
        ).fetchall()
        conn.execute("DELETE FROM report_stretches WHERE query = ? AND start <= ? AND end_ >= ?", touching)
        [(start, end)] = merge_stretches([(piece.start, piece.end), *((int(a), int(b)) for a, b in rows)])
        conn.execute("INSERT INTO report_stretches (query, start, end_) VALUES (?, ?, ?)", (key, start, end))
