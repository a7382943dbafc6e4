"""What the SQLite cursor and report stores share: the file opened as the outbox opens it (WAL, synchronous=FULL,
mode 0600; by default the outbox's own file, though they make only their own tables), one connection behind a
lock, and closing."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from flowmailer.adapters._sqlite_file import open_sqlite
from flowmailer.adapters.sqlite_outbox import default_outbox_path
from flowmailer.core import ConfigurationError, FlowmailerError
from flowmailer.core._checks import check_duration

__all__ = ["SQLiteStore"]


class SQLiteStore:
    """A small store in its own tables of a SQLite file; subclasses name their schema, contents and error."""

    #: CREATE TABLE IF NOT EXISTS statements, run when the store opens the file.
    SCHEMA: ClassVar[tuple[str, ...]]
    #: The tables SCHEMA makes, with the columns each must have.
    TABLES: ClassVar[dict[str, frozenset[str]]]
    #: What the store holds, for messages ("event cursors") and the field a closed store names ("cursors").
    HOLDS: ClassVar[str]
    FIELD: ClassVar[str]
    #: Raised, with the sqlite3 error as its cause, when the storage fails.
    ERROR: ClassVar[type[FlowmailerError]]

    def __init__(self, path: str | os.PathLike[str] | None = None, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path) if path is not None else default_outbox_path()
        self._lock = threading.Lock()
        conn = open_sqlite(
            self.path,
            check_duration(busy_timeout, "busy_timeout"),
            schema=self.SCHEMA,
            tables=self.TABLES,
            holds=self.HOLDS,
        )
        self._conn: sqlite3.Connection | None = conn

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def _connection(self, what: str) -> Iterator[sqlite3.Connection]:
        """The connection, this thread's alone while the block runs; a sqlite3 error in it becomes ``ERROR``."""
        with self._lock:
            if self._conn is None:
                raise ConfigurationError(self.FIELD, f"{self.path} is closed", f"create a new {type(self).__name__}")
            try:
                yield self._conn
            except sqlite3.Error as e:
                raise self.ERROR(f"the {type(self).__name__} at {self.path} could not {what}: {e}") from e

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
