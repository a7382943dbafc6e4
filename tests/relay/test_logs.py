"""Log records: one logger per module under ``flowmailer.*``, and every record about a message says which one."""

from __future__ import annotations

import io
import json
import logging
import random
from pathlib import Path

import pytest

import flowmailer
from flowmailer.app import Relay
from flowmailer.cli import main
from flowmailer.cli._logs import configure_logging
from flowmailer.core import CircuitBreaker, RelayRules, RetryPolicy, SubmissionState, SubmitMessage
from flowmailer.testing import FakeClock, MemoryOutbox
from flowmailer.testing._fake import FakeFlowmailer, Fault
from tests.relay.test_relay_fake import make_client

CONTEXT = ("outbox_id", "client_reference", "attempt")


def test_the_package_has_a_null_handler_and_a_logger_per_module() -> None:
    package = logging.getLogger("flowmailer")
    assert any(isinstance(h, logging.NullHandler) for h in package.handlers), flowmailer.__name__
    from flowmailer.adapters import _token_store
    from flowmailer.app import _relay, _shell

    names = {m._log.name for m in (_shell, _relay, _token_store)}
    assert names == {"flowmailer.app._shell", "flowmailer.app._relay", "flowmailer.adapters._token_store"}


def test_every_record_about_a_message_carries_its_outbox_id_reference_attempt_and_message_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    outbox = MemoryOutbox(clock)
    ids = outbox.enqueue_many(
        SubmitMessage(sender_address="app@example.com", recipient_address=f"u{i}@example.com", subject=f"#{i}")
        for i in range(20)
    )
    faults = [Fault.status(503, path="messages/submit", at=range(40))]  # both tries of every first send
    rules = RelayRules(backoff=RetryPolicy(base_delay=1.0, cap=10.0), reconcile_delay=5.0)
    caplog.set_level(logging.DEBUG, logger="flowmailer")
    with FakeFlowmailer(faults=faults, seed=3).running() as fake, make_client(fake, clock) as client:
        # A breaker that never opens: every failed first send is a retry of its own, each logged.
        breaker = CircuitBreaker(threshold=1_000)
        Relay(outbox, client, rules=rules, clock=clock, rng=random.Random(2), idle_wait=0.05, breaker=breaker).drain()
    assert outbox.counts()[SubmissionState.ACCEPTED] == 20
    refs = {s.client_reference: s for s in map(outbox.status, ids) if s is not None}

    decisions = [r for r in caplog.records if r.name == "flowmailer.app._relay"]
    accepted = [r for r in decisions if r.getMessage() == "accepted"]
    assert len(accepted) == 20
    assert sum(r.getMessage().startswith("retry scheduled (transient)") for r in decisions) >= 20
    submits = [r for r in caplog.records if r.name == "flowmailer.app._shell" and "submit attempt" in r.getMessage()]
    assert submits
    for record in decisions + submits:
        outbox_id, ref, attempt = (getattr(record, key) for key in CONTEXT)
        assert refs[ref].id == outbox_id
        assert 1 <= attempt <= refs[ref].attempts
    assert {r.attempts for r in refs.values()} >= {2}  # every first send failed: some records are of a second
    for record in accepted:
        assert getattr(record, "message_id") == refs[getattr(record, "client_reference")].message_id  # noqa: B009
    # The client's record of the accepted attempt knows the message id too.
    answered = [r for r in submits if "answered" in r.getMessage()]
    assert {getattr(r, "message_id") for r in answered} == {s.message_id for s in refs.values()}  # noqa: B009


def test_json_lines_carry_the_context_as_fields() -> None:
    out = io.StringIO()
    package = logging.getLogger("flowmailer")
    handlers, level = list(package.handlers), package.level
    configure_logging("info", "json", out)
    try:
        logging.getLogger("flowmailer.app._relay").info(
            "accepted", extra={"outbox_id": 7, "client_reference": "abc", "attempt": 2, "message_id": "m-1"}
        )
    finally:
        package.handlers[:] = handlers
        package.setLevel(level)
    item = json.loads(out.getvalue())
    assert item["message"] == "accepted"
    assert item["level"] == "info"
    assert item["logger"] == "flowmailer.app._relay"
    assert (item["outbox_id"], item["client_reference"], item["attempt"], item["message_id"]) == (7, "abc", 2, "m-1")
    assert item["time"].endswith("+00:00")


@pytest.mark.parametrize(("flags", "expected"), [([], "dead letter: x\n"), (["--log-format", "json"], '"level": ')])
def test_the_command_shows_warnings_plainly_or_as_json(
    flags: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = logging.getLogger("flowmailer")
    handlers, level = list(package.handlers), package.level
    try:
        main([*flags, "status", "--outbox", f"sqlite://{tmp_path / 'none.db'}"])  # any command sets up the logs
        capsys.readouterr()
        logging.getLogger("flowmailer.app._relay").warning("dead letter: x", extra={"client_reference": "r"})
        logging.getLogger("flowmailer.app._relay").info("not shown: warnings only by default")
    finally:
        package.handlers[:] = handlers
        package.setLevel(level)
    err = capsys.readouterr().err
    assert expected in err
    assert "not shown" not in err
