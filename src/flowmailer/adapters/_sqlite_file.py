"""Opening the SQLite file that the outbox, the cursor store and the report store keep their tables in.

One place decides what a file may be: a new file, or one that already holds this project's tables. A database of
another program is refused before anything is written to it (not even the switch to write-ahead logging), a
damaged one is refused before a relay spins on it, and a reader opens the file without writing at all.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from flowmailer.core import ConfigurationError, OutboxError

__all__ = ["PROJECT_TABLES", "open_sqlite", "transaction"]

#: Every table this project keeps in a SQLite file; a file holding tables but none of these is another program's.
PROJECT_TABLES = frozenset({"outbox", "event_cursors", "report_stretches", "report_samples", "connection_slots"})
#: Tables SQLite keeps for itself (AUTOINCREMENT, ANALYZE).
_INTERNAL = frozenset({"sqlite_sequence", "sqlite_stat1", "sqlite_stat4"})


def open_sqlite(
    path: Path,
    busy_timeout: float,
    *,
    schema: Iterable[str],
    tables: dict[str, frozenset[str]],
    holds: str,
    field: str = "path",
    create: bool = True,
    read_only: bool = False,
) -> sqlite3.Connection:
    """A connection to ``path`` whose ``tables`` (name: the columns each must have) are there.

    With ``create``, a missing file or table is made (the file with mode 0600, before SQLite sees it, so that its
    -wal and -shm files get the same mode) by running ``schema``; without it, the file must already hold them.
    ``read_only`` opens an existing file without writing to it; a write through the connection then fails.
    Every refusal is a ConfigurationError naming ``field`` and what the file should be instead.
    """
    create = create and not read_only
    existed = path.exists()
    if not existed and not create:
        raise ConfigurationError(field, f"{str(path)!r} does not exist", f"give the path of a file that holds {holds}")
    if create:
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as e:
            raise ConfigurationError(
                field, f"cannot create or open {str(path)!r} ({e.strerror})", f"give a writable file path for {holds}"
            ) from e
    if not read_only and not os.access(path.parent, os.W_OK):
        raise ConfigurationError(
            field,
            f"the folder {str(path.parent)!r} is not writable, and SQLite writes its -wal and -shm files beside "
            f"{path.name}",
            "make the folder writable for this user, or move the file to a folder that is",
        )
    try:
        target = f"{path.resolve().as_uri()}?mode=ro" if read_only else str(path)
        conn = sqlite3.connect(target, timeout=busy_timeout, isolation_level=None, check_same_thread=False, uri=True)
    except sqlite3.Error as e:
        raise ConfigurationError(
            field, f"cannot open {str(path)!r} ({e})", f"give the path of a file that holds {holds}"
        ) from e
    try:
        _check(conn, path, tables, holds=holds, field=field, create=create, checked=existed)
        if not read_only:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise ConfigurationError(
                        field, f"{str(path)!r} cannot use write-ahead logging", "put the file on a local file system"
                    )
            conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if create:
            conn.execute("BEGIN IMMEDIATE")
            for statement in schema:
                conn.execute(statement)
            conn.execute("COMMIT")
    except sqlite3.DatabaseError as e:
        conn.close()
        raise ConfigurationError(
            field,
            f"{str(path)!r} is not a usable SQLite file for {holds} ({e})",
            "give the path of its file or of a new one",
        ) from e
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, failure: str, *, write: bool = True) -> Iterator[sqlite3.Connection]:
    """One transaction on ``conn`` (a write one takes the file's write lock at once, so that work across processes
    is atomic): committed when the block ends, rolled back when it raises; a storage failure becomes OutboxError
    saying ``failure``."""
    try:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.Error as e:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise OutboxError(f"{failure}: {e}") from e


def _check(
    conn: sqlite3.Connection,
    path: Path,
    tables: dict[str, frozenset[str]],
    *,
    holds: str,
    field: str,
    create: bool,
    checked: bool,
) -> None:
    """Refuse another program's database, a damaged one, and (unless ``create``) one without ``tables``."""
    try:
        present = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:  # "file is not a database"
        raise ConfigurationError(
            field, f"{str(path)!r} is not a SQLite database ({e})", f"give the path of a file that holds {holds}"
        ) from None
    foreign = sorted(present - PROJECT_TABLES - _INTERNAL)
    if foreign and not present & PROJECT_TABLES:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ConfigurationError(
            field,
            f"{str(path)!r} is another program's database (it holds the tables {shown}), not one of flowmailer's",
            f"give the path of a new file, or of the file that holds {holds}; nothing was written to this one",
        )
    for table, columns in tables.items():
        if table not in present:
            if create:
                continue
            raise ConfigurationError(
                field,
                f"{str(path)!r} holds no {holds}"
                + (" (it is empty)" if not present else f" (it holds the tables {', '.join(sorted(present))})"),
                "create it first: `flowmailer outbox init` for an outbox, or give the path of the file that holds it",
            )
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if not columns <= have:
            raise ConfigurationError(
                field,
                f"{str(path)!r} has a table {table!r} that is not flowmailer's (it lacks "
                f"{', '.join(sorted(columns - have))})",
                "give the path of a new file, or of the file that holds it; nothing was written to this one",
            )
    if checked and present:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise ConfigurationError(
                field,
                f"{str(path)!r} is damaged (SQLite's quick_check: {'; '.join(problems)})",
                "stop every program using it, keep a copy, and restore it from a backup (`sqlite3 FILE .recover` "
                "saves what is still readable)",
            )
