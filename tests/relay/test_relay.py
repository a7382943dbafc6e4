"""The relay shells over the in-memory outbox, a fake clock and a scripted client: no network, no waiting.

Every test runs against each relay (the threaded ``Relay``, ``AsyncRelay`` on asyncio and on trio: ``relay_kind``);
the few about one shell's own threads say so.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flowmailer.app import RelayStats
from flowmailer.core import (
    AmbiguousError,
    AuthenticationError,
    Cause,
    Claim,
    ConfigurationError,
    Dead,
    ErrorDetail,
    Event,
    Message,
    OutboxError,
    OutboxId,
    RecordAccepted,
    RejectedError,
    RelayCannotReconcile,
    RelayClaimed,
    RelayNotRecorded,
    RelayOutboxFailed,
    RelayRecorded,
    RelayRules,
    RelayStopped,
    RetryPolicy,
    Settlement,
    SubmissionState,
    SubmitMessage,
    TransientError,
)
from flowmailer.testing import FakeClock, MemoryOutbox
from tests.relay.kinds import AnyRelay, make_relay

pytestmark = pytest.mark.usefixtures("relay_kind")  # every test, against each relay

WAIT = 10.0  # seconds a test waits for another thread before it fails; never slept
S = SubmissionState
RULES = RelayRules(max_attempts=5, max_age=3600.0, backoff=RetryPolicy(base_delay=1.0, cap=30.0), reconcile_delay=5.0)

#: What the fake client does with one send: accept, raise, or take it and then lose the answer.
Behaviour = str | Exception
ACCEPT, TAKEN_THEN_LOST, LOST = "accept", "taken-then-lost", "lost"


class FakeClient:
    """A Submitter holding what 'Flowmailer' accepted, with a scripted behaviour per client reference."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self._lock = threading.Lock()
        self.accepted: dict[str, list[str]] = {}
        self.scripts: dict[str, list[Behaviour]] = {}
        self.search_faults: list[Exception] = []
        #: A submit-only credential: every search by tag is refused.
        self.submit_only = False
        self.sends: Counter[str] = Counter()
        self.searches: Counter[str] = Counter()
        self.in_flight = 0
        self.most_in_flight = 0
        self.started = threading.Semaphore(0)
        self.gate = gate
        #: Raised by check_credentials: Flowmailer refused this credential.
        self.refused: AuthenticationError | None = None
        self.credential_checks = 0

    def check_credentials(self) -> float:
        with self._lock:
            self.credential_checks += 1
        if self.refused is not None:
            raise self.refused
        return 60.0

    def submit(self, message: SubmitMessage) -> str:
        ref = message.client_reference()
        assert ref is not None
        with self._lock:
            self.sends[ref] += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            script = self.scripts.get(ref, [])
            behaviour = script.pop(0) if script else ACCEPT
        self.started.release()
        try:
            if self.gate is not None:
                assert self.gate.wait(WAIT)
            if isinstance(behaviour, Exception):
                raise behaviour
            if behaviour == LOST:
                raise AmbiguousError("reset after write", client_reference=ref)
            with self._lock:
                message_id = f"m-{ref}-{len(self.accepted.get(ref, []))}"
                self.accepted.setdefault(ref, []).append(message_id)
            if behaviour == TAKEN_THEN_LOST:
                raise AmbiguousError("reset after write", client_reference=ref)
            return message_id
        finally:
            with self._lock:
                self.in_flight -= 1

    def messages_by_tag(self, tag: str) -> Iterator[Message]:
        if self.submit_only:
            raise RejectedError(403, (ErrorDetail(code="forbidden", default_message="Access is denied"),))
        if not tag.startswith("ref:"):  # the relay's probe at start
            return iter([])
        ref = tag.removeprefix("ref:")
        with self._lock:
            self.searches[ref] += 1
            if self.search_faults:
                raise self.search_faults.pop(0)
            ids = list(self.accepted.get(ref, []))
        return iter([Message(id=i, tags=(tag,)) for i in ids])


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def on_event(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)


