"""Every outbox passes the same conformance suite: the in-memory fake, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from flowmailer.adapters.postgres_outbox import PostgresOutbox
from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.ports import Outbox
from flowmailer.testing import OUTBOX_CHECKS, FakeClock, MemoryOutbox, check_outbox
from tests.outbox.postgres_server import PostgresServer

Check = Callable[[Outbox, FakeClock], None]
checks = pytest.mark.parametrize("check", OUTBOX_CHECKS, ids=[c.__name__.removeprefix("check_") for c in OUTBOX_CHECKS])


@checks
def test_memory_outbox_conforms(check: Check) -> None:
    check_outbox(MemoryOutbox, [check])


@checks
def test_sqlite_outbox_conforms(check: Check, tmp_path: Path) -> None:
    paths = iter(range(1000))
    check_outbox(lambda clock: SQLiteOutbox(tmp_path / f"{next(paths)}.db", clock=clock), [check])


@pytest.fixture
def postgres_factory(postgres_server: PostgresServer) -> Callable[[FakeClock], PostgresOutbox]:
    """Each outbox gets its own table, created explicitly as `flowmailer outbox init` would."""

    def factory(clock: FakeClock) -> PostgresOutbox:
        outbox = PostgresOutbox(postgres_server.conninfo, table=f"t_{uuid.uuid4().hex}", clock=clock)
        outbox.create_schema()
        return outbox

    return factory


@pytest.mark.postgres
@checks
def test_postgres_outbox_conforms(check: Check, postgres_factory: Callable[[FakeClock], PostgresOutbox]) -> None:
    check_outbox(postgres_factory, [check])
