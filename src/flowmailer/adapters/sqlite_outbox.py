"""The default outbox: one SQLite file on this machine, shared safely by threads and by several processes."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from flowmailer._trace import or_current
from flowmailer.adapters._clock import SystemClock
from flowmailer.adapters._sqlite_file import open_sqlite, transaction
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

__all__ = ["SQLiteOutbox", "default_outbox_path"]

_S = SubmissionState

# Rows in a final state have no due_at, so the partial index holds only the live queue and a claim reads it in
# order without touching the accepted history.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    due_at REAL,
    client_reference TEXT NOT NULL UNIQUE,
    dedupe_key TEXT UNIQUE,
    message BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    enqueued_at REAL NOT NULL,
    requeued_at REAL,
    updated_at REAL NOT NULL,
    owner TEXT,
    lease_token INTEGER NOT NULL DEFAULT 0,
    message_id TEXT,
    last_reason TEXT,
    errors TEXT,
    may_be_accepted INTEGER NOT NULL DEFAULT 0,
    trace_context TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (due_at, id) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, updated_at);
"""

# A batch of settlements travels as one JSON array of [id, token, state, due_at, message_id, reason, errors,
# unsent, may_be_accepted], so a settle is four statements whatever its size: every statement hands the GIL to the
# relay's busy workers and waits to get it back, which costs far more than the writes themselves.
_BATCH = (
    "(SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS token,"
    " json_extract(value, '$[2]') AS state, json_extract(value, '$[3]') AS due_at,"
    " json_extract(value, '$[4]') AS message_id, json_extract(value, '$[5]') AS reason,"
    " json_extract(value, '$[6]') AS errors, json_extract(value, '$[7]') AS unsent,"
    " json_extract(value, '$[8]') AS may_be_accepted, key FROM json_each(?)) AS v"
)
# The claims that no longer hold their rows, by position in the batch.
_LOST = (
    f"SELECT v.key FROM {_BATCH} LEFT JOIN outbox AS o"  # noqa: S608
    " ON o.id = v.id AND o.lease_token = v.token AND o.owner IS NOT NULL WHERE o.id IS NULL ORDER BY v.key"
)
# Moves rows out of their claims' hands, only where the claim still holds the row; a NULL keeps the stored value.
_SETTLE = (
    "UPDATE outbox SET state = v.state, due_at = v.due_at, owner = NULL, updated_at = ?,"  # noqa: S608
    " message_id = coalesce(v.message_id, outbox.message_id), last_reason = coalesce(v.reason, outbox.last_reason),"
    " errors = coalesce(v.errors, outbox.errors), attempts = outbox.attempts - v.unsent,"
    f" may_be_accepted = v.may_be_accepted FROM {_BATCH}"
    " WHERE outbox.id = v.id AND outbox.lease_token = v.token AND outbox.owner IS NOT NULL"
)
# Leases claimed rows in one statement: a JSON array of [id, state, sends] (the state each row moves to, and 1 if
# the claim sends the message).
_LEASE = (
    "UPDATE outbox SET state = v.state, due_at = ?, owner = ?, lease_token = lease_token + 1,"
    " attempts = attempts + v.sends, updated_at = ? FROM (SELECT json_extract(value, '$[0]') AS id,"
    " json_extract(value, '$[1]') AS state, json_extract(value, '$[2]') AS sends FROM json_each(?)) AS v"
    " WHERE outbox.id = v.id"
)
#: Columns added since the first release, with their types: added at open to a table an older version made.
_ADDED = {"trace_context": "TEXT"}
#: The outbox table's first columns: a table of that name without them is another program's.
_COLUMNS = frozenset(
    {
        "id", "state", "due_at", "client_reference", "dedupe_key", "message", "attempts", "enqueued_at",
        "requeued_at", "updated_at", "owner", "lease_token", "message_id", "last_reason", "errors", "may_be_accepted",
    }
)  # fmt: skip
_CLAIM_COLUMNS = (
    "id, state, message, client_reference, attempts, enqueued_at, requeued_at, last_reason, lease_token, trace_context"
)
#: The columns are named after OutboxStatus's fields, in its order.
_STATUS_FIELDS = tuple(field.name for field in attrs.fields(OutboxStatus))
_STATUS_COLUMNS = ", ".join(_STATUS_FIELDS)


class _LeasesLostError(Exception):
    """Rolls back a settle that found claims which no longer hold their rows."""