def message(i: int) -> SubmitMessage:
    return SubmitMessage(sender_address="app@example.com", recipient_address=f"user{i}@example.com", subject=f"#{i}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def outbox(clock: FakeClock) -> MemoryOutbox:
    return MemoryOutbox(clock)


def enqueue(outbox: MemoryOutbox, n: int) -> list[str]:
    ids = outbox.enqueue_many([message(i) for i in range(n)])
    return [ref_of(outbox, i) for i in ids]


def ref_of(outbox: MemoryOutbox, outbox_id: OutboxId) -> str:
    status = outbox.status(outbox_id)
    assert status is not None
    return status.client_reference


def relay(outbox: MemoryOutbox, client: FakeClient, clock: FakeClock, **kwargs: object) -> AnyRelay:
    options: dict[str, object] = {"rules": RULES, "clock": clock, "owner": "relay-1", "lease": 30.0}
    options.update(kwargs)
    return make_relay(outbox, client, **options)


def test_drain_sends_every_message_once(outbox: MemoryOutbox, clock: FakeClock) -> None:
    refs = enqueue(outbox, 50)
    client = FakeClient()
    stats = relay(outbox, client, clock).drain()
    assert outbox.counts()[S.ACCEPTED] == 50
    assert client.sends == Counter(dict.fromkeys(refs, 1))
    assert (stats.claimed, stats.accepted, stats.dead, stats.reconciled) == (50, 50, 0, 0)


def test_never_more_submissions_at_once_than_the_concurrency(outbox: MemoryOutbox, clock: FakeClock) -> None:
    enqueue(outbox, 30)
    gate = threading.Event()
    client = FakeClient(gate)
    r = relay(outbox, client, clock, concurrency=3, batch_size=5)
    runner = threading.Thread(target=r.drain)
    runner.start()
    for _ in range(3):
        assert client.started.acquire(timeout=WAIT)
    gate.set()
    runner.join(WAIT)
    assert not runner.is_alive()
    assert client.most_in_flight == 3
    assert outbox.counts()[S.ACCEPTED] == 30


def test_a_transient_failure_is_retried_later(outbox: MemoryOutbox, clock: FakeClock) -> None:
    [ref] = enqueue(outbox, 1)
    client = FakeClient()
    client.scripts[ref] = [TransientError("503 twice", retry_after=20.0)]
    start = clock.now()
    stats = relay(outbox, client, clock).drain()
    assert client.sends[ref] == 2
    assert outbox.counts()[S.ACCEPTED] == 1
    assert stats.retries == {Cause.TRANSIENT: 1}
    assert clock.now() - start >= 20.0


def test_an_ambiguous_send_that_flowmailer_took_is_reconciled_not_resent(
    outbox: MemoryOutbox, clock: FakeClock
) -> None:
    [ref] = enqueue(outbox, 1)
    client = FakeClient()
    client.scripts[ref] = [TAKEN_THEN_LOST]
    start = clock.now()
    stats = relay(outbox, client, clock).drain()
    assert client.sends[ref] == 1
    assert client.searches[ref] == 1
    assert len(client.accepted[ref]) == 1
    status = outbox.status(1)
    assert status is not None
    assert (status.state, status.message_id) == (S.ACCEPTED, client.accepted[ref][0])
    assert (stats.accepted, stats.reconciled, stats.duplicates) == (1, 1, 0)
    assert clock.now() - start >= RULES.reconcile_delay


def test_an_ambiguous_send_that_flowmailer_lost_is_resent_once_after_the_search(
    outbox: MemoryOutbox, clock: FakeClock
) -> None:
    [ref] = enqueue(outbox, 1)
    client = FakeClient()
    client.scripts[ref] = [LOST]
    stats = relay(outbox, client, clock).drain()
    assert client.sends[ref] == 2
    assert client.searches[ref] == 1
    assert len(client.accepted[ref]) == 1
    assert (stats.accepted, stats.reconciled) == (1, 0)
    assert stats.retries == {Cause.AMBIGUOUS: 1}


def test_a_failed_search_is_asked_again_before_any_resend(outbox: MemoryOutbox, clock: FakeClock) -> None:
    [ref] = enqueue(outbox, 1)
    client = FakeClient()
    client.scripts[ref] = [TAKEN_THEN_LOST]
    client.search_faults = [TransientError("search got 503"), TransientError("search got 503")]
    stats = relay(outbox, client, clock).drain()
    assert client.searches[ref] == 3
    assert client.sends[ref] == 1
    assert stats.retries == {Cause.AMBIGUOUS: 1, Cause.RECONCILE_FAILED: 2}
    assert stats.reconciled == 1


def test_a_rejected_message_is_dead_with_flowmailers_errors(outbox: MemoryOutbox, clock: FakeClock) -> None:
    [ref] = enqueue(outbox, 1)
    client = FakeClient()
    errors = (ErrorDetail(code="invalid", field="recipientAddress", default_message="bad address"),)
    client.scripts[ref] = [RejectedError(400, errors)]
    stats = relay(outbox, client, clock).drain()
    status = outbox.status(1)
    assert status is not None
    assert status.state is S.DEAD
    assert status.errors == errors
    assert "recipientAddress: bad address" in (status.last_reason or "")
    assert stats.dead == 1


def test_give_up_after_max_attempts(outbox: MemoryOutbox, clock: FakeClock) -> None:
    [ref] = enqueue(outbox, 1)
    client = FakeClient()
    client.scripts[ref] = [TransientError("503")] * 10
    relay(outbox, client, clock).drain()
    assert client.sends[ref] == RULES.max_attempts
    status = outbox.status(1)
    assert status is not None
    assert status.state is S.DEAD
    assert status.last_reason == f"gave up after {RULES.max_attempts} attempts; the last: 503"


def claim_and_die(outbox: MemoryOutbox, n: int) -> list[Claim]:
    """What a relay killed with SIGKILL leaves behind: rows in flight under a lease nobody renews."""
    return outbox.claim("dead-relay", n, 30.0)


def test_a_dead_relays_claims_are_reconciled_before_any_resend(outbox: MemoryOutbox, clock: FakeClock) -> None:
    refs = enqueue(outbox, 4)
    client = FakeClient()
    taken = claim_and_die(outbox, 4)
    for c in taken[:2]:  # the dead relay's first two sends reached Flowmailer
        client.submit(c.message)
    client.sends.clear()
    stats = relay(outbox, client, clock).drain()
    assert outbox.counts()[S.ACCEPTED] == 4
    assert {ref: len(ids) for ref, ids in client.accepted.items()} == dict.fromkeys(refs, 1)
    # Found at once, or not found twice: once when taken over, once more after the reconcile delay.
    assert client.searches == Counter({refs[0]: 1, refs[1]: 1, refs[2]: 2, refs[3]: 2})
    assert client.sends == Counter(dict.fromkeys(refs[2:], 1))
    assert stats.reconciled == 2
    assert stats.retries == {Cause.LEASE_EXPIRED: 2}


def test_the_lease_is_renewed_while_a_send_outlives_it(clock: FakeClock) -> None:
    gate = threading.Event()
    client = FakeClient(gate)
    renewed = threading.Semaphore(0)

    class WatchedOutbox(MemoryOutbox):
        def renew(self, claims: Sequence[Claim], lease: float) -> frozenset[OutboxId]:
            kept = super().renew(claims, lease)
            renewed.release()
            return kept

    watched = WatchedOutbox(clock)
    watched.enqueue(message(1))
    r = relay(watched, client, clock, lease=30.0, idle_wait=0.01)
    runner = threading.Thread(target=r.drain)
    runner.start()
    assert client.started.acquire(timeout=WAIT)
    for _ in range(4):  # 80 s in all, far past the 30 s lease
        clock.advance(20.0)
        assert renewed.acquire(timeout=WAIT)
        assert watched.claim("relay-2", 10, 30.0) == []
    gate.set()
    runner.join(WAIT)
    assert not runner.is_alive()
    assert watched.counts()[S.ACCEPTED] == 1
    assert client.sends.total() == 1


def test_stop_finishes_what_is_in_flight_and_releases_the_rest(outbox: MemoryOutbox, clock: FakeClock) -> None:
    enqueue(outbox, 20)
    gate = threading.Event()
    client = FakeClient(gate)
    recorder = Recorder()
    r = relay(outbox, client, clock, concurrency=2, batch_size=10, observer=recorder)
    result: list[object] = []
    runner = threading.Thread(target=lambda: result.append(r.run()))
    runner.start()
    for _ in range(2):
        assert client.started.acquire(timeout=WAIT)
    r.stop()
    gate.set()
    runner.join(WAIT)
    assert not runner.is_alive()
    counts = outbox.counts()
    assert counts[S.ACCEPTED] == 2
    assert counts[S.QUEUED] == 18
    assert counts[S.IN_FLIGHT] == 0
    assert client.sends.total() == 2
    stats = r.stats()
    assert stats.released == stats.claimed - 2
    assert [e for e in recorder.events if isinstance(e, RelayStopped)] == [RelayStopped("relay-1", stats.released, 0)]
    released = outbox.status(20)
    assert released is not None
    assert released.attempts == 0


def test_sigterm_stops_the_relay_gracefully(outbox: MemoryOutbox, clock: FakeClock) -> None:
    enqueue(outbox, 20)
    gate = threading.Event()
    client = FakeClient(gate)
    r = relay(outbox, client, clock, concurrency=2, batch_size=4)
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    def signal_when_sending() -> None:
        assert client.started.acquire(timeout=WAIT)
        os.kill(os.getpid(), signal.SIGTERM)
        gate.set()

    killer = threading.Thread(target=signal_when_sending)
    try:
        r.install_signal_handlers()
        killer.start()
        stats = r.run()
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
        killer.join(WAIT)
        assert not killer.is_alive()
    counts = outbox.counts()
    assert counts[S.IN_FLIGHT] == 0
    assert counts[S.ACCEPTED] + counts[S.QUEUED] == 20
    assert counts[S.ACCEPTED] == stats.accepted


def test_refused_credentials_stop_the_relay_and_lose_nothing(outbox: MemoryOutbox, clock: FakeClock) -> None:
    refs = enqueue(outbox, 5)
    client = FakeClient()
    for ref in refs:
        client.scripts[ref] = [AuthenticationError("client-1", "invalid_client")]
    with pytest.raises(AuthenticationError):
        relay(outbox, client, clock, concurrency=1).run()
    counts = outbox.counts()
    assert counts[S.QUEUED] == 5
    assert counts[S.DEAD] == 0


def test_refused_credentials_stop_the_relay_at_start_even_with_an_empty_outbox(
    outbox: MemoryOutbox, clock: FakeClock
) -> None:
    client = FakeClient()
    client.refused = AuthenticationError("client-1", "invalid_client")
    runner, ended = run_aside(relay(outbox, client, clock).run)
    runner.join(WAIT)
    assert not runner.is_alive()  # before: nothing to submit, so nothing ever met the refusal
    assert ended == [client.refused]
    assert client.credential_checks == 1


def test_a_refused_reconciling_credential_stops_the_relay_naming_it_before_anything_is_claimed(
    outbox: MemoryOutbox, clock: FakeClock
) -> None:
    enqueue(outbox, 3)
    client, reader = FakeClient(), FakeClient()
    reader.refused = AuthenticationError("reader-1", "invalid_client")
    recorder = Recorder()
    with pytest.raises(AuthenticationError) as refused:
        relay(outbox, client, clock, reconciler=reader, observer=recorder).run()
    assert refused.value.client_id == "reader-1"
    assert (client.credential_checks, reader.credential_checks) == (1, 1)
    assert outbox.counts()[S.QUEUED] == 3
    assert client.sends.total() == 0
    assert not [e for e in recorder.events if isinstance(e, RelayCannotReconcile | RelayClaimed)]


def test_a_refused_submitting_credential_stops_the_relay_before_the_reconciler_asks_for_a_token(
    outbox: MemoryOutbox, clock: FakeClock
) -> None:
    client, reader = FakeClient(), FakeClient()
    client.refused = AuthenticationError("client-1", "invalid_client")
    with pytest.raises(AuthenticationError) as refused:
        relay(outbox, client, clock, reconciler=reader).run()
    assert refused.value.client_id == "client-1"
    assert (reader.credential_checks, reader.searches.total()) == (0, 0)  # the address is locked out by now


def test_the_observer_sees_claims_and_every_recorded_decision(outbox: MemoryOutbox, clock: FakeClock) -> None:
    refs = enqueue(outbox, 3)
    client = FakeClient()
    client.scripts[refs[0]] = [RejectedError(400, ())]
    recorder = Recorder()
    relay(outbox, client, clock, observer=recorder).drain()
    claimed = sum(e.count for e in recorder.events if isinstance(e, RelayClaimed))
    decisions = {e.client_reference: e.decision for e in recorder.events if isinstance(e, RelayRecorded)}
    assert claimed == 3
    assert isinstance(decisions[refs[0]], Dead)
    assert all(isinstance(decisions[ref], RecordAccepted) for ref in refs[1:])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"concurrency": 11}, "concurrency"),
        ({"concurrency": 0}, "concurrency"),
        ({"batch_size": 0}, "batch_size"),
        ({"lease": 0.0}, "lease"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(
    outbox: MemoryOutbox, clock: FakeClock, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigurationError) as e:
        relay(outbox, FakeClient(), clock, **kwargs)
    assert e.value.field == field


def test_claims_whose_lease_was_lost_are_never_sent(clock: FakeClock) -> None:
    gate = threading.Event()
    client = FakeClient(gate)
    taken: list[Claim] = []

    class StalledOutbox(MemoryOutbox):
        """The relay stalled past its leases: by its next renewal another relay has claimed every row."""

        def renew(self, claims: Sequence[Claim], lease: float) -> frozenset[OutboxId]:
            taken.extend(self.claim("relay-2", 10, 1e9))
            return frozenset()

    lost = threading.Semaphore(0)

    class Lost(Recorder):
        def on_event(self, event: Event) -> None:
            if isinstance(event, RelayNotRecorded):
                lost.release()

    outbox = StalledOutbox(clock)
    outbox.enqueue_many([message(i) for i in range(5)])
    r = relay(outbox, client, clock, concurrency=1, batch_size=5, observer=Lost())
    runner = threading.Thread(target=r.run)
    runner.start()
    assert client.started.acquire(timeout=WAIT)  # one sending, four waiting for the worker
    clock.advance(40.0)  # past the 30 s lease: the relay renews, and learns it holds nothing
    for _ in range(4):
        assert lost.acquire(timeout=WAIT)  # the four waiting are dropped unsent
    gate.set()
    assert lost.acquire(timeout=WAIT)  # the one in flight finds its row taken and records nothing
    r.stop()
    runner.join(WAIT)
    assert not runner.is_alive()
    assert len(taken) == 5
    assert client.sends.total() == 1
    assert r.stats().not_recorded == 5
    assert outbox.counts()[S.ACCEPTED] == 0  # relay-2 holds every row; relay-1 recorded nothing


def test_an_outcome_the_outbox_failed_to_record_is_reconciled_not_resent(clock: FakeClock) -> None:
    failures = [OutboxError("disk full")]

    class FlakyOutbox(MemoryOutbox):
        def settle(self, settlements: Sequence[Settlement]) -> list[Claim]:
            if failures:
                raise failures.pop()
            return super().settle(settlements)

    outbox = FlakyOutbox(clock)
    [ref] = enqueue(outbox, 1)
    client = FakeClient()
    stats = relay(outbox, client, clock).drain()
    assert client.sends[ref] == 1
    assert client.searches[ref] == 1
    assert outbox.counts()[S.ACCEPTED] == 1
    assert (stats.not_recorded, stats.reconciled) == (1, 1)


def test_a_send_outliving_the_stop_timeout_is_abandoned_to_its_lease(outbox: MemoryOutbox, clock: FakeClock) -> None:
    enqueue(outbox, 1)
    gate = threading.Event()
    client = FakeClient(gate)
    r = relay(outbox, client, clock, stop_timeout=0.0)
    result: list[RelayStats] = []
    runner = threading.Thread(target=lambda: result.append(r.run()))
    runner.start()
    assert client.started.acquire(timeout=WAIT)
    r.stop()
    runner.join(WAIT)
    assert not runner.is_alive()
    gate.set()
    assert [s.abandoned for s in result] == [1]
    assert outbox.counts()[S.IN_FLIGHT] == 1


def test_one_relay_runs_one_loop(outbox: MemoryOutbox, clock: FakeClock) -> None:
    enqueue(outbox, 1)
    gate = threading.Event()
    client = FakeClient(gate)
    r = relay(outbox, client, clock)
    runner = threading.Thread(target=r.drain)
    runner.start()
    assert client.started.acquire(timeout=WAIT)
    with pytest.raises(ConfigurationError) as e:
        r.run()
    gate.set()
    runner.join(WAIT)
    assert not runner.is_alive()
    assert e.value.field == "Relay.run"
    assert r.owner == "relay-1"


_BEHAVIOURS: dict[str, Behaviour] = {
    "accept": ACCEPT,
    "taken-then-lost": TAKEN_THEN_LOST,
    "lost": LOST,
    "transient": TransientError("503"),
    "rejected": RejectedError(400, ()),
}


@settings(deadline=None)
@given(
    scripts=st.lists(st.lists(st.sampled_from(sorted(_BEHAVIOURS)), max_size=6), min_size=1, max_size=6),
    search_failures=st.integers(0, 3),
)
# Six sends with max_attempts 5, rightly: the fourth 503 opened the breaker, and a send failing while it is open is
# released uncounted (docs/relay.md). Found by the search once in a while; pinned so the bound below is always met.
@example(scripts=[["lost"], ["transient", "transient", "transient", "transient", "lost"]], search_failures=0)
# Five sends lost and not found: the sixth was refused after the row was taken back, which counted it unsent.
@example(scripts=[["lost", "lost", "lost", "lost", "lost"]], search_failures=0)
def test_every_message_ends_accepted_exactly_once_or_dead_never_duplicated(
    scripts: list[list[str]], search_failures: int
) -> None:
    clock = FakeClock()
    outbox = MemoryOutbox(clock)
    ids = outbox.enqueue_many([message(i) for i in range(len(scripts))])
    client = FakeClient()
    for outbox_id, script in zip(ids, scripts, strict=True):
        client.scripts[ref_of(outbox, outbox_id)] = [_BEHAVIOURS[b] for b in script]
    client.search_faults = [TransientError("search got 503")] * search_failures
    stats = relay(outbox, client, clock, concurrency=3, batch_size=2).drain()
    for outbox_id in ids:
        status = outbox.status(outbox_id)
        assert status is not None
        copies = client.accepted.get(status.client_reference, [])
        assert len(copies) <= 1
        assert status.attempts <= RULES.max_attempts  # the sends counted
        # Only a send that failed while the breaker was open goes uncounted, and only a 503 can be one of those.
        script = scripts[ids.index(outbox_id)]
        assert status.attempts <= client.sends[status.client_reference] <= status.attempts + script.count("transient")
        if status.state is S.ACCEPTED:
            assert [status.message_id] == copies
        else:
            assert status.state is S.DEAD
            assert copies == []
    assert stats.accepted + stats.dead == len(ids)
    assert stats.duplicates == 0


def test_an_outbox_failing_to_claim_does_not_stop_the_relay(clock: FakeClock) -> None:
    failures = [OutboxError("the database restarted")]

    class RestartingOutbox(MemoryOutbox):
        def claim(self, owner: str, limit: int, lease: float) -> list[Claim]:
            if failures:
                raise failures.pop()
            return super().claim(owner, limit, lease)

    outbox = RestartingOutbox(clock)
    enqueue(outbox, 3)
    recorder = Recorder()
    stats = relay(outbox, FakeClient(), clock, idle_wait=0.01, observer=recorder).drain()
    assert (stats.outbox_errors, stats.accepted) == (1, 3)
    assert [e for e in recorder.events if isinstance(e, RelayOutboxFailed)] == [
        RelayOutboxFailed("relay-1", "the database restarted")
    ]


def test_outcomes_queued_while_the_recorder_commits_are_settled_in_one_transaction(clock: FakeClock) -> None:
    settling = [threading.Event(), threading.Event()]  # the first and second commits have begun
    last_sending, go_on = threading.Event(), threading.Event()
    batches: list[int] = []

    class SlowOutbox(MemoryOutbox):
        """Its first commit lasts until the test says so, as an fsync would while the workers go on sending."""

        def settle(self, settlements: Sequence[Settlement]) -> list[Claim]:
            batches.append(len(settlements))
            settling[min(len(batches), 2) - 1].set()
            if len(batches) == 1:
                assert go_on.wait(WAIT)
            return super().settle(settlements)

    class PacedClient(FakeClient):
        """Sends the second message once the first commit began, and the sixth once the second one did."""

        def submit(self, message: SubmitMessage) -> str:
            sent = self.sends.total()
            if sent == 1:
                assert settling[0].wait(WAIT)
            elif sent == 5:
                last_sending.set()
                assert settling[1].wait(WAIT)
            return super().submit(message)

    outbox = SlowOutbox(clock)
    enqueue(outbox, 6)
    runner = threading.Thread(target=relay(outbox, PacedClient(), clock, concurrency=1, batch_size=6).drain)
    runner.start()
    assert last_sending.wait(WAIT)  # outcomes 2 to 5 are queued behind the first, slow commit
    go_on.set()
    runner.join(WAIT)
    assert not runner.is_alive()
    assert outbox.counts()[S.ACCEPTED] == 6
    assert batches == [1, 4, 1]


def test_a_separate_reconciler_searches_while_a_submit_only_client_sends(
    outbox: MemoryOutbox, clock: FakeClock
) -> None:
    [ref] = enqueue(outbox, 1)
    client = FakeClient()
    client.submit_only = True
    client.scripts[ref] = [TAKEN_THEN_LOST]

    class Reader:
        """A read-capable credential on the same account: it sees what the submitter's submissions left."""

        def __init__(self) -> None:
            self.tags: list[str] = []

        def check_credentials(self) -> float:
            return 60.0

        def messages_by_tag(self, tag: str) -> Iterator[Message]:
            self.tags.append(tag)
            return iter([Message(id=i, tags=(tag,)) for i in client.accepted.get(tag.removeprefix("ref:"), [])])

    reader, recorder = Reader(), Recorder()
    stats = relay(outbox, client, clock, reconciler=reader, observer=recorder).drain()
    assert (stats.accepted, stats.reconciled, stats.dead) == (1, 1, 0)
    assert client.sends[ref] == 1
    assert reader.tags[1:] == [f"ref:{ref}"]
    assert not [e for e in recorder.events if isinstance(e, RelayCannotReconcile)]


def test_a_relay_that_cannot_search_says_so_at_start_naming_the_fix(
    outbox: MemoryOutbox, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = FakeClient()
    client.submit_only = True
    recorder = Recorder()
    relay(outbox, client, clock, observer=recorder).drain()
    [warning] = [e for e in recorder.events if isinstance(e, RelayCannotReconcile)]
    assert recorder.events[0] == warning
    assert "403" in warning.reason
    assert "FLOWMAILER_RECONCILE_CLIENT_ID" in warning.reason
    assert "reconciler=" in warning.reason
    assert [r.levelname for r in caplog.records if "cannot be reconciled" in r.getMessage()] == ["WARNING"]


class Boom(BaseException):
    """What no relay code catches on purpose: a thread that meets it dies."""


def run_aside(target: Callable[[], RelayStats]) -> tuple[threading.Thread, list[RelayStats | BaseException]]:
    """Run the relay in another thread, so that a hung relay fails the test instead of hanging it."""
    ended: list[RelayStats | BaseException] = []

    def main() -> None:
        try:
            ended.append(target())
        except BaseException as e:  # noqa: BLE001 - handed to the test, which asserts on it
            ended.append(e)

    runner = threading.Thread(target=main, daemon=True)
    runner.start()
    return runner, ended


def test_an_observer_that_raises_is_logged_and_the_relay_drains_on(
    outbox: MemoryOutbox, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    enqueue(outbox, 20)

    class Flaky:
        def on_event(self, event: Event) -> None:
            if isinstance(event, RelayRecorded):
                raise RuntimeError("metrics backend down")

    r = relay(outbox, FakeClient(), clock, observer=Flaky(), idle_wait=0.01)
    runner, ended = run_aside(r.drain)
    runner.join(WAIT)
    assert not runner.is_alive()
    assert outbox.counts()[S.ACCEPTED] == 20
    assert [type(e) for e in ended] == [RelayStats]
    assert len([r for r in caplog.records if "the observer raised on RelayRecorded" in r.getMessage()]) == 20


def test_a_recorder_thread_that_dies_stops_the_relay_and_run_raises(clock: FakeClock) -> None:
    class BrokenOutbox(MemoryOutbox):
        def settle(self, settlements: Sequence[Settlement]) -> list[Claim]:
            if settlements[0].kind != "release":
                raise Boom
            return super().settle(settlements)

    outbox = BrokenOutbox(clock)
    enqueue(outbox, 3)
    runner, ended = run_aside(relay(outbox, FakeClient(), clock, stop_timeout=0.0, idle_wait=0.01).drain)
    runner.join(WAIT)
    assert not runner.is_alive()
    assert [type(e) for e in ended] == [Boom]


def test_a_worker_thread_that_dies_stops_the_relay_and_run_raises(outbox: MemoryOutbox, clock: FakeClock) -> None:
    class BrokenClient(FakeClient):
        def submit(self, message: SubmitMessage) -> str:
            raise Boom

    enqueue(outbox, 1)
    runner, ended = run_aside(relay(outbox, BrokenClient(), clock, stop_timeout=0.0, idle_wait=0.01).run)
    runner.join(WAIT)
    assert not runner.is_alive()
    assert [type(e) for e in ended] == [Boom]
    assert outbox.counts()[S.IN_FLIGHT] == 1  # abandoned to its lease, to be reconciled


@pytest.mark.parametrize("relay_kind", ["threaded"])  # it holds one worker thread by its name
def test_a_claim_a_worker_took_just_before_its_lease_was_reported_lost_is_never_sent(relay_kind: str) -> None:
    worker_waiting, renewal_done = threading.Event(), threading.Event()
    renewed = threading.Event()

    class RacingClock(FakeClock):
        """Holds the worker between taking its claim and sending it until the claimer has finished a renewal."""

        def now(self) -> float:
            if threading.current_thread().name == "flowmailer-relay-0" and not renewal_done.is_set():
                worker_waiting.set()
                assert renewal_done.wait(WAIT)
            return super().now()

        def monotonic(self) -> float:
            if renewed.is_set() and threading.current_thread().name == "relay-loop":
                renewal_done.set()  # the claimer reads the clock again once _renew has returned
            return super().monotonic()

    class LosingOutbox(MemoryOutbox):
        def renew(self, claims: Sequence[Claim], lease: float) -> frozenset[OutboxId]:
            renewed.set()
            return frozenset()

    clock = RacingClock()
    outbox = LosingOutbox(clock)
    enqueue(outbox, 1)
    client, recorder = FakeClient(), Recorder()
    r = relay(outbox, client, clock, concurrency=1, idle_wait=0.01, observer=recorder)
    runner = threading.Thread(target=r.run, name="relay-loop", daemon=True)
    runner.start()
    assert worker_waiting.wait(WAIT)
    clock.advance(10.0)  # a third of the 30 s lease: the claimer renews, while 20 s of the lease seem left
    assert renewal_done.wait(WAIT)
    r.stop()
    runner.join(WAIT)
    assert not runner.is_alive()
    assert client.sends.total() == 0
    assert [e.outbox_id for e in recorder.events if isinstance(e, RelayNotRecorded)] == [1]


def test_searches_by_tag_do_not_count_against_max_attempts(outbox: MemoryOutbox, clock: FakeClock) -> None:
    [ref] = enqueue(outbox, 1)
    client = FakeClient()
    client.scripts[ref] = [LOST]
    client.search_faults = [TransientError("search got 503")] * 2
    two_sends = RelayRules(max_attempts=2, max_age=3600.0, backoff=RULES.backoff, reconcile_delay=5.0)
    relay(outbox, client, clock, rules=two_sends).drain()
    status = outbox.status(1)
    assert status is not None
    assert (client.sends[ref], client.searches[ref]) == (2, 3)
    assert (status.state, status.attempts) == (S.ACCEPTED, 2)


def test_a_requeued_dead_letter_flowmailer_may_have_is_found_not_sent_again(
    outbox: MemoryOutbox, clock: FakeClock
) -> None:
    [ref] = enqueue(outbox, 1)
    client = FakeClient()
    client.scripts[ref] = [TAKEN_THEN_LOST]
    client.search_faults = [RejectedError(403, ())]  # the one search is refused: the message dies unreconciled
    relay(outbox, client, clock).drain()
    dead = outbox.status(1)
    assert dead is not None
    assert dead.state is S.DEAD
    assert outbox.requeue_dead([1]) == 1
    stats = relay(outbox, client, clock).drain()
    status = outbox.status(1)
    assert status is not None
    assert (status.state, status.message_id) == (S.ACCEPTED, client.accepted[ref][0])
    assert (client.sends[ref], len(client.accepted[ref]), client.searches[ref]) == (1, 1, 2)
    assert (stats.reconciled, stats.duplicates) == (1, 0)


def test_a_requeued_dead_letter_flowmailer_may_have_is_sent_once_not_found(
    outbox: MemoryOutbox, clock: FakeClock
) -> None:
    [ref] = enqueue(outbox, 1)
    client = FakeClient()
    client.scripts[ref] = [LOST]
    client.search_faults = [RejectedError(403, ())]
    relay(outbox, client, clock).drain()
    assert outbox.requeue_dead([1]) == 1
    relay(outbox, client, clock).drain()
    status = outbox.status(1)
    assert status is not None
    assert status.state is S.ACCEPTED
    assert (client.sends[ref], len(client.accepted[ref]), client.searches[ref]) == (2, 1, 2)


def test_a_requeued_dead_letter_that_died_of_old_age_is_sent_again(outbox: MemoryOutbox, clock: FakeClock) -> None:
    [ref] = enqueue(outbox, 1)
    client = FakeClient()
    clock.advance(RULES.max_age + 1)
    relay(outbox, client, clock).drain()
    dead = outbox.status(1)
    assert dead is not None
    assert (dead.state, client.sends[ref]) == (S.DEAD, 0)
    assert outbox.requeue_dead([1]) == 1
    relay(outbox, client, clock).drain()
    status = outbox.status(1)
    assert status is not None
    assert (status.state, client.sends[ref]) == (S.ACCEPTED, 1)
