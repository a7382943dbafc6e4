"""Every report store passes the same conformance check; the SQLite one also keeps its answers across processes."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flowmailer.adapters import SQLiteOutbox, SQLiteReportStore
from flowmailer.core import (
    ConfigurationError,
    DataSet,
    ReportBook,
    ReportPiece,
    ReportStoreError,
    Sample,
    Stats,
    StatsQuery,
    SubmitMessage,
)
from flowmailer.testing import FakeClock, check_report_store

DAY = 86400
T0 = 1_700_000_000 - 1_700_000_000 % DAY


def _answer(*values: int) -> Stats:
    samples = tuple(Sample(datetime.fromtimestamp(T0 + i * DAY, UTC), v) for i, v in enumerate(values))
    return Stats((DataSet("processed", samples),))


def test_the_memory_book_conforms() -> None:
    check_report_store(ReportBook)


def test_the_sqlite_store_conforms(tmp_path: Path) -> None:
    stores: list[SQLiteReportStore] = []

    def fresh() -> SQLiteReportStore:
        stores.append(SQLiteReportStore(tmp_path / f"r{len(stores)}.db"))
        return stores[-1]

    try:
        check_report_store(fresh)
    finally:
        for store in stores:
            store.close()


def test_check_report_store_fails_a_store_that_does_not_join_stretches() -> None:
    class Unjoined(ReportBook):
        def stretches(self, query: StatsQuery) -> list[tuple[int, int]]:
            joined = super().stretches(query)
            return [
                (a, b) for start, end in joined for a, b in ((start, (start + end) // 2), ((start + end) // 2, end))
            ]

    with pytest.raises(AssertionError):
        check_report_store(Unjoined)


def test_kept_answers_survive_reopening(tmp_path: Path) -> None:
    query = StatsQuery(DAY)
    with SQLiteReportStore(tmp_path / "r.db") as store:
        store.keep(query, ReportPiece(T0, T0 + 3 * DAY, settled=True), _answer(4, 5, 6))
    with SQLiteReportStore(tmp_path / "r.db") as store:
        assert store.stretches(query) == [(T0, T0 + 3 * DAY)]
        assert store.held(query, T0, T0 + 3 * DAY) == {"processed": {T0: 4, T0 + DAY: 5, T0 + 2 * DAY: 6}}


def test_the_store_shares_a_file_with_the_outbox(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = SQLiteOutbox(path, clock=FakeClock())
    with SQLiteReportStore(path) as store:
        outbox_id = outbox.enqueue(SubmitMessage(sender_address="s@example.com", recipient_address="r@example.com"))
        store.keep(StatsQuery(DAY), ReportPiece(T0, T0 + DAY, settled=True), _answer(1))
        assert outbox.status(outbox_id) is not None
    outbox.close()


def test_a_failed_keep_keeps_nothing_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    query = StatsQuery(DAY)
    with SQLiteReportStore(path) as store:
        other = sqlite3.connect(path)
        other.execute("DROP TABLE report_stretches")
        other.close()
        with pytest.raises(ReportStoreError, match="could not keep") as e:
            store.keep(query, ReportPiece(T0, T0 + DAY, settled=True), _answer(1))
        assert isinstance(e.value.__cause__, sqlite3.Error)
        assert store.held(query, T0, T0 + DAY) == {}  # the samples went with the failed transaction


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, " * 100)
    with pytest.raises(ConfigurationError) as e:
        SQLiteReportStore(path)
    assert e.value.field == "path"


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SQLiteReportStore(tmp_path / "r.db")
    store.close()
    with pytest.raises(ConfigurationError, match="is closed"):
        store.stretches(StatsQuery(DAY))


def test_check_report_store_fails_a_store_that_ignores_the_interval() -> None:
    class OneInterval(ReportBook):
        def stretches(self, query: StatsQuery) -> list[tuple[int, int]]:
            return super().stretches(StatsQuery(1, query.flow_ids))

        def held(self, query: StatsQuery, start: int, end: int) -> dict[str, dict[int, int]]:
            return super().held(StatsQuery(1, query.flow_ids), start, end)

        def keep(self, query: StatsQuery, piece: ReportPiece, answer: Stats) -> None:
            super().keep(StatsQuery(1, query.flow_ids), piece, answer)

    with pytest.raises(AssertionError, match="another interval"):
        check_report_store(OneInterval)


def test_a_full_disk_is_reported_as_such_and_leaves_no_transaction_open(tmp_path: Path) -> None:
    query = StatsQuery(DAY)
    with SQLiteReportStore(tmp_path / "r.db") as store:
        assert store._conn is not None
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(ReportStoreError, match="full"):
            store.keep(query, ReportPiece(T0, T0 + 400 * DAY, settled=True), _answer(*range(400)))
        assert not store._conn.in_transaction
        store._conn.execute("PRAGMA max_page_count = 1073741823")
        store.keep(query, ReportPiece(T0, T0 + DAY, settled=True), _answer(1))
        assert store.stretches(query) == [(T0, T0 + DAY)]
