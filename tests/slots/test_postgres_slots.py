"""The PostgreSQL slot table: made by `flowmailer outbox init`, then usable by a relay's role that may not create."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from flowmailer.adapters.postgres_connection_slots import PostgresConnectionSlots
from flowmailer.cli import main
from flowmailer.core import SlotHolding
from tests.outbox.postgres_server import PostgresServer

pytestmark = pytest.mark.postgres


def test_outbox_init_makes_the_slot_table_and_a_relay_role_without_create_rights_uses_it(
    postgres_server: PostgresServer,
) -> None:
    database = f"d_{uuid.uuid4().hex[:12]}"
    role = f"r_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.conninfo, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
        admin.execute(f"CREATE ROLE {role} LOGIN")
    url = f"postgresql://postgres@/{database}?host={postgres_server.socket_dir}&port={postgres_server.port}"
    assert main(["outbox", "init", "--outbox", url]) == 0
    admin_info = f"host={postgres_server.socket_dir} port={postgres_server.port} user=postgres dbname={database}"
    with psycopg.connect(admin_info, autocommit=True) as admin:
        admin.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
        admin.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON public.flowmailer_connection_slots TO {role}")
    relay = PostgresConnectionSlots(
        f"host={postgres_server.socket_dir} port={postgres_server.port} user={role} dbname={database}"
    )
    try:
        assert relay.acquire("client-1", "relay-1", 4, 30.0) == SlotHolding(4, 1)
    finally:
        relay.close()
