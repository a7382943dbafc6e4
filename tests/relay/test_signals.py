"""SIGTERM stops a relay process gracefully: it exits 0, every send it started is recorded, the rest released."""

from __future__ import annotations

import functools
import signal
from pathlib import Path

import pytest

from flowmailer.adapters import SystemClock
from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.core import SubmissionState
from flowmailer.testing._fake import FakeFlowmailer, Fault, Records
from tests.relay.chaos import enqueue, start_relay, stderr_of

S = SubmissionState


def accepted_at_least(n: int, records: Records) -> bool:
    return len(records.accepted) >= n


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["threaded", "asyncio", "trio"])
def test_sigterm_finishes_in_flight_sends_releases_the_rest_and_exits_0(tmp_path: Path, kind: str) -> None:
    outbox = SQLiteOutbox(tmp_path / "outbox.db", clock=SystemClock())
    enqueue(outbox, 1000)
    # Slow answers keep about ten sends in flight when the signal comes.
    with FakeFlowmailer(faults=[Fault.delay(0.2, path="messages/submit")]).running() as fake:
        log = tmp_path / "relay.jsonl"
        child = start_relay(
            fake, f"sqlite:{tmp_path / 'outbox.db'}", log, "relay", lease=30.0, batch_size=20, forever=True, relay=kind
        )
        try:
            fake.wait_until(functools.partial(accepted_at_least, 50), timeout=60.0)
            child.send_signal(signal.SIGTERM)
            code = child.wait(timeout=60.0)
        finally:
            child.kill()
        records = fake.records()
    counts = outbox.counts()
    accepted_refs = {
        f"ref:{s.client_reference}"
        for s in map(outbox.status, range(1, 1001))
        if s is not None and s.state is S.ACCEPTED
    }
    outbox.close()
    assert code == 0, stderr_of(log)
    assert counts[S.IN_FLIGHT] == counts[S.RECONCILING] == 0
    assert counts[S.ACCEPTED] + counts[S.QUEUED] == 1000
    assert counts[S.QUEUED] > 0
    assert set(records.copies_by_reference) == accepted_refs
