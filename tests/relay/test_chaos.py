"""Chaos: 5,000 messages through relay processes that are killed with SIGKILL three times, against a faulty fake.

10 % of submits answer 5xx, 2 % are accepted and then the connection is reset (the ambiguous case), one of the
three addresses is blackholed and tokens live 1 s (and a few expire early): every relay process lives a few
seconds, so it refreshes several tokens ahead of expiry and meets some that expired under it. Kill points are
counts of accepted messages at the fake, never times. Every message must end accepted, exactly one copy each at
the fake, none dead.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from flowmailer.adapters import SystemClock
from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.core import SubmissionState
from flowmailer.testing._fake import FakeFlowmailer, Fault, Mode, Records
from tests.relay.chaos import Tally, enqueue, start_relay, stderr_of

MESSAGES = 5_000
KILL_AT = (1_000, 2_200, 3_400)  # accepted copies at the fake
DEADLINE = 240.0  # seconds for the whole run before the test fails; CI's budget is a couple of minutes
TOKEN_LIFETIME = 1  # second; each relay process lives several of them
REFRESH_AHEAD = 0.4  # seconds: the default 10 s would refresh a 1 s token on every use


def accepted_at_least(n: int, records: Records) -> bool:
    return len(records.accepted) >= n


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "depth"),
    # The async relay on the backend `flowmailer relay` uses, and pipelined as `--pipeline-depth 8` runs it: then
    # an accept-then-reset breaks a pipeline with other submits written behind the accepted one.
    [("threaded", 1), ("asyncio", 1), ("asyncio", 8)],
    ids=["threaded", "asyncio", "asyncio-depth-8"],
)
def test_chaos_every_message_accepted_once_through_sigkills(tmp_path: Path, kind: str, depth: int) -> None:
    faults = [
        Fault.status(500, path="messages/submit", probability=0.05),
        Fault.status(503, path="messages/submit", probability=0.05),
        Fault.accept_then_reset(path="messages/submit", probability=0.02),
        # Tokens also expire early now and then, as Flowmailer's may.
        Fault.expire_token(path="messages/submit", probability=0.002),
    ]
    started = time.monotonic()
    outbox = SQLiteOutbox(tmp_path / "outbox.db", clock=SystemClock())
    enqueue(outbox, MESSAGES)
    refs = {s.client_reference for s in map(outbox.status, range(1, MESSAGES + 1)) if s is not None}
    assert len(refs) == MESSAGES
    logs: list[Path] = []
    kills = 0
    with FakeFlowmailer(faults=faults, token_lifetime=TOKEN_LIFETIME, seed=5).running() as fake:
        fake.set_mode(fake.addresses[2], Mode.BLACKHOLE)

        def relay() -> subprocess.Popen[bytes]:
            logs.append(tmp_path / f"relay-{len(logs)}.jsonl")
            return start_relay(
                fake,
                f"sqlite:{tmp_path / 'outbox.db'}",
                logs[-1],
                f"relay-{len(logs)}",
                lease=3.0,
                batch_size=20,
                refresh_ahead=REFRESH_AHEAD,
                log_records=logs[-1].with_suffix(".records"),
                relay=kind,
                pipeline_depth=depth,
            )

        for threshold in KILL_AT:
            child = relay()
            left = DEADLINE - (time.monotonic() - started)
            fake.wait_until(functools.partial(accepted_at_least, threshold), timeout=left)
            assert child.poll() is None, f"the relay exited before it was killed:\n{stderr_of(logs[-1])}"
            child.send_signal(signal.SIGKILL)
            child.wait()
            kills += 1
        child = relay()
        try:
            code = child.wait(timeout=DEADLINE - (time.monotonic() - started))
        finally:
            child.kill()
        assert code == 0, stderr_of(logs[-1])
        records = fake.records()
        tokens = fake.issued_tokens()
        secret = fake.credential("ADMIN").client_secret

    elapsed = time.monotonic() - started
    counts = outbox.counts()
    by_ref = {m.tags[-1].removeprefix("ref:"): m.message_id for m in records.accepted}
    recorded = {s.client_reference: s.message_id for s in map(outbox.status, range(1, MESSAGES + 1)) if s}
    outbox.close()
    tally = Tally(logs)
    print(
        f"\nchaos ({kind} relay, depth {depth}): {MESSAGES} messages, {kills} SIGKILLs, {elapsed:.1f} s\n"
        f"  accepted (outbox) {counts[SubmissionState.ACCEPTED]}, dead {counts[SubmissionState.DEAD]}\n"
        f"  copies at the fake {len(records.accepted)}, duplicates {len(records.duplicates)}\n"
        f"  sent and accepted {sum(tally.sent.values())}, reconciled {tally.reconciled}\n"
        f"  retries by cause {dict(tally.retries)}, not recorded {tally.not_recorded}\n"
        f"  faults injected {dict(records.faults)}, statuses {dict(records.statuses)}\n"
        f"  tokens issued {sum(records.token_requests.values())} to {len(logs)} relay processes\n"
        f"  requests pipelined {records.pipelined_requests}"
    )
    assert counts[SubmissionState.ACCEPTED] == MESSAGES
    assert counts[SubmissionState.DEAD] == 0, tally.dead[:5]
    assert records.copies_by_reference == {f"ref:{ref}": 1 for ref in refs}
    assert recorded == by_ref
    assert kills == 3
    if depth > 1:
        assert records.pipelined_requests > 0
    assert tally.reconciled >= 1
    assert_no_secret_in_log_records(logs, {secret, *tokens}, len(refs))


def assert_no_secret_in_log_records(logs: list[Path], secrets: set[str], messages: int) -> None:
    """Every record every relay process logged (debug ones too): no secret or token in any of them."""
    lines = [line for log in logs for line in log.with_suffix(".records").read_text().splitlines()]
    assert len(lines) > messages  # one decision per message at least: the records were really written
    assert len(secrets) > len(logs)  # tokens live 1 s: each relay process fetched several
    leaked = [line for line in lines if any(s in line for s in secrets)]
    assert not leaked, leaked[:3]
    about = [json.loads(line) for line in lines if line.endswith("}") and '"outbox_id"' in line]
    assert all({"client_reference", "attempt"} <= item.keys() for item in about)
