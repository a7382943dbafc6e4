"""The shared outbox: one PostgreSQL table that relays on several machines drain together (needs the postgres extra).

Claims use ``FOR UPDATE SKIP LOCKED``, so relays never wait on each other's rows; ``enqueue`` sends a NOTIFY that
wakes idle relays; ``enqueue(..., connection=conn)`` writes inside the caller's own transaction.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs
import psycopg
from psycopg import sql

from flowmailer._trace import or_current
from flowmailer.adapters._clock import SystemClock
from flowmailer.core import (
    Claim,
    ConfigurationError,
    LeaseLostError,
    OutboxError,
    OutboxId,
    OutboxStatus,
    Settlement,
    SingleClaimOutcomes,
    SubmissionState,
    SubmitMessage,
    TraceContext,
    claimed_state,
    duplicate_reference,
    errors_from_json,
    errors_to_json,
    idle_wait,
    message_from_json,
    message_to_json,
    not_dead,
    outcome_state,
    requeue_state,
    send_count,
    tag_message,
    trace_from_json,
    trace_to_json,
    unreadable,
)
from flowmailer.core._checks import (
    check_after,
    check_dedupe_key,
    check_duration,
    check_ids,
    check_limit,
    check_lookup,
    check_messages,
    check_owner,
)
from flowmailer.ports import Clock

__all__ = ["PostgresOutbox"]

_S = SubmissionState
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_INIT = "run `flowmailer outbox init` (or PostgresOutbox.create_schema()) once before the first message"

#: Columns added since the first release, with their types: added to a table an older version made when the
#: outbox first connects (``create_schema`` included).
_ADDED = {"trace_context": "TEXT"}
# Rows in a final state have no due_at, so the partial index holds only the live queue and a claim reads it in
# order without touching the accepted history.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS {table} (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        state TEXT NOT NULL,
        due_at DOUBLE PRECISION,
        client_reference TEXT NOT NULL UNIQUE,
        dedupe_key TEXT UNIQUE,
        message BYTEA NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        enqueued_at DOUBLE PRECISION NOT NULL,
        requeued_at DOUBLE PRECISION,
        updated_at DOUBLE PRECISION NOT NULL,
        owner TEXT,
        lease_token BIGINT NOT NULL DEFAULT 0,
        message_id TEXT,
        last_reason TEXT,
        errors TEXT,
        may_be_accepted BOOLEAN NOT NULL DEFAULT FALSE,
        trace_context TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS {due_index} ON {table} (due_at, id) WHERE due_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS {state_index} ON {table} (state, updated_at)",
)
# Moves rows out of their claims' hands, only where the claim still holds the row; a NULL keeps the stored value.
_SETTLE = (
    "UPDATE {table} AS t SET state = v.state, due_at = v.due_at, owner = NULL, updated_at = %s,"
    " message_id = coalesce(v.message_id, t.message_id), last_reason = coalesce(v.reason, t.last_reason),"
    " errors = coalesce(v.errors, t.errors), attempts = t.attempts - v.unsent,"
    " may_be_accepted = v.may_be_accepted"
    " FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::float8[], %s::text[], %s::text[], %s::text[],"
    " %s::int[], %s::bool[]) AS v(id, token, state, due_at, message_id, reason, errors, unsent, may_be_accepted)"
    " WHERE t.id = v.id AND t.lease_token = v.token AND t.owner IS NOT NULL RETURNING t.id, t.lease_token"
)
_CLAIM_COLUMNS = sql.SQL(
    "id, state, message, client_reference, attempts, enqueued_at, requeued_at, last_reason, lease_token, trace_context"
)
#: The columns are named after OutboxStatus's fields, in its order.
_STATUS_FIELDS = tuple(field.name for field in attrs.fields(OutboxStatus))
_STATUS_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, _STATUS_FIELDS))


class PostgresOutbox(SingleClaimOutcomes):
    """A :class:`flowmailer.ports.Outbox` in a PostgreSQL table, safe for many relays on many machines.

    ``conninfo`` is a libpq connection string or URL. The table (``schema.table``) is created only by
    :meth:`create_schema`, never implicitly. Times come from ``clock``, so the machines' clocks must agree (NTP);
    ``wait_for_work`` blocks on the database connection in real time.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        table: str = "flowmailer_outbox",
        schema: str = "public",
        clock: Clock | None = None,
        poll_interval: float = 5.0,
        connect_timeout: float = 10.0,
    ) -> None:
        for field, value in (("table", table), ("schema", schema)):
            if not _NAME.fullmatch(value):
                raise ConfigurationError(
                    field, f"{value!r} is not a plain lower-case SQL name", "use letters, digits and _, at most 48"
                )
        if len(f"{schema}.{table}") > 63:
            raise ConfigurationError("table", f"{schema}.{table} is longer than 63 characters", "use shorter names")
        self._conninfo = conninfo
        self._timeout = check_duration(connect_timeout, "connect_timeout")
        self._poll = check_duration(poll_interval, "poll_interval")
        self._clock: Clock = clock or SystemClock()
        self._names = {
            "table": sql.Identifier(schema, table),
            "due_index": sql.Identifier(f"{table}_due"),
            "state_index": sql.Identifier(f"{table}_state"),
        }
        self._schema = sql.Identifier(schema)
        self._channel = f"{schema}.{table}"
        self._regclass = f'"{schema}"."{table}"'  # plain lower-case names, checked above
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._listener: psycopg.Connection[Any] | None = None
        self._closed = False
        self._upgraded = False  # the table has every column of this version's schema

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(**self._names, claim_columns=_CLAIM_COLUMNS, status_columns=_STATUS_COLUMNS)

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._conninfo, autocommit=True, connect_timeout=max(1, round(self._timeout)))

    @contextlib.contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """psycopg's errors become ours; a missing table says how to create it."""
        try:
            yield
        except psycopg.errors.UndefinedTable as e:
            raise ConfigurationError("table", f"{self._channel} does not exist", _INIT) from e
        except psycopg.Error as e:
            raise OutboxError(f"the PostgreSQL outbox {self._channel} could not {what}: {e}") from e

    @contextlib.contextmanager
    def _tx(self, what: str, connection: psycopg.Connection[Any] | None = None) -> Iterator[psycopg.Cursor[Any]]:
        """One transaction on our connection (reconnecting if it broke), or a savepoint in the caller's."""
        if connection is not None:
            if not self._upgraded and not self._closed:  # the table's columns are looked at on our connection
                with self._lock, self._translate("add its newer columns"):
                    self._own()
            with self._translate(what):
                if (
                    not connection.autocommit
                    and connection.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
                ):
                    # Open the caller's transaction as its own first statement would; on an idle connection
                    # transaction() would start and commit a transaction of its own.
                    connection.execute("SELECT 1")
                with connection.transaction(), connection.cursor() as cur:
                    yield cur
            return
        with self._lock:
            if self._closed:
                raise ConfigurationError("outbox", f"{self._channel} is closed", "create a new PostgresOutbox")
            with self._translate(what):
                conn = self._own()
                with conn.transaction(), conn.cursor() as cur:
                    yield cur

    def _own(self) -> psycopg.Connection[Any]:
        """Our connection (made again if it broke), to a table with every column; called under the lock."""
        if self._conn is None or self._conn.broken:
            self._conn = self._connect()
        if not self._upgraded:
            self._upgraded = self._add_columns(self._conn)
        return self._conn

    def _add_columns(self, conn: psycopg.Connection[Any]) -> bool:
        """Give a table an older version made the columns added since; False while there is no table at all."""
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
                (self._regclass,),
            )
            have = {row[0] for row in cur.fetchall()}
            missing = [column for column in _ADDED if have and column not in have]
            if missing:
                cur.execute("SET LOCAL lock_timeout = '10s'")  # never queue every query behind a long transaction
            try:
                for column in missing:
                    cur.execute(self._q(f"ALTER TABLE {{table}} ADD COLUMN IF NOT EXISTS {column} {_ADDED[column]}"))
            except psycopg.errors.InsufficientPrivilege as e:
                raise ConfigurationError(
                    "table",
                    f"{self._channel} was made by an older flowmailer and lacks {', '.join(missing)}, which this "
                    "database user may not add",
                    "run `flowmailer outbox init` (or create_schema()) once as the table's owner",
                ) from e
        return bool(have)

    def create_schema(self) -> None:
        """Create the schema, table and indexes if missing: `flowmailer outbox init`, safe to run again."""
        with self._tx("create its table") as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._channel,))
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._schema))
            for statement in _SCHEMA:
                cur.execute(self._q(statement))

    # -- enqueue -----------------------------------------------------------------------------------------------

    def enqueue(
        self,
        message: SubmitMessage,
        *,
        dedupe_key: str | None = None,
        trace_context: TraceContext | None = None,
        connection: psycopg.Connection[Any] | None = None,
    ) -> OutboxId:
        """Durable on return; with ``connection``, part of the caller's transaction: the row exists iff it commits."""
        [checked] = check_messages([message])
        key = check_dedupe_key(dedupe_key)
        trace = trace_to_json(or_current(trace_context))
        with self._tx("enqueue", connection) as cur:
            if key is not None:
                cur.execute(self._q("SELECT id FROM {table} WHERE dedupe_key = %s"), (key,))
                row = cur.fetchone()
                if row is not None:
                    return int(row[0])
            ids = self._insert(cur, [checked], key, trace)
            if not ids:  # a concurrent enqueue with the same key committed first
                cur.execute(self._q("SELECT id FROM {table} WHERE dedupe_key = %s"), (key,))
                return int(cur.fetchone()[0])  # type: ignore[index]
            return ids[0]

    def enqueue_many(
        self,
        messages: Iterable[SubmitMessage],
        *,
        trace_context: TraceContext | None = None,
        connection: psycopg.Connection[Any] | None = None,
    ) -> list[OutboxId]:
        """All or nothing, in one transaction (a savepoint in the caller's, with ``connection``)."""
        checked = check_messages(messages, "messages")
        trace = trace_to_json(or_current(trace_context))
        if not checked:
            return []
        with self._tx("enqueue", connection) as cur:
            return self._insert(cur, checked, None, trace)

    def _insert(
        self, cur: psycopg.Cursor[Any], messages: list[SubmitMessage], key: str | None, trace: str | None
    ) -> list[OutboxId]:
        tagged = [tag_message(m, uuid.uuid4().hex) for m in messages]
        refs = [ref for _, ref in tagged]
        bodies = [message_to_json(m) for m, _ in tagged]
        now = self._clock.now()
        try:
            cur.execute(
                self._q(
                    "INSERT INTO {table}"
                    " (state, due_at, client_reference, dedupe_key, message, enqueued_at, updated_at, trace_context)"
                    " SELECT %s, %s, ref, %s, body, %s, %s, %s"
                    " FROM unnest(%s::text[], %s::bytea[]) WITH ORDINALITY AS m(ref, body, n) ORDER BY n"
                    " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, client_reference"
                ),
                (_S.QUEUED.name, now, key, now, now, trace, refs, bodies),
            )
        except psycopg.errors.UniqueViolation as e:
            clash = next((r for r in refs if r in str(e.diag.message_detail)), refs[0])
            raise duplicate_reference(clash) from e
        by_ref = {ref: int(i) for i, ref in cur.fetchall()}
        cur.execute("SELECT pg_notify(%s, '')", (self._channel,))
        return [by_ref[ref] for ref in refs if ref in by_ref]

    # -- claims and outcomes -----------------------------------------------------------------------------------

    def claim(self, owner: str, limit: int, lease: float) -> list[Claim]:
        owner = check_owner(owner)
        limit = check_limit(limit)
        lease = check_duration(lease, "lease")
        with self._tx("claim") as cur:
            now = self._clock.now()
            cur.execute(
                self._q(
                    "SELECT {claim_columns} FROM {table} WHERE due_at <= %s ORDER BY due_at, id LIMIT %s"
                    " FOR UPDATE SKIP LOCKED"
                ),
                (now, limit),
            )
            readable = []
            for row in cur.fetchall():
                try:
                    readable.append((row, message_from_json(bytes(row[2]))))
                except ConfigurationError as e:
                    state, reason = unreadable(SubmissionState[row[1]], e)
                    cur.execute(
                        self._q(
                            "UPDATE {table} SET state = %s, due_at = NULL, owner = NULL, attempts = attempts + 1,"
                            " lease_token = lease_token + 1, last_reason = %s, updated_at = %s WHERE id = %s"
                        ),
                        (state.name, reason, now, row[0]),
                    )
            return self._lease(cur, readable, owner, now, lease)

    def _lease(
        self,
        cur: psycopg.Cursor[Any],
        readable: list[tuple[tuple[Any, ...], SubmitMessage]],
        owner: str,
        now: float,
        lease: float,
    ) -> list[Claim]:
        """Lease rows read with _CLAIM_COLUMNS (and their decoded messages), locked by the caller's transaction."""
        if not readable:
            return []
        rows = [row for row, _ in readable]
        claimed_from = [SubmissionState[row[1]] for row in rows]
        cur.execute(
            self._q(
                "UPDATE {table} AS t SET state = v.state, due_at = %s, owner = %s, lease_token = t.lease_token + 1,"
                " attempts = t.attempts + v.sends, updated_at = %s"
                " FROM unnest(%s::bigint[], %s::text[], %s::int[]) AS v(id, state, sends) WHERE t.id = v.id"
            ),
            (
                *(now + lease, owner, now, [row[0] for row in rows]),
                [claimed_state(s).name for s in claimed_from],
                [send_count(s) for s in claimed_from],
            ),
        )
        return [
            Claim(
                id=int(row[0]),
                message=message,
                client_reference=row[3],
                claimed_from=state,
                attempts=row[4] + send_count(state),
                enqueued_at=row[5],
                requeued_at=row[6],
                last_reason=row[7],
                owner=owner,
                lease_until=now + lease,
                token=row[8] + 1,
                trace_context=trace_from_json(row[9]),
            )
            for (row, message), state in zip(readable, claimed_from, strict=True)
        ]

    def renew(self, claims: Sequence[Claim], lease: float) -> frozenset[OutboxId]:
        lease = check_duration(lease, "lease")
        if not claims:
            return frozenset()
        with self._tx("renew leases") as cur:
            now = self._clock.now()
            cur.execute(
                self._q(
                    "UPDATE {table} AS t SET due_at = %s, updated_at = %s"
                    " FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, token)"
                    " WHERE t.id = v.id AND t.lease_token = v.token AND t.owner IS NOT NULL RETURNING t.id"
                ),
                (now + lease, now, [c.id for c in claims], [c.token for c in claims]),
            )
            return frozenset(int(row[0]) for row in cur.fetchall())

    def settle(self, settlements: Sequence[Settlement]) -> list[Claim]:
        checked = Settlement.check_batch(settlements)
        if not checked:
            return []
        with self._tx("record outcomes") as cur:
            now = self._clock.now()
            columns = (
                [s.claim.id for s in checked],
                [s.claim.token for s in checked],
                [s.state.name for s in checked],
                [s.due_at(now) for s in checked],
                [s.message_id for s in checked],
                [s.reason for s in checked],
                [errors_to_json(s.errors) if s.kind == "dead" else None for s in checked],
                [s.unsent for s in checked],
                [s.may_be_accepted for s in checked],
            )
            cur.execute(self._q(_SETTLE), (now, *columns))
            held = {(int(i), int(token)) for i, token in cur.fetchall()}
        return [s.claim for s in checked if (s.claim.id, s.claim.token) not in held]

    def resend(self, claim: Claim, lease: float) -> Claim:
        outcome_state(claim, "resend")
        lease = check_duration(lease, "lease")
        with self._tx("resend") as cur:
            cur.execute(
                self._q(
                    "SELECT {claim_columns} FROM {table} WHERE id = %s AND lease_token = %s AND owner IS NOT NULL"
                    " FOR UPDATE"
                ),
                (claim.id, claim.token),
            )
            row = cur.fetchone()
            if row is None:
                raise LeaseLostError(claim.id, claim.owner)
            row = (*row[:1], _S.QUEUED.name, *row[2:])
            [again] = self._lease(cur, [(row, claim.message)], claim.owner, self._clock.now(), lease)
            return again

    # -- operators ---------------------------------------------------------------------------------------------

    def requeue_dead(self, ids: Iterable[OutboxId] | None = None) -> int:
        wanted = None if ids is None else list(dict.fromkeys(check_ids(ids)))
        requeue = (
            "UPDATE {table} SET state = CASE WHEN may_be_accepted THEN %s ELSE %s END, due_at = %s, updated_at = %s,"
            " requeued_at = %s, attempts = 0, last_reason = NULL, errors = NULL"
        )
        states = (requeue_state(True).name, requeue_state(False).name)
        with self._tx("requeue dead letters") as cur:
            now = self._clock.now()
            if wanted is None:
                cur.execute(self._q(f"{requeue} WHERE state = %s"), (*states, now, now, now, _S.DEAD.name))
                return cur.rowcount
            cur.execute(self._q("SELECT id, state FROM {table} WHERE id = ANY(%s) FOR UPDATE"), (wanted,))
            found = {int(i): SubmissionState[state] for i, state in cur.fetchall()}
            for i in wanted:
                if found.get(i) is not _S.DEAD:
                    raise not_dead(i, found.get(i))
            cur.execute(self._q(f"{requeue} WHERE id = ANY(%s)"), (*states, now, now, now, wanted))
            return len(wanted)

    def status(self, outbox_id: OutboxId) -> OutboxStatus | None:
        with self._tx("read a status") as cur:
            cur.execute(self._q("SELECT {status_columns} FROM {table} WHERE id = %s"), (outbox_id,))
            row = cur.fetchone()
        return None if row is None else _status(row)

    def dead_letters(self, limit: int, after: OutboxId | None = None) -> list[OutboxStatus]:
        limit, after = check_limit(limit), check_after(after)
        with self._tx("list dead letters") as cur:
            cur.execute(
                self._q("SELECT {status_columns} FROM {table} WHERE state = %s AND id > %s ORDER BY id LIMIT %s"),
                (_S.DEAD.name, -1 if after is None else after, limit),
            )
            rows = cur.fetchall()
        return [_status(row) for row in rows]

    def find(
        self, *, client_reference: str | None = None, recipient: str | None = None, limit: int = 50
    ) -> list[OutboxStatus]:
        ref, to = check_lookup(client_reference, recipient)
        limit = check_limit(limit)
        # The recipient lives only inside the stored message: a scan, which an operator's question can afford.
        where = (
            "client_reference = %s"
            if ref is not None
            else "lower(convert_from(message, 'UTF8')::jsonb ->> 'recipientAddress') = lower(%s)"
        )
        with self._tx("look messages up") as cur:
            cur.execute(
                self._q(f"SELECT {{status_columns}} FROM {{table}} WHERE {where} ORDER BY id DESC LIMIT %s"),  # noqa: S608
                (ref if ref is not None else to, limit),
            )
            rows = cur.fetchall()
        return [_status(row) for row in rows]

    def counts(self) -> dict[SubmissionState, int]:
        with self._tx("count rows") as cur:
            cur.execute(self._q("SELECT state, count(*) FROM {table} GROUP BY state"))
            rows = cur.fetchall()
        return dict.fromkeys(SubmissionState, 0) | {SubmissionState[state]: int(n) for state, n in rows}

    def oldest_pending(self) -> float | None:
        with self._tx("read the oldest pending message") as cur:
            cur.execute(
                self._q("SELECT min(coalesce(requeued_at, enqueued_at)) FROM {table} WHERE state NOT IN (%s, %s)"),
                (_S.ACCEPTED.name, _S.DEAD.name),
            )
            row = cur.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def prune_accepted(self, older_than: float) -> int:
        older_than = check_duration(older_than, "older_than", allow_zero=True)
        with self._tx("prune accepted rows") as cur:
            cutoff = self._clock.now() - older_than
            cur.execute(
                self._q("DELETE FROM {table} WHERE state = %s AND updated_at <= %s"), (_S.ACCEPTED.name, cutoff)
            )
            return cur.rowcount

    def wait_for_work(self, timeout: float) -> bool:
        """Return True once a row is due or an enqueue is notified; False after ``timeout`` real seconds."""
        timeout = check_duration(timeout, "timeout", allow_zero=True)
        deadline = time.monotonic() + timeout
        listener = self._listen()
        while True:
            with self._tx("look for work") as cur:
                cur.execute(self._q("SELECT min(due_at) FROM {table} WHERE due_at IS NOT NULL"))
                next_due = cur.fetchone()[0]  # type: ignore[index]
            now = self._clock.now()
            if next_due is not None and next_due <= now:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._translate("wait for a notification"):
                for _ in listener.notifies(timeout=idle_wait(now, next_due, left, self._poll), stop_after=1):
                    return True

    def _listen(self) -> psycopg.Connection[Any]:
        """The connection that LISTENs, opened on first wait; it listens before looking, so no wake-up is lost."""
        with self._lock:
            if self._listener is None or self._listener.broken:
                with self._translate("listen for enqueues"):
                    self._listener = self._connect()
                    self._listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            return self._listener

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in (self._conn, self._listener):
                if conn is not None:
                    conn.close()
            self._conn = self._listener = None


def _status(row: tuple[Any, ...]) -> OutboxStatus:
    """An OutboxStatus from a row read with _STATUS_COLUMNS."""
    values = dict(zip(_STATUS_FIELDS, row, strict=True))
    values["id"] = int(values["id"])
    values["state"] = SubmissionState[values["state"]]
    values["errors"] = errors_from_json(values["errors"])
    return OutboxStatus(**values)
