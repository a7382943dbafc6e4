"""Connection slots in the outbox's SQLite file: relays on one file share their credential's 10 connections."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from flowmailer.adapters._clock import SystemClock
from flowmailer.adapters._sqlite_file import open_sqlite, transaction
from flowmailer.core import MAX_SLOTS, ConfigurationError, SlotHolding, slots_to_hold
from flowmailer.core._checks import check_duration, check_slot_request, require
from flowmailer.ports import Clock

__all__ = ["SQLiteConnectionSlots"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS connection_slots (
    credential TEXT NOT NULL,
    owner TEXT NOT NULL,
    held INTEGER NOT NULL,
    lease_until REAL NOT NULL,
    PRIMARY KEY (credential, owner)
)"""
_COLUMNS = frozenset({"credential", "owner", "held", "lease_until"})


class SQLiteConnectionSlots:
    """A :class:`flowmailer.ports.ConnectionSlots` in a table of a SQLite file, the outbox's own by choice.

    One row per (credential, owner): the slots held and the lease's end on ``clock``. Every call is one
    ``BEGIN IMMEDIATE`` transaction, so relays in several processes on the file never hold more than ``limit``
    together; each call first deletes the leases that ran out, which is how a killed relay's slots come back.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        limit: int = MAX_SLOTS,
        busy_timeout: float = 5.0,
    ) -> None:
        require(1 <= limit <= MAX_SLOTS, "limit", f"{limit!r} is not between 1 and {MAX_SLOTS}", "give 1 to 10")
        self.path = Path(path)
        self._clock: Clock = clock or SystemClock()
        self._limit = limit
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = open_sqlite(
            self.path,
            check_duration(busy_timeout, "busy_timeout"),
            schema=[_SCHEMA],
            tables={"connection_slots": _COLUMNS},
            holds="flowmailer's connection slots",
        )

    @contextlib.contextmanager
    def _tx(self, what: str, key: str) -> Iterator[tuple[sqlite3.Connection, float]]:
        """The connection in one write transaction, the credential's lapsed leases already deleted; and now."""
        with self._lock:
            if self._conn is None:
                raise ConfigurationError("slots", f"{self.path} is closed", "create a new SQLiteConnectionSlots")
            with transaction(self._conn, f"the connection slots in {self.path} could not {what}") as conn:
                now = self._clock.now()
                conn.execute("DELETE FROM connection_slots WHERE credential = ? AND lease_until <= ?", (key, now))
                yield conn, now

    @staticmethod
    def _holding(conn: sqlite3.Connection, key: str, held: int) -> SlotHolding:
        [(owners,)] = conn.execute("SELECT count(*) FROM connection_slots WHERE credential = ?", (key,))
        return SlotHolding(held, owners)

    def acquire(self, key: str, owner: str, count: int, lease: float) -> SlotHolding:
        key, owner, count = check_slot_request(key, owner, count, self._limit)
        lease = check_duration(lease, "lease")
        with self._tx("hand out slots", key) as (conn, now):
            rows = dict(conn.execute("SELECT owner, held FROM connection_slots WHERE credential = ?", (key,)))
            current = rows.pop(owner, 0)
            held = slots_to_hold(count, current=current, others=sum(rows.values()), limit=self._limit)
            conn.execute(
                "INSERT INTO connection_slots (credential, owner, held, lease_until) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (credential, owner) DO UPDATE"
                " SET held = excluded.held, lease_until = excluded.lease_until",
                (key, owner, held, now + lease),
            )
            return self._holding(conn, key, held)

    def renew(self, key: str, owner: str, lease: float) -> SlotHolding:
        key, owner, _ = check_slot_request(key, owner)
        lease = check_duration(lease, "lease")
        with self._tx("renew slots", key) as (conn, now):
            found = conn.execute(
                "UPDATE connection_slots SET lease_until = ? WHERE credential = ? AND owner = ? RETURNING held",
                (now + lease, key, owner),
            ).fetchone()
            return self._holding(conn, key, 0 if found is None else found[0])

    def release(self, key: str, owner: str) -> None:
        key, owner, _ = check_slot_request(key, owner)
        with self._tx("give slots back", key) as (conn, _):
            conn.execute("DELETE FROM connection_slots WHERE credential = ? AND owner = ?", (key, owner))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
