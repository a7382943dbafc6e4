"""Connection slots in a PostgreSQL table: relays on many machines share their credential's 10 connections.

A table of leases rather than advisory locks. A session-level advisory lock frees the moment its session ends,
which is quick after a SIGKILL, but a hung relay (stopped, swapping, cut off behind a connection the server still
thinks alive) keeps its locks for ever, and a relay whose session the server dropped goes on using connections it
no longer holds, with no way to know when it lost them. A lease ends at a time both sides know: the holder stops
using its connections a margin before then (``core.SlotShare``), and anyone may take the slots after.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from flowmailer.adapters._clock import SystemClock
from flowmailer.core import MAX_SLOTS, ConfigurationError, OutboxError, SlotHolding, slots_to_hold
from flowmailer.core._checks import check_duration, check_slot_request, require
from flowmailer.ports import Clock

__all__ = ["PostgresConnectionSlots"]

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_SCHEMA = """CREATE TABLE IF NOT EXISTS {table} (
    credential TEXT NOT NULL,
    owner TEXT NOT NULL,
    held INTEGER NOT NULL,
    lease_until DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (credential, owner)
)"""


class PostgresConnectionSlots:
    """A :class:`flowmailer.ports.ConnectionSlots` in a PostgreSQL table (``schema.table``), created on first use
    if missing (or by :meth:`create_schema`, which `flowmailer outbox init` calls).

    One row per (credential, owner): the slots held and the lease's end on ``clock`` (so the machines' clocks must
    agree, as for the outbox). Each call is one transaction that first takes a transaction-scoped advisory lock
    on the credential, so the read, the arithmetic and the write are one step for all relays, and is bounded by
    ``statement_timeout``: a relay waiting on a stuck database gives up in time to stop using its connections.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        table: str = "flowmailer_connection_slots",
        schema: str = "public",
        clock: Clock | None = None,
        limit: int = MAX_SLOTS,
        connect_timeout: float = 5.0,
        statement_timeout: float = 5.0,
    ) -> None:
        for field, value in (("table", table), ("schema", schema)):
            if not _NAME.fullmatch(value):
                raise ConfigurationError(
                    field, f"{value!r} is not a plain lower-case SQL name", "use letters, digits and _, at most 48"
                )
        require(1 <= limit <= MAX_SLOTS, "limit", f"{limit!r} is not between 1 and {MAX_SLOTS}", "give 1 to 10")
        self.table = table
        self._conninfo = conninfo
        self._name = f"{schema}.{table}"
        self._table = sql.Identifier(schema, table)
        self._schema = sql.Identifier(schema)
        self._clock: Clock = clock or SystemClock()
        self._limit = limit
        self._connect_timeout = check_duration(connect_timeout, "connect_timeout")
        self._statement_timeout = check_duration(statement_timeout, "statement_timeout")
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=max(1, round(self._connect_timeout)),
            options=f"-c statement_timeout={round(self._statement_timeout * 1000)}",
        )
        try:
            self._create(conn, only_if_missing=True)
        except BaseException:
            conn.close()
            raise
        return conn

    def _create(self, conn: psycopg.Connection[Any], *, only_if_missing: bool) -> None:
        """The table, made if missing; a relay whose role may not create tables in the schema only looks."""
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (self._name,))
            found = cur.fetchone()
            if only_if_missing and found is not None and found[0] is not None:
                return
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._name,))
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._schema))
            cur.execute(sql.SQL(_SCHEMA).format(table=self._table))

    def create_schema(self) -> None:
        """Create the table now (`flowmailer outbox init`), so that relays need no right to create tables."""
        with self._lock:
            try:
                if self._conn is None or self._conn.broken:
                    self._conn = self._connect()
                else:
                    self._create(self._conn, only_if_missing=True)
            except psycopg.Error as e:
                raise OutboxError(f"the connection slots table {self._name} could not be created: {e}") from e

    @contextlib.contextmanager
    def _tx(self, what: str, key: str) -> Iterator[tuple[psycopg.Cursor[Any], float]]:
        """One transaction holding the credential's lock, its lapsed leases already deleted; and now."""
        with self._lock:
            if self._closed:
                raise ConfigurationError("slots", f"{self._name} is closed", "create a new PostgresConnectionSlots")
            try:
                if self._conn is None or self._conn.broken:
                    self._conn = self._connect()
                with self._conn.transaction(), self._conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self._name}:{key}",))
                    now = self._clock.now()
                    cur.execute(
                        sql.SQL("DELETE FROM {} WHERE credential = %s AND lease_until <= %s").format(self._table),
                        (key, now),
                    )
                    yield cur, now
            except psycopg.Error as e:
                raise OutboxError(f"the connection slots in {self._name} could not {what}: {e}") from e

    def _holding(self, cur: psycopg.Cursor[Any], key: str, held: int) -> SlotHolding:
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE credential = %s").format(self._table), (key,))
        row = cur.fetchone()
        assert row is not None
        return SlotHolding(held, row[0])

    def acquire(self, key: str, owner: str, count: int, lease: float) -> SlotHolding:
        key, owner, count = check_slot_request(key, owner, count, self._limit)
        lease = check_duration(lease, "lease")
        with self._tx("hand out slots", key) as (cur, now):
            cur.execute(sql.SQL("SELECT owner, held FROM {} WHERE credential = %s").format(self._table), (key,))
            rows = dict(cur.fetchall())
            current = rows.pop(owner, 0)
            held = slots_to_hold(count, current=current, others=sum(rows.values()), limit=self._limit)
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (credential, owner, held, lease_until) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (credential, owner) DO UPDATE"
                    " SET held = excluded.held, lease_until = excluded.lease_until"
                ).format(self._table),
                (key, owner, held, now + lease),
            )
            return self._holding(cur, key, held)

    def renew(self, key: str, owner: str, lease: float) -> SlotHolding:
        key, owner, _ = check_slot_request(key, owner)
        lease = check_duration(lease, "lease")
        with self._tx("renew slots", key) as (cur, now):
            cur.execute(
                sql.SQL("UPDATE {} SET lease_until = %s WHERE credential = %s AND owner = %s RETURNING held").format(
                    self._table
                ),
                (now + lease, key, owner),
            )
            found = cur.fetchone()
            return self._holding(cur, key, 0 if found is None else found[0])

    def release(self, key: str, owner: str) -> None:
        key, owner, _ = check_slot_request(key, owner)
        with self._tx("give slots back", key) as (cur, _):
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE credential = %s AND owner = %s").format(self._table), (key, owner)
            )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
