"""Every cursor store passes the same conformance check; the SQLite one also keeps its file private and durable."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowmailer.adapters import SQLiteCursorStore, SQLiteOutbox
from flowmailer.core import ConfigurationError, CursorStoreError, SubmitMessage
from flowmailer.testing import FakeClock, MemoryCursorStore, check_cursor_store


@pytest.fixture
def umask_022() -> Iterator[None]:
    """A permissive umask, as most shells have: the store must not rely on the caller's."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_memory_cursor_store_conforms() -> None:
    check_cursor_store(MemoryCursorStore)


def test_sqlite_cursor_store_conforms(tmp_path: Path) -> None:
    paths = iter(range(1000))
    stores: list[SQLiteCursorStore] = []

    def factory() -> SQLiteCursorStore:
        stores.append(SQLiteCursorStore(tmp_path / f"{next(paths)}.db"))
        return stores[-1]

    try:
        check_cursor_store(factory)
    finally:
        for store in stores:
            store.close()


def test_check_cursor_store_fails_a_store_that_forgets() -> None:
    class Forgetful(MemoryCursorStore):
        def load(self, name: str) -> str | None:
            return None

    with pytest.raises(AssertionError, match="does not load back"):
        check_cursor_store(Forgetful)


def test_sqlite_cursor_survives_reopening(tmp_path: Path) -> None:
    with SQLiteCursorStore(tmp_path / "c.db") as store:
        store.save("default", "00000000002a")
    with SQLiteCursorStore(tmp_path / "c.db") as store:
        assert store.load("default") == "00000000002a"


@pytest.mark.usefixtures("umask_022")
def test_sqlite_file_its_wal_and_folder_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "cursors.db"
    with SQLiteCursorStore(path) as store:
        store.save("default", "000000000001")
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    assert modes == {"cursors.db": 0o600, "cursors.db-wal": 0o600, "cursors.db-shm": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_sqlite_store_uses_wal_and_full_sync(tmp_path: Path) -> None:
    with SQLiteCursorStore(tmp_path / "c.db") as store:
        assert store._conn is not None
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_sqlite_store_shares_a_file_with_the_outbox(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = SQLiteOutbox(path, clock=FakeClock())
    with SQLiteCursorStore(path) as store:
        outbox_id = outbox.enqueue(SubmitMessage(sender_address="s@example.com", recipient_address="r@example.com"))
        store.save("default", "000000000007")
        assert outbox.status(outbox_id) is not None
        assert store.load("default") == "000000000007"
    outbox.close()


def test_sqlite_store_refuses_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, " * 100)
    with pytest.raises(ConfigurationError) as e:
        SQLiteCursorStore(path)
    assert e.value.field == "path"


def test_sqlite_storage_failure_is_a_cursor_store_error(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with SQLiteCursorStore(path) as store:
        other = sqlite3.connect(path)
        other.execute("DROP TABLE event_cursors")
        other.close()
        with pytest.raises(CursorStoreError, match="could not save") as e:
            store.save("default", "000000000001")
    assert isinstance(e.value.__cause__, sqlite3.Error)


def test_closed_sqlite_store_says_so(tmp_path: Path) -> None:
    store = SQLiteCursorStore(tmp_path / "c.db")
    store.close()
    with pytest.raises(ConfigurationError, match="is closed"):
        store.load("default")


@pytest.mark.parametrize("name", ["", "x" * 201, 7])
def test_a_bad_name_is_refused_naming_the_field(name: object, tmp_path: Path) -> None:
    with SQLiteCursorStore(tmp_path / "c.db") as store, pytest.raises(ConfigurationError) as e:
        store.load(name)  # type: ignore[arg-type]
    assert e.value.field == "name"
