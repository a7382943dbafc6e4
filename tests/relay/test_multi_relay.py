"""Three relay processes on one PostgreSQL outbox drain 10,000 messages: none sent twice, none left behind."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from flowmailer.adapters import SystemClock
from flowmailer.adapters.postgres_outbox import PostgresOutbox
from flowmailer.core import SubmissionState
from flowmailer.testing._fake import FakeFlowmailer
from tests.outbox.postgres_server import PostgresServer
from tests.relay.chaos import Tally, enqueue, start_relay, stderr_of

MESSAGES = 10_000
RELAYS = 3
DEADLINE = 300.0


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["threaded", "trio"])  # the async relay on trio here, on asyncio in the chaos test
def test_three_relays_on_one_postgres_outbox_send_each_message_once(
    tmp_path: Path, postgres_server: PostgresServer, kind: str
) -> None:
    table = f"relay_{uuid.uuid4().hex[:12]}"
    outbox = PostgresOutbox(postgres_server.conninfo, table=table, clock=SystemClock())
    outbox.create_schema()
    enqueue(outbox, MESSAGES, batch=1000)
    logs = [tmp_path / f"relay-{i}.jsonl" for i in range(RELAYS)]
    started = time.monotonic()
    with FakeFlowmailer().running() as fake:
        children = [
            start_relay(
                fake,
                f"postgres:{postgres_server.conninfo}",
                log,
                f"relay-{i}",
                lease=10.0,
                batch_size=50,
                table=table,
                relay=kind,
            )
            for i, log in enumerate(logs)
        ]
        try:
            codes = [child.wait(timeout=max(1.0, DEADLINE - (time.monotonic() - started))) for child in children]
        finally:
            for child in children:
                child.kill()
        records = fake.records()
    elapsed = time.monotonic() - started
    counts = outbox.counts()
    outbox.close()
    assert codes == [0] * RELAYS, [stderr_of(log) for log in logs]
    tally = Tally(logs)
    shares = {name: len(refs) for name, refs in tally.sent_by.items()}
    print(
        f"\nmulti-relay ({kind}): {MESSAGES} messages, {RELAYS} relays on PostgreSQL, {elapsed:.1f} s "
        f"({MESSAGES / elapsed:.0f} messages/s)\n  sent per relay {shares}, copies at the fake {len(records.accepted)}"
    )
    assert counts[SubmissionState.ACCEPTED] == MESSAGES
    assert sum(counts.values()) == MESSAGES
    assert records.duplicates == {}
    assert len(records.accepted) == MESSAGES
    assert sum(tally.sent.values()) == MESSAGES
    assert all(n == 1 for n in tally.sent.values())
    assert records.statuses.get(201) == MESSAGES  # no submit was made twice, not even one the fake refused
