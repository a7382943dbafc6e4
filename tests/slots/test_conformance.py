"""Every connection slot store passes the same conformance suite: in memory, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from flowmailer.adapters.postgres_connection_slots import PostgresConnectionSlots
from flowmailer.adapters.sqlite_connection_slots import SQLiteConnectionSlots
from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.ports import ConnectionSlots
from flowmailer.testing import SLOT_CHECKS, FakeClock, MemoryConnectionSlots, check_connection_slots
from flowmailer.testing._slots_conformance import SlotCheck
from tests.outbox.postgres_server import PostgresServer

checks = pytest.mark.parametrize("check", SLOT_CHECKS, ids=[c.__name__.removeprefix("check_") for c in SLOT_CHECKS])


@checks
def test_memory_slots_conform(check: SlotCheck) -> None:
    check_connection_slots(MemoryConnectionSlots, [check])


@checks
def test_sqlite_slots_conform(check: SlotCheck, tmp_path: Path) -> None:
    """Each check on a fresh file beside an outbox; its second handle is another connection to the file."""
    paths = iter(range(1000))

    def fresh(clock: FakeClock) -> SQLiteConnectionSlots:
        path = tmp_path / f"{next(paths)}.db"
        SQLiteOutbox(path, clock=clock).close()
        return SQLiteConnectionSlots(path, clock=clock)

    def second(slots: ConnectionSlots, clock: FakeClock) -> ConnectionSlots:
        assert isinstance(slots, SQLiteConnectionSlots)
        return SQLiteConnectionSlots(slots.path, clock=clock)

    check_connection_slots(fresh, [check], second=second)


@pytest.mark.postgres
@checks
def test_postgres_slots_conform(check: SlotCheck, postgres_server: PostgresServer) -> None:
    """Each check on a table of its own; its second handle is another PostgresConnectionSlots (another session)."""

    def fresh(clock: FakeClock) -> PostgresConnectionSlots:
        return PostgresConnectionSlots(postgres_server.conninfo, table=f"s_{uuid.uuid4().hex}", clock=clock)

    def second(slots: ConnectionSlots, clock: FakeClock) -> ConnectionSlots:
        assert isinstance(slots, PostgresConnectionSlots)
        return PostgresConnectionSlots(postgres_server.conninfo, table=slots.table, clock=clock)

    check_connection_slots(fresh, [check], second=second)
