"""Three relay processes on one outbox share their credential's 10 connections, while one of them is SIGKILLed;
threaded relays, and async ones pipelining (a slot is one connection, carrying up to the depth of requests).

The fake counts the connections open at once (a client's closed ones as soon as the kernel says so); the relays
share leased slots in the outbox's database. The fake must never see more than 10, every message must be
accepted exactly once, and the killed relay's slots must come back to the other two within its lease (read from
the slot table). The survivors run until told to stop, so that the slots changing hands is seen whether or not
work is left by then.
"""

from __future__ import annotations

import functools
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import psycopg
import pytest

from flowmailer.adapters import SystemClock
from flowmailer.adapters.postgres_outbox import PostgresOutbox
from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.core import SubmissionState
from flowmailer.ports import Outbox
from flowmailer.testing._fake import FakeFlowmailer, Records
from tests.outbox.postgres_server import PostgresServer
from tests.relay.chaos import Tally, enqueue, start_relay, stderr_of

RELAYS = 3
DEADLINE = 240.0
SLOT_LEASE = 9.0  # seconds: the killed relay's slots are free again this long after its last renewal

#: What the slot table holds now: {owner: slots held} for the fake's credential.
SlotRows = Callable[[], dict[str, int]]


def accepted_at_least(n: int, records: Records) -> bool:
    return len(records.accepted) >= n


def until(condition: Callable[[], bool], deadline: float, what: str) -> None:
    """Poll with a deadline (``time.monotonic()``), never a sleep to let something happen."""
    tick = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within the test's deadline")
        tick.wait(0.05)


@attrs.frozen
class Shared:
    """An outbox, its URL and table for the relay processes, their slot table and how to read it, and how many
    messages to send through it."""

    outbox: Outbox
    url: str
    table: str
    slot_table: str
    rows_of: Callable[[str], SlotRows]
    messages: int


@pytest.fixture
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Shared]:
    if request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        suffix = uuid.uuid4().hex[:12]
        table, slots = f"relay_{suffix}", f"slots_{suffix}"
        outbox: Outbox = PostgresOutbox(server.conninfo, table=table, clock=SystemClock())
        assert isinstance(outbox, PostgresOutbox)
        outbox.create_schema()

        def pg_rows(client_id: str) -> SlotRows:
            def read() -> dict[str, int]:
                with psycopg.connect(server.conninfo, autocommit=True) as conn:
                    found = conn.execute("SELECT to_regclass(%s)", (slots,)).fetchone()
                    if found is None or found[0] is None:
                        return {}
                    query = f"SELECT owner, held FROM {slots} WHERE credential = %s AND lease_until > %s"  # noqa: S608
                    return dict(conn.execute(query, (client_id, time.time())).fetchall())

            return read

        yield Shared(outbox, f"postgres:{server.conninfo}", table, slots, pg_rows, 3000)
        outbox.close()
        return
    path = tmp_path / "outbox.db"
    outbox = SQLiteOutbox(path, clock=SystemClock())

    def sqlite_rows(client_id: str) -> SlotRows:
        def read() -> dict[str, int]:
            with sqlite3.connect(path, timeout=30) as conn:
                if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'connection_slots'").fetchone():
                    return {}
                query = "SELECT owner, held FROM connection_slots WHERE credential = ? AND lease_until > ?"
                return dict(conn.execute(query, (client_id, time.time())).fetchall())

        return read

    yield Shared(outbox, f"sqlite:{path}", "flowmailer_outbox", "connection_slots", sqlite_rows, 1500)
    outbox.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("shared", "relay", "depth"),
    [
        ("postgres", "threaded", 1),
        ("sqlite", "threaded", 1),
        ("postgres", "asyncio", 8),  # each slot one connection carrying up to 8 requests
    ],
    indirect=["shared"],
    ids=["postgres", "sqlite", "postgres-asyncio-depth-8"],
)
def test_three_relays_never_hold_more_than_ten_connections_while_one_is_killed(
    tmp_path: Path, shared: Shared, relay: str, depth: int
) -> None:
    outbox, url, messages = shared.outbox, shared.url, shared.messages
    enqueue(outbox, messages, batch=500)
    started = time.monotonic()
    deadline = started + DEADLINE
    logs = [tmp_path / f"relay-{i}.jsonl" for i in range(RELAYS)]
    seen: list[dict[str, int]] = []  # the slot table each time the test looked
    with FakeFlowmailer().running() as fake:
        slot_rows = shared.rows_of(fake.credential("ADMIN").client_id)

        def rows() -> dict[str, int]:
            seen.append(slot_rows())
            return seen[-1]

        children: dict[str, subprocess.Popen[bytes]] = {
            log.stem: start_relay(
                fake,
                url,
                log,
                log.stem,
                lease=10.0,
                batch_size=20,
                table=shared.table,
                forever=True,
                slots=shared.slot_table,
                relay=relay,
                pipeline_depth=depth,
            )
            for log in logs
        }
        try:
            fake.wait_until(functools.partial(accepted_at_least, messages // 3), timeout=deadline - time.monotonic())
            until(
                lambda: len(rows()) == RELAYS and min(seen[-1].values()) > 0 and sum(seen[-1].values()) == 10,
                deadline,
                "all three hold slots, ten in all",
            )
            before = seen[-1]
            victim = max(before, key=lambda owner: before[owner])
            children[victim].send_signal(signal.SIGKILL)
            children[victim].wait()
            survivors = [name for name in children if name != victim]
            until(
                lambda: victim not in rows() and sum(seen[-1].values()) == 10,
                deadline,
                "the killed relay's slots taken up by the other two",
            )
            after = seen[-1]
            until(lambda: outbox.counts()[SubmissionState.ACCEPTED] == messages, deadline, "every message accepted")
            for name in survivors:
                children[name].send_signal(signal.SIGTERM)
            codes = [children[name].wait(timeout=max(1.0, deadline - time.monotonic())) for name in survivors]
        finally:
            for child in children.values():
                child.kill()
        records = fake.records()
    elapsed = time.monotonic() - started
    assert codes == [0, 0], [stderr_of(log) for log in logs]
    peak = max(n for _, n in records.open_timeline)
    print(
        f"\nshared limit ({url.split(':')[0]}, {relay} at depth {depth}): {messages} messages, {RELAYS} relays, one "
        f"SIGKILLed, {elapsed:.1f} s\n"
        f"  slots before the kill {before}, after {after}\n"
        f"  connections opened {len(records.connections)}, most open at once {records.max_open_connections}"
    )
    assert records.max_open_connections <= 10
    assert peak <= 10
    assert records.max_open_connections >= 5  # the relays really worked in parallel
    assert before[victim] > 0
    assert all(after[name] > before[name] for name in survivors)
    assert sum(after.values()) == 10
    assert all(sum(row.values()) <= 10 for row in seen)
    assert records.duplicates == {}
    assert len(records.accepted) == messages
    counts = outbox.counts()
    assert counts[SubmissionState.ACCEPTED] == sum(counts.values()) == messages
    tally = Tally(logs)
    assert not tally.dead
