"""The progress tally and its two displays: a rich live table, and plain lines for logs."""

from __future__ import annotations

import io
import signal
import threading
from collections.abc import Callable, Iterable

import pytest

from flowmailer.app import Relay, RelayStats
from flowmailer.cli._progress import Rows, Tally, run_relay, show_progress, summary
from flowmailer.core import (
    Accepted,
    Ambiguous,
    AttemptFinished,
    AuthenticationError,
    Cause,
    Dead,
    Event,
    Message,
    NotSent,
    ReconcileAt,
    RecordAccepted,
    RelayNotRecorded,
    RelayOutboxFailed,
    RelayRecorded,
    RequestFinished,
    RetryAt,
    SubmitMessage,
    Transient,
)
from flowmailer.testing import FakeClock, MemoryOutbox


def test_tally_counts_attempts_per_address_and_the_relays_decisions() -> None:
    tally = Tally()
    events: list[Event] = [
        AttemptFinished("submit", "127.0.0.2", Accepted("m1"), 0.01),
        AttemptFinished("submit", "127.0.0.2", Transient(503), 0.01),
        AttemptFinished("submit", "127.0.0.3", Ambiguous("reset"), 0.01),
        AttemptFinished("submit", "127.0.0.4", NotSent("timeout"), 0.5),
        RequestFinished("token", "127.0.0.3", 200, 0.01),
        RelayRecorded("r", 1, "ref1", 1, RecordAccepted("m1")),
        RelayRecorded("r", 2, "ref2", 2, RecordAccepted("m2", reconciled=True, copies=2)),
        RelayRecorded("r", 3, "ref3", 1, RetryAt(1.0, Cause.TRANSIENT, "503")),
        RelayRecorded("r", 4, "ref4", 1, ReconcileAt(1.0, Cause.AMBIGUOUS, "reset")),
        RelayRecorded("r", 5, "ref5", 1, Dead("422")),
        RelayNotRecorded("r", 6, "lease lost"),
        RelayOutboxFailed("r", "database is locked"),
    ]
    for event in events:
        tally.on_event(event)
    seen = tally.snapshot()
    assert seen.by_address == {
        "127.0.0.2": {"Accepted": 1, "HTTP 503": 1},
        "127.0.0.3": {"Ambiguous": 1, "Answered": 1},
        "127.0.0.4": {"NotSent": 1},
    }
    assert seen.answered == {"token": 1}
    assert (seen.accepted, seen.reconciled, seen.duplicates, seen.dead, seen.not_recorded) == (2, 1, 1, 1, 1)
    assert seen.retries == {"transient": 1, "ambiguous": 1}
    assert (seen.outbox_failures, seen.last_outbox_failure) == (1, "database is locked")
    assert seen.traffic() == "127.0.0.2 2 (1 HTTP 503); 127.0.0.3 2 (1 Ambiguous); 127.0.0.4 1 (1 NotSent)"


def rows_until(done: threading.Event, calls: int) -> Callable[[], Rows]:
    """A rows callable that sets ``done`` on its ``calls``-th call."""
    seen: list[int] = []

    def rows() -> Rows:
        seen.append(1)
        if len(seen) >= calls:
            done.set()
        return [("accepted", str(len(seen))), ("dead", "0")]

    return rows


def test_plain_progress_prints_one_line_per_interval_until_done() -> None:
    done = threading.Event()
    out = io.StringIO()
    show_progress(rows_until(done, 3), done, title="t", live=False, interval=0.001, out=out)
    assert out.getvalue().splitlines() == ["accepted 1 | dead 0", "accepted 2 | dead 0", "accepted 3 | dead 0"]


def test_live_progress_draws_a_table_with_the_title_and_rows() -> None:
    done = threading.Event()
    out = io.StringIO()
    show_progress(rows_until(done, 1), done, title="flowmailer relay", live=True, out=out)
    assert "flowmailer relay" in out.getvalue()
    assert "accepted" in out.getvalue()


def test_plain_summary_aligns_the_values() -> None:
    out = io.StringIO()
    summary([("enqueued", "3"), ("duplicates at the fake", "0")], title="summary", live=False, out=out)
    assert out.getvalue().splitlines() == ["summary", "  enqueued                3", "  duplicates at the fake  0"]


class Submitter:
    """Accepts everything, or refuses the credentials when ``refuse``."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse

    def check_credentials(self) -> float:
        return 60.0

    def submit(self, message: SubmitMessage) -> str:
        if self.refuse:
            raise AuthenticationError("c", "invalid_client")
        return "20211230130407e3b36e2e92fdbefc86"

    def messages_by_tag(self, tag: str) -> Iterable[Message]:
        return []


def relay_over(count: int, submitter: Submitter) -> Relay:
    clock = FakeClock()
    outbox = MemoryOutbox(clock)
    outbox.enqueue_many(
        SubmitMessage(sender_address="s@example.com", recipient_address="b@example.com", text="x") for _ in range(count)
    )
    return Relay(outbox, submitter, clock=clock)


def test_run_relay_drains_and_restores_the_signal_handlers() -> None:
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    stats = run_relay(relay_over(3, Submitter()), list, until_empty=True, title="t", live=False, interval=60)
    assert stats.accepted == 3
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_run_relay_raises_what_the_relay_raised() -> None:
    with pytest.raises(AuthenticationError):
        run_relay(relay_over(1, Submitter(refuse=True)), list, until_empty=True, title="t", live=False, interval=60)


def test_run_relay_outside_the_main_thread_leaves_signals_alone() -> None:
    results: list[RelayStats] = []
    thread = threading.Thread(
        target=lambda: results.append(
            run_relay(relay_over(1, Submitter()), list, until_empty=True, title="t", live=False, interval=60)
        )
    )
    thread.start()
    thread.join(timeout=30)
    assert [r.accepted for r in results] == [1]


def test_run_relay_stops_the_relay_before_raising_what_the_display_raised() -> None:
    def broken() -> Rows:
        raise BrokenPipeError

    with pytest.raises(BrokenPipeError):
        run_relay(relay_over(1, Submitter()), broken, until_empty=False, title="t", live=False, interval=0.001)
    assert "flowmailer-relay-loop" not in [thread.name for thread in threading.enumerate()]


def test_the_relay_rows_show_the_outbox_apart_from_this_run_and_claimed_apart_from_sending() -> None:
    from flowmailer.cli.relay import relay_rows

    relay = relay_over(3, Submitter())
    tally = Tally()
    outbox = relay._outbox
    outbox.claim("another relay", 2, 30.0)  # rows claimed elsewhere: counted in the outbox, not held here
    rows = dict(relay_rows(outbox, tally, relay))
    assert rows["outbox claimed"] == "2 (here: 0 held, 0 sending)"  # before: "in flight 2", as if this relay sent
    assert rows["outbox queued"] == "1"
    assert rows["accepted this run"] == "0 (0 reconciled)"
