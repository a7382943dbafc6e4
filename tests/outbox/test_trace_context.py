"""A message's trace context: taken from the enqueuing code's current span, kept in its row, carried by its claims,
and kept by outbox tables that an older version made (they gain the column when opened)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from psycopg import sql

from flowmailer.adapters.postgres_outbox import PostgresOutbox
from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.core import ConfigurationError, SubmissionState, SubmitMessage, TraceContext
from flowmailer.ports import Outbox
from flowmailer.testing import FakeClock, MemoryOutbox
from tests.outbox.postgres_server import PostgresServer

LEASE = 30.0
MESSAGE = SubmitMessage(sender_address="s@example.com", recipient_address="r@example.com", text="hi")
GIVEN = TraceContext("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "given=1")

# The outbox table as the first release made it, before trace_context: kept here, since the code no longer has it.
OLD_SQLITE_DDL = """
CREATE TABLE outbox (
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
    may_be_accepted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_due ON outbox (due_at, id) WHERE due_at IS NOT NULL;
CREATE INDEX outbox_state ON outbox (state, updated_at);
"""
OLD_POSTGRES_DDL = (
    """CREATE TABLE {table} (
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
        may_be_accepted BOOLEAN NOT NULL DEFAULT FALSE
    )""",
    "CREATE INDEX {due_index} ON {table} (due_at, id) WHERE due_at IS NOT NULL",
    "CREATE INDEX {state_index} ON {table} (state, updated_at)",
)
# A row an older relay wrote: the message as stored, tagged with its reference.
OLD_ROW = (
    "QUEUED", 0.0, "old-1", b'{"senderAddress":"s@example.com","recipientAddress":"r@example.com","text":"hi",'
    b'"tags":["ref:old-1"]}', 0.0, 0.0,
)  # fmt: skip

Factory = Callable[[FakeClock], Outbox]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    made: list[Outbox] = []

    def make(clock: FakeClock) -> Outbox:
        outbox: Outbox
        if request.param == "memory":
            outbox = MemoryOutbox(clock)
        elif request.param == "sqlite":
            outbox = SQLiteOutbox(tmp_path / "outbox.db", clock=clock)
        else:
            server: PostgresServer = request.getfixturevalue("postgres_server")
            outbox = PostgresOutbox(server.conninfo, table=f"t_{uuid.uuid4().hex}", clock=clock)
            outbox.create_schema()
        made.append(outbox)
        return outbox

    yield make
    for outbox in made:
        outbox.close()


def traceparent(span: trace.Span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def test_enqueue_inside_a_span_keeps_its_context_and_an_explicit_one_wins(factory: Factory) -> None:
    outbox = factory(FakeClock())
    tracer = TracerProvider().get_tracer("app")
    with tracer.start_as_current_span("checkout") as span:
        one = outbox.enqueue(MESSAGE)
        batch = outbox.enqueue_many([MESSAGE, MESSAGE])
        given = outbox.enqueue(MESSAGE, trace_context=GIVEN)
    outside = outbox.enqueue(MESSAGE)
    current = TraceContext(traceparent(span))
    by_id = {c.id: c.trace_context for c in outbox.claim("relay", 10, LEASE)}
    assert by_id == {one: current, batch[0]: current, batch[1]: current, given: GIVEN, outside: None}


def test_a_remote_parents_tracestate_and_unsampled_flag_are_kept(factory: Factory) -> None:
    outbox = factory(FakeClock())
    parent = SpanContext(
        0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, is_remote=True,
        trace_flags=TraceFlags(0), trace_state=TraceState([("vendor", "x"), ("other", "y")]),
    )  # fmt: skip
    with trace.use_span(NonRecordingSpan(parent)):
        outbox.enqueue(MESSAGE)
    [claim] = outbox.claim("relay", 1, LEASE)
    assert claim.trace_context == TraceContext(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "vendor=x,other=y"
    )


def test_without_opentelemetry_enqueue_imports_none_and_stores_no_context(tmp_path: Path) -> None:
    """The capture looks for a loaded opentelemetry.trace only: it neither imports it nor needs it installed."""
    script = f"""
import sys
sys.modules["opentelemetry"] = None  # as if it were not installed: importing it would raise
from flowmailer import SQLiteOutbox, SubmitMessage
outbox = SQLiteOutbox({str(tmp_path / "o.db")!r})
outbox.enqueue(SubmitMessage(sender_address="s@example.com", recipient_address="r@example.com", text="hi"))
[claim] = outbox.claim("relay", 1, 30.0)
assert claim.trace_context is None
assert not any(name.startswith("opentelemetry.") for name in sys.modules), sorted(sys.modules)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


def test_a_sqlite_outbox_made_by_the_old_schema_gains_the_column_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SQLITE_DDL)
        conn.execute(
            "INSERT INTO outbox (state, due_at, client_reference, message, enqueued_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            OLD_ROW,
        )
    conn.close()
    reader = SQLiteOutbox(path, read_only=True)  # a reader writes nothing, not even the new column
    assert reader.counts()[SubmissionState.QUEUED] == 1
    reader.close()
    assert "trace_context" not in _sqlite_columns(path)
    outbox = SQLiteOutbox(path, create=False)  # what the relay and every command but `outbox init` do
    assert "trace_context" in _sqlite_columns(path)
    new = outbox.enqueue(MESSAGE, trace_context=GIVEN)
    claims = {c.client_reference: c for c in outbox.claim("relay", 10, LEASE)}
    assert claims["old-1"].trace_context is None
    assert [c.trace_context for c in claims.values() if c.id == new] == [GIVEN]
    outbox.close()
    SQLiteOutbox(path).close()  # opening it again changes nothing