def default_outbox_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/flowmailer/outbox.db``, else ``~/.local/share/flowmailer/outbox.db``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(base) / "flowmailer" / "outbox.db"


class SQLiteOutbox(SingleClaimOutcomes):
    """A :class:`flowmailer.ports.Outbox` in one SQLite file: WAL, ``synchronous=FULL``, created with mode 0600.

    Every write is one ``BEGIN IMMEDIATE`` transaction, so claims are atomic across threads and processes: a
    second relay on the same file never gets a row that is already leased.

    A new file is made an outbox; an existing one must be an outbox already (or hold only flowmailer's cursor and
    report tables). Another program's database, or a damaged file (SQLite's ``quick_check``), is refused with a
    ``ConfigurationError`` before anything is written to it. ``create=False`` refuses to make a missing file or
    table (what the command does everywhere but ``flowmailer outbox init``); ``read_only=True`` reads an existing
    outbox without writing to it at all (``status``, ``dead list``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        clock: Clock | None = None,
        busy_timeout: float = 30.0,
        poll_interval: float = 0.2,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path) if path is not None else default_outbox_path()
        self._clock: Clock = clock or SystemClock()
        self._poll = check_duration(poll_interval, "poll_interval")
        timeout = check_duration(busy_timeout, "busy_timeout")
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = open_sqlite(
            self.path,
            timeout,
            schema=filter(str.strip, _SCHEMA.split(";")),
            tables={"outbox": _COLUMNS},
            holds="an outbox",
            create=create,
            read_only=read_only,
        )
        if not read_only:
            _add_columns(self._conn, self.path)

    # -- plumbing ----------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _db(self, what: str, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """The connection under the lock, inside one transaction; storage failures become OutboxError."""
        with self._lock:
            if self._conn is None:
                raise ConfigurationError("outbox", f"{self.path} is closed", "create a new SQLiteOutbox")
            with transaction(self._conn, f"the SQLite outbox at {self.path} could not {what}", write=write) as conn:
                yield conn

    # -- enqueue -----------------------------------------------------------------------------------------------

    def enqueue(
        self, message: SubmitMessage, *, dedupe_key: str | None = None, trace_context: TraceContext | None = None
    ) -> OutboxId:
        [checked] = check_messages([message])
        key = check_dedupe_key(dedupe_key)
        trace = trace_to_json(or_current(trace_context))
        with self._db("enqueue") as conn:
            if key is not None:
                row = conn.execute("SELECT id FROM outbox WHERE dedupe_key = ?", (key,)).fetchone()
                if row is not None:
                    return int(row[0])
            return self._insert(conn, [checked], key, trace)[0]

    def enqueue_many(
        self, messages: Iterable[SubmitMessage], *, trace_context: TraceContext | None = None
    ) -> list[OutboxId]:
        checked = check_messages(messages, "messages")
        trace = trace_to_json(or_current(trace_context))
        with self._db("enqueue") as conn:
            return self._insert(conn, checked, None, trace)

    def _insert(
        self, conn: sqlite3.Connection, messages: list[SubmitMessage], key: str | None, trace: str | None
    ) -> list[OutboxId]:
        rows = []
        for message in messages:
            tagged, ref = tag_message(message, uuid.uuid4().hex)
            rows.append((ref, message_to_json(tagged)))
        now = self._clock.now()
        ids = []
        for ref, body in rows:
            try:
                cur = conn.execute(
                    "INSERT INTO outbox (state, due_at, client_reference, dedupe_key, message, enqueued_at, updated_at,"
                    " trace_context) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (_S.QUEUED.name, now, ref, key, body, now, now, trace),
                )
            except sqlite3.IntegrityError as e:
                raise duplicate_reference(ref) from e
            ids.append(OutboxId(cur.lastrowid or 0))
        return ids

    # -- claims and outcomes -----------------------------------------------------------------------------------

    def claim(self, owner: str, limit: int, lease: float) -> list[Claim]:
        owner = check_owner(owner)
        limit = check_limit(limit)
        lease = check_duration(lease, "lease")
        with self._db("claim") as conn:
            now = self._clock.now()
            rows = conn.execute(
                f"SELECT {_CLAIM_COLUMNS} FROM outbox WHERE due_at <= ? ORDER BY due_at, id LIMIT ?",  # noqa: S608
                (now, limit),
            ).fetchall()
            readable = []
            for row in rows:
                try:
                    readable.append((row, message_from_json(row[2])))
                except ConfigurationError as e:
                    state, reason = unreadable(SubmissionState[row[1]], e)
                    conn.execute(
                        "UPDATE outbox SET state = ?, due_at = NULL, owner = NULL, attempts = attempts + 1,"
                        " lease_token = lease_token + 1, last_reason = ?, updated_at = ? WHERE id = ?",
                        (state.name, reason, now, row[0]),
                    )
            return self._lease(conn, readable, owner, now, lease)

    @staticmethod
    def _lease(
        conn: sqlite3.Connection,
        readable: list[tuple[tuple[Any, ...], SubmitMessage]],
        owner: str,
        now: float,
        lease: float,
    ) -> list[Claim]:
        """Lease rows read with _CLAIM_COLUMNS (and their decoded messages) in one statement, inside the caller's
        write transaction."""
        if not readable:
            return []
        claimed_from = [SubmissionState[row[1]] for row, _ in readable]
        moves = json.dumps(
            [[row[0], claimed_state(s).name, send_count(s)] for (row, _), s in zip(readable, claimed_from, strict=True)]
        )
        conn.execute(_LEASE, (now + lease, owner, now, moves))
        return [
            Claim(
                id=row[0],
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
        held = []
        with self._db("renew leases") as conn:
            now = self._clock.now()
            for claim in claims:
                cur = conn.execute(
                    "UPDATE outbox SET due_at = ?, updated_at = ?"
                    " WHERE id = ? AND lease_token = ? AND owner IS NOT NULL",
                    (now + lease, now, claim.id, claim.token),
                )
                if cur.rowcount == 1:
                    held.append(claim.id)
        return frozenset(held)

    def settle(self, settlements: Sequence[Settlement]) -> list[Claim]:
        checked = Settlement.check_batch(settlements)
        if not checked:
            return []
        now = self._clock.now()
        batch = json.dumps(
            [
                [
                    *(s.claim.id, s.claim.token, s.state.name, s.due_at(now), s.message_id, s.reason),
                    errors_to_json(s.errors) if s.kind == "dead" else None,
                    s.unsent,
                    int(s.may_be_accepted),
                ]
                for s in checked
            ]
        )
        # Every claim still holds its row, as a relay's nearly always do: one statement did it all. Otherwise that
        # statement is undone, and the lost claims are found before the held ones are recorded.
        with contextlib.suppress(_LeasesLostError), self._db("record outcomes") as conn:
            if conn.execute(_SETTLE, (now, batch)).rowcount == len(checked):
                return []
            raise _LeasesLostError
        with self._db("record outcomes") as conn:
            lost = [checked[i].claim for (i,) in conn.execute(_LOST, (batch,)).fetchall()]
            conn.execute(_SETTLE, (now, batch))
        return lost

    def resend(self, claim: Claim, lease: float) -> Claim:
        outcome_state(claim, "resend")
        lease = check_duration(lease, "lease")
        with self._db("resend") as conn:
            now = self._clock.now()
            row = conn.execute(
                f"SELECT {_CLAIM_COLUMNS} FROM outbox WHERE id = ? AND lease_token = ? AND owner IS NOT NULL",  # noqa: S608
                (claim.id, claim.token),
            ).fetchone()
            if row is None:
                raise LeaseLostError(claim.id, claim.owner)
            [again] = self._lease(
                conn, [((*row[:1], _S.QUEUED.name, *row[2:]), claim.message)], claim.owner, now, lease
            )
            return again

    # -- operators ---------------------------------------------------------------------------------------------

    def requeue_dead(self, ids: Iterable[OutboxId] | None = None) -> int:
        wanted = None if ids is None else list(dict.fromkeys(check_ids(ids)))
        requeue = (
            "UPDATE outbox SET state = CASE WHEN may_be_accepted THEN ? ELSE ? END, due_at = ?, updated_at = ?,"
            " requeued_at = ?, attempts = 0, last_reason = NULL, errors = NULL"
        )
        states = (requeue_state(True).name, requeue_state(False).name)
        with self._db("requeue dead letters") as conn:
            now = self._clock.now()
            if wanted is None:
                return conn.execute(f"{requeue} WHERE state = ?", (*states, now, now, now, _S.DEAD.name)).rowcount
            for i in wanted:
                row = conn.execute("SELECT state FROM outbox WHERE id = ?", (i,)).fetchone()
                if row is None or row[0] != _S.DEAD.name:
                    raise not_dead(i, None if row is None else SubmissionState[row[0]])
            conn.executemany(f"{requeue} WHERE id = ?", [(*states, now, now, now, i) for i in wanted])
            return len(wanted)

    def status(self, outbox_id: OutboxId) -> OutboxStatus | None:
        with self._db("read a status", write=False) as conn:
            row = conn.execute(f"SELECT {_STATUS_COLUMNS} FROM outbox WHERE id = ?", (outbox_id,)).fetchone()  # noqa: S608
        return None if row is None else _status(row)

    def dead_letters(self, limit: int, after: OutboxId | None = None) -> list[OutboxStatus]:
        limit, after = check_limit(limit), check_after(after)
        with self._db("list dead letters", write=False) as conn:
            rows = conn.execute(
                f"SELECT {_STATUS_COLUMNS} FROM outbox WHERE state = ? AND id > ? ORDER BY id LIMIT ?",  # noqa: S608
                (_S.DEAD.name, -1 if after is None else after, limit),
            ).fetchall()
        return [_status(row) for row in rows]

    def find(
        self, *, client_reference: str | None = None, recipient: str | None = None, limit: int = 50
    ) -> list[OutboxStatus]:
        ref, to = check_lookup(client_reference, recipient)
        limit = check_limit(limit)
        # The recipient lives only inside the stored message: a scan, which an operator's question can afford.
        where = (
            "client_reference = ?"
            if ref is not None
            else "lower(json_extract(CAST(message AS TEXT), '$.recipientAddress')) = lower(?)"
        )
        with self._db("look messages up", write=False) as conn:
            rows = conn.execute(
                f"SELECT {_STATUS_COLUMNS} FROM outbox WHERE {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
                (ref if ref is not None else to, limit),
            ).fetchall()
        return [_status(row) for row in rows]

    def counts(self) -> dict[SubmissionState, int]:
        with self._db("count rows", write=False) as conn:
            rows = conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall()
        return dict.fromkeys(SubmissionState, 0) | {SubmissionState[state]: n for state, n in rows}

    def oldest_pending(self) -> float | None:
        with self._db("read the oldest pending message", write=False) as conn:
            row = conn.execute(
                "SELECT min(coalesce(requeued_at, enqueued_at)) FROM outbox WHERE state NOT IN (?, ?)",
                (_S.ACCEPTED.name, _S.DEAD.name),
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def prune_accepted(self, older_than: float) -> int:
        older_than = check_duration(older_than, "older_than", allow_zero=True)
        with self._db("prune accepted rows") as conn:
            cutoff = self._clock.now() - older_than
            cur = conn.execute("DELETE FROM outbox WHERE state = ? AND updated_at <= ?", (_S.ACCEPTED.name, cutoff))
            return cur.rowcount

    def wait_for_work(self, timeout: float) -> bool:
        timeout = check_duration(timeout, "timeout", allow_zero=True)
        deadline = self._clock.monotonic() + timeout
        last = False
        while True:
            with self._db("look for work", write=False) as conn:
                next_due = conn.execute("SELECT min(due_at) FROM outbox WHERE due_at IS NOT NULL").fetchone()[0]
            now = self._clock.now()
            if next_due is not None and next_due <= now:
                return True
            left = deadline - self._clock.monotonic()
            if last or left <= 0:
                return False
            wait = idle_wait(now, next_due, left, self._poll)
            # Having slept all that was left, look once more and stop: a remainder too small to move the clock
            # (below a float's resolution at 1.7e9) must not keep the loop going.
            last = wait >= left
            self._clock.sleep(wait)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _add_columns(conn: sqlite3.Connection, path: Path) -> None:
    """Give an outbox table made by an older version the columns added since (there is nothing else to migrate)."""

    def missing() -> list[str]:
        have = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
        return [column for column in _ADDED if have and column not in have]

    try:
        if not missing():
            return
        conn.execute("BEGIN IMMEDIATE")  # looked at again under the write lock: two processes opening it add once
        try:
            for column in missing():
                conn.execute(f"ALTER TABLE outbox ADD COLUMN {column} {_ADDED[column]}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.Error as e:
        conn.close()
        raise OutboxError(f"the SQLite outbox at {path} could not add its newer columns: {e}") from e


def _status(row: tuple[Any, ...]) -> OutboxStatus:
    """An OutboxStatus from a row read with _STATUS_COLUMNS."""
    values = dict(zip(_STATUS_FIELDS, row, strict=True))
    values["state"] = SubmissionState[values["state"]]
    values["errors"] = errors_from_json(values["errors"])
    return OutboxStatus(**values)
