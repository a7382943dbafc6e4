"""Event cursors in SQLite: by default a small table in the outbox's own file, one file to keep safe."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from types import TracebackType

from flowmailer.adapters.sqlite_outbox import _open, default_outbox_path
from flowmailer.core import ConfigurationError, CursorStoreError
from flowmailer.core._checks import check_duration
from flowmailer.core._cursor import check_cursor, check_cursor_name

__all__ = ["SQLiteCursorStore"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS event_cursors (name TEXT PRIMARY KEY, cursor TEXT NOT NULL) WITHOUT ROWID"
_SAVE = (
    "INSERT INTO event_cursors (name, cursor) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor"
)


class SQLiteCursorStore:
    """A :class:`flowmailer.ports.CursorStore` in one SQLite file: WAL, ``synchronous=FULL``, created with mode 0600.

    The file is opened as :class:`SQLiteOutbox` opens it (the default path is the outbox's), so cursors and the
    outbox may share one file; the cursors live in their own table.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path) if path is not None else default_outbox_path()
        self._lock = threading.Lock()
        conn = _open(self.path, check_duration(busy_timeout, "busy_timeout"))
        try:
            conn.execute(_SCHEMA)
        except sqlite3.Error as e:
            conn.close()
            raise ConfigurationError(
                "path", f"{str(self.path)!r} cannot hold event cursors ({e})", "give the path of a writable file"
            ) from e
        self._conn: sqlite3.Connection | None = conn

    def __enter__(self) -> SQLiteCursorStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def load(self, name: str) -> str | None:
        check_cursor_name(name)
        rows = self._execute("load", "SELECT cursor FROM event_cursors WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def save(self, name: str, cursor: str) -> None:
        check_cursor_name(name)
        check_cursor(cursor)
        self._execute("save", _SAVE, (name, cursor))  # autocommit: with synchronous=FULL, on disk when it returns

    def _execute(self, what: str, sql: str, args: tuple[str, ...]) -> list[tuple[object, ...]]:
        with self._lock:
            if self._conn is None:
                raise ConfigurationError("cursors", f"{self.path} is closed", "create a new SQLiteCursorStore")
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise CursorStoreError(f"the SQLite cursor store at {self.path} could not {what} a cursor: {e}") from e

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