def _sqlite_columns(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
    finally:
        conn.close()


@pytest.mark.postgres
@pytest.mark.parametrize("first_use", ["enqueue", "enqueue in the caller's transaction", "create_schema"])
def test_a_postgres_outbox_made_by_the_old_schema_gains_the_column(
    postgres_server: PostgresServer, first_use: str
) -> None:
    table = f"old_{uuid.uuid4().hex}"
    names = {
        "table": sql.Identifier("public", table),
        "due_index": sql.Identifier(f"{table}_due"),
        "state_index": sql.Identifier(f"{table}_state"),
    }
    with psycopg.connect(postgres_server.conninfo, autocommit=True) as conn:
        for statement in OLD_POSTGRES_DDL:
            conn.execute(sql.SQL(statement).format(**names))
        conn.execute(
            sql.SQL(
                "INSERT INTO {table} (state, due_at, client_reference, message, enqueued_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)"
            ).format(**names),
            OLD_ROW,
        )
    outbox = PostgresOutbox(postgres_server.conninfo, table=table)
    try:
        if first_use == "create_schema":
            outbox.create_schema()
            new = outbox.enqueue(MESSAGE, trace_context=GIVEN)
        elif first_use == "enqueue":
            new = outbox.enqueue(MESSAGE, trace_context=GIVEN)
        else:
            with psycopg.connect(postgres_server.conninfo) as app:
                new = outbox.enqueue(MESSAGE, trace_context=GIVEN, connection=app)
        claims = {c.client_reference: c for c in outbox.claim("relay", 10, LEASE)}
        assert claims["old-1"].trace_context is None
        assert [c.trace_context for c in claims.values() if c.id == new] == [GIVEN]
    finally:
        outbox.close()


@pytest.mark.postgres
def test_a_user_that_may_not_alter_the_old_table_is_told_to_run_outbox_init(postgres_server: PostgresServer) -> None:
    table, role = f"old_{uuid.uuid4().hex}", f"app_{uuid.uuid4().hex[:8]}"
    names = {
        "table": sql.Identifier("public", table),
        "due_index": sql.Identifier(f"{table}_due"),
        "state_index": sql.Identifier(f"{table}_state"),
    }
    with psycopg.connect(postgres_server.conninfo, autocommit=True) as conn:
        for statement in OLD_POSTGRES_DDL:
            conn.execute(sql.SQL(statement).format(**names))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(names["table"], sql.Identifier(role))
        )
    outbox = PostgresOutbox(postgres_server.conninfo.replace("user=postgres", f"user={role}"), table=table)
    try:
        with pytest.raises(ConfigurationError) as raised:
            outbox.enqueue(MESSAGE)
        assert raised.value.field == "table"
        assert "trace_context" in raised.value.problem
        assert "flowmailer outbox init" in raised.value.fix
    finally:
        outbox.close()
        with psycopg.connect(postgres_server.conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.parametrize(
    ("traceparent", "tracestate", "field"),
    [
        ("not a traceparent", "", "trace_context.traceparent"),
        ("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", "", "trace_context.traceparent"),  # upper case
        ("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "", "trace_context.traceparent"),  # version ff
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", "", "trace_context.traceparent"),  # no trace id
        ("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", "", "trace_context.traceparent"),  # no span id
        (GIVEN.traceparent, "a=1\r\nX-Injected: 1", "trace_context.tracestate"),
        (GIVEN.traceparent, "a=" + "1" * 600, "trace_context.tracestate"),
    ],
)
def test_a_trace_context_that_is_not_w3cs_is_refused_by_field(traceparent: str, tracestate: str, field: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        TraceContext(traceparent, tracestate)
    assert raised.value.field == field


def test_a_stored_context_that_does_not_read_back_never_holds_the_message_up(tmp_path: Path) -> None:
    outbox = SQLiteOutbox(tmp_path / "outbox.db")
    outbox.enqueue(MESSAGE, trace_context=GIVEN)
    conn = sqlite3.connect(tmp_path / "outbox.db")
    with conn:
        conn.execute("""UPDATE outbox SET trace_context = '{"traceparent": "garbled"}'""")
    conn.close()
    [claim] = outbox.claim("relay", 1, LEASE)
    assert claim.trace_context is None
    outbox.close()
