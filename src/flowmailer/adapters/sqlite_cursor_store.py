"""Event cursors in SQLite: by default a small table in the outbox's own file, one file to keep safe."""

from __future__ import annotations

from flowmailer.adapters._sqlite_store import SQLiteStore
from flowmailer.core import CursorStoreError
from flowmailer.core._cursor import check_cursor, check_cursor_name

__all__ = ["SQLiteCursorStore"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS event_cursors (name TEXT PRIMARY KEY, cursor TEXT NOT NULL) WITHOUT ROWID"
_SAVE = (
    "INSERT INTO event_cursors (name, cursor) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor"
)


class SQLiteCursorStore(SQLiteStore):
    """A :class:`flowmailer.ports.CursorStore` in one SQLite file: WAL, ``synchronous=FULL``, created with mode 0600.

    The file is opened as :class:`SQLiteOutbox` opens it (the default path is the outbox's), so cursors and the
    outbox may share one file; the cursors live in their own table.
    """

    SCHEMA = (_SCHEMA,)
    TABLES = {"event_cursors": frozenset({"name", "cursor"})}  # noqa: RUF012 - read, never changed
    HOLDS = "event cursors"
    FIELD = "cursors"
    ERROR = CursorStoreError

    def load(self, name: str) -> str | None:
        check_cursor_name(name)
        with self._connection("load a cursor") as conn:
            rows = conn.execute("SELECT cursor FROM event_cursors WHERE name = ?", (name,)).fetchall()
        return str(rows[0][0]) if rows else None

    def save(self, name: str, cursor: str) -> None:
        check_cursor_name(name)
        check_cursor(cursor)
        with self._connection("save a cursor") as conn:
            conn.execute(_SAVE, (name, cursor))  # autocommit: with synchronous=FULL, on disk when it returns
