"""What only the PostgreSQL outbox promises: the caller's transaction, explicit schema, NOTIFY wake-ups, SKIP LOCKED."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from flowmailer.adapters.postgres_outbox import PostgresOutbox
from flowmailer.core import ConfigurationError, OutboxError, SubmissionState, SubmitMessage
from flowmailer.testing import FakeClock
from tests.outbox.postgres_server import PostgresServer

pytestmark = pytest.mark.postgres
LEASE = 300.0
Make = Callable[..., PostgresOutbox]


def _message(n: int) -> SubmitMessage:
    return SubmitMessage(sender_address="s@example.com", recipient_address=f"r{n}@example.com", text=str(n))


@pytest.fixture
def table() -> str:
    return f"p_{uuid.uuid4().hex}"


@pytest.fixture
def make(postgres_server: PostgresServer, table: str) -> Iterator[Make]:
    """Outboxes on one fresh table (created once, explicitly); every one is closed after the test."""
    made: list[PostgresOutbox] = []

    def make(**kwargs: object) -> PostgresOutbox:
        outbox = PostgresOutbox(postgres_server.conninfo, table=table, **kwargs)  # type: ignore[arg-type]
        made.append(outbox)
        return outbox

    make().create_schema()
    yield make
    for outbox in made:
        outbox.close()


@pytest.fixture
def conn(postgres_server: PostgresServer) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """The application's own connection, in a transaction as psycopg opens one by default."""
    with psycopg.connect(postgres_server.conninfo) as connection:
        yield connection


def test_enqueue_in_the_callers_transaction_appears_only_at_commit(
    make: Make, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    outbox = make()
    outbox_id = outbox.enqueue(_message(1), connection=conn)
    assert outbox.status(outbox_id) is None
    assert outbox.claim("relay", 10, LEASE) == []
    conn.commit()
    status = outbox.status(outbox_id)
    assert status is not None
    assert status.state is SubmissionState.QUEUED


def test_enqueue_in_the_callers_transaction_vanishes_at_rollback(
    make: Make, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    outbox = make()
    outbox_id = outbox.enqueue(_message(1), dedupe_key="k", connection=conn)
    conn.rollback()
    assert outbox.status(outbox_id) is None
    assert sum(outbox.counts().values()) == 0
    assert outbox.enqueue(_message(2), dedupe_key="k") != outbox_id


def test_a_refused_batch_leaves_the_callers_transaction_usable(
    make: Make, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    outbox = make()
    kept = outbox.enqueue(_message(1).with_client_reference("twin"), connection=conn)
    with pytest.raises(ConfigurationError, match="twin"):
        outbox.enqueue_many([_message(2), _message(3).with_client_reference("twin")], connection=conn)
    conn.commit()
    assert outbox.counts()[SubmissionState.QUEUED] == 1
    assert outbox.status(kept) is not None


def test_the_table_is_created_only_when_asked(postgres_server: PostgresServer) -> None:
    outbox = PostgresOutbox(postgres_server.conninfo, table=f"n_{uuid.uuid4().hex}", schema="flowmailer")
    with pytest.raises(ConfigurationError, match="outbox init") as caught:
        outbox.enqueue(_message(1))
    assert caught.value.field == "table"
    outbox.create_schema()
    outbox.create_schema()
    assert outbox.counts()[SubmissionState.QUEUED] == 0
    outbox.close()


@pytest.mark.parametrize(
    ("table", "schema", "field"),
    [("Outbox", "public", "table"), ("x; drop", "public", "table"), ("a" * 49, "public", "table"), ("t", "", "schema")],
)
def test_names_must_be_plain_sql_names(postgres_server: PostgresServer, table: str, schema: str, field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        PostgresOutbox(postgres_server.conninfo, table=table, schema=schema)
    assert caught.value.field == field


def test_an_enqueue_elsewhere_wakes_an_idle_relay(make: Make) -> None:
    # The waiter's clock lags, so the new row is not yet due for it: only the NOTIFY can wake it.
    waiter = make(clock=FakeClock(start=1_000.0), poll_interval=3600.0)
    assert waiter.wait_for_work(0) is False  # listening from here on
    woke: list[bool] = []
    thread = threading.Thread(target=lambda: woke.append(waiter.wait_for_work(120)))
    thread.start()
    make(clock=FakeClock(start=2_000.0)).enqueue(_message(1))
    thread.join(10.0)
    assert not thread.is_alive()
    assert woke == [True]


def test_concurrent_relays_never_claim_the_same_row(make: Make) -> None:
    ids = make().enqueue_many([_message(i) for i in range(300)])
    relays = [make() for _ in range(3)]
    claimed: list[list[int]] = [[] for _ in relays]

    def drain(outbox: PostgresOutbox, mine: list[int]) -> None:
        while batch := outbox.claim(f"relay-{id(outbox)}", 7, LEASE):
            mine += [c.id for c in batch]

    threads = [threading.Thread(target=drain, args=pair) for pair in zip(relays, claimed, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10.0)
        assert not t.is_alive()
    assert sorted(i for c in claimed for i in c) == ids


def test_a_lost_connection_is_an_outbox_error_then_reconnects(
    make: Make, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    outbox = make()
    outbox.enqueue(_message(1))
    assert outbox._conn is not None  # the adapter's connection, cut from the server side below
    conn.execute("SELECT pg_terminate_backend(%s)", (outbox._conn.info.backend_pid,))
    conn.commit()
    with pytest.raises(OutboxError):
        outbox.enqueue(_message(2))
    assert outbox.counts()[SubmissionState.QUEUED] == 1


def test_an_unreadable_row_is_dead_and_does_not_block_the_queue(
    make: Make, table: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    outbox = make()
    bad, good = outbox.enqueue(_message(1)), outbox.enqueue(_message(2))
    damage = sql.SQL("UPDATE {} SET message = %s WHERE id = %s").format(sql.Identifier(table))
    conn.execute(damage, (b"not json", bad))
    conn.commit()
    assert [c.id for c in outbox.claim("a", 10, LEASE)] == [good]
    status = outbox.status(bad)
    assert status is not None
    assert (status.state, status.attempts, status.due_at) == (SubmissionState.DEAD, 1, None)
    assert "cannot be read" in (status.last_reason or "")
