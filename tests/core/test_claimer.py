"""The relay's accounting (``Claimer``), with no outbox, client or thread: any sequence of what can happen keeps
its promises, and a stop ends with every claim settled or given back."""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.core import (
    Cause,
    CircuitBreaker,
    Claim,
    Claimer,
    ClaimUpTo,
    HoldOff,
    Idle,
    RecordAccepted,
    RetryAt,
    SendCheck,
    SubmissionState,
    SubmitMessage,
    TransientError,
    lease_allows_send,
)

T0 = 1_700_000_000.0
LEASE = 30.0
MESSAGE = SubmitMessage(sender_address="app@example.com", recipient_address="bob@example.com", subject="hi")


def claim(i: int, now: float) -> Claim:
    return Claim(
        id=i,
        message=MESSAGE.with_client_reference(f"r{i}"),
        client_reference=f"r{i}",
        claimed_from=SubmissionState.QUEUED,
        attempts=1,
        enqueued_at=now,
        requeued_at=None,
        last_reason=None,
        owner="relay-1",
        lease_until=now + LEASE,
        token=1,
    )


class Relay:
    """A model relay driving the claimer as a shell would, checking each promise after every step."""

    def __init__(self, limit: int, batch_size: int) -> None:
        self.claimer = Claimer(limit=limit, batch_size=batch_size, lease=LEASE, breaker=CircuitBreaker(threshold=2))
        self.mono = 0.0
        self.next_id = 1
        self.sending: list[Claim] = []
        self.to_settle: list[tuple[Claim, object]] = []
        self.claimer.start(self.mono)

    @property
    def wall(self) -> float:
        return T0 + self.mono

    def check(self) -> None:
        c = self.claimer
        assert 0 <= c.sending == len(self.sending) <= c.limit
        assert c.renew_at - self.mono <= c.renew_every  # never more than a third of a lease to the next renewal
        assert len(c.queue) + c.sending + c.recording <= len(c.held)
        assert len(c.held) - c.recording <= c.limit + c.batch_size
        # Decisions waiting for the outbox count as room for one batch only: a recorder falling behind holds
        # claiming back, rather than the relay holding ever more rows a crash would leave to reconcile.
        assert len(c.held) <= c.limit + 2 * c.batch_size

    def step(self, action: tuple[str, int]) -> None:
        kind, n = action
        c = self.claimer
        if kind == "advance":
            self.mono += n
        elif kind == "plan":
            was_open = c.breaker.state(self.mono).value == "open"
            plan = c.plan(self.mono)
            if isinstance(plan, ClaimUpTo):
                assert not was_open  # nothing claimed while the breaker is open
                assert not c.stopping
                assert 1 <= plan.limit <= c.batch_size
                claims = [claim(self.next_id + i, self.wall) for i in range(min(n, plan.limit))]
                self.next_id += len(claims)
                c.claimed(claims, probe=plan.probe)
            else:
                assert isinstance(plan, HoldOff | Idle)
        elif kind == "take":
            taken = c.take()
            if taken is not None:
                assert not c.stopping
                check = c.send_check(taken, self.wall)
                if check is SendCheck.SEND:  # a send starts only with more than a third of its lease left
                    assert taken.id in c.held
                self.sending.append(taken)
        elif kind == "finish" and self.sending:
            done = self.sending.pop(n % len(self.sending))
            down = n % 3 == 0
            value: object = TransientError("503") if down else "m-1"
            seen = c.observed(done, value, started=self.mono, now=self.mono)
            self.to_settle.extend((waiting, None) for waiting in seen.unstarted)
            decision = RetryAt(self.wall + 5, Cause.TRANSIENT, "503") if down else RecordAccepted("m-1")
            handled = c.handled(done, (done, decision), failed_while_open=seen.failed_while_open)
            if handled is not None:
                if seen.failed_while_open:
                    assert handled[1] is None  # the breaker, not the row's backoff, paces it
                self.to_settle.append(handled)
        elif kind == "renew":
            due = c.renewal(self.mono)
            if due is not None:
                assert set(due) == set(c.held.values())  # every lease held, when due
                kept = frozenset(x.id for x in due if x.id % (n + 2))
                for lost in c.renewed(due, kept, self.wall + LEASE):
                    assert lost.id not in c.held
        elif kind == "settle" and self.to_settle:
            c.settled(self.to_settle)  # type: ignore[arg-type]
            self.to_settle.clear()
        elif kind == "stop":
            self.to_settle.extend((x, None) for x in c.stop())
        self.check()

    def drain(self) -> None:
        """Stop, let the senders finish and settle: nothing is held after."""
        c = self.claimer
        self.to_settle.extend((x, None) for x in c.stop())
        assert c.take() is None
        assert isinstance(c.plan(self.mono), HoldOff | Idle)
        while self.sending:
            done = self.sending.pop()
            handled = c.handled(done, (done, RecordAccepted("m")))
            assert handled is not None
            self.to_settle.append(handled)
        c.settled(self.to_settle)  # type: ignore[arg-type]
        assert c.held == {}
        assert (c.sending, c.recording, len(c.queue)) == (0, 0, 0)
        assert c.abandon() == 0


actions = st.lists(
    st.tuples(st.sampled_from(["advance", "plan", "take", "finish", "renew", "settle", "stop"]), st.integers(0, 25)),
    max_size=80,
)


@given(limit=st.integers(1, 10), batch_size=st.integers(1, 30), steps=actions)
def test_any_sequence_keeps_the_limits_and_a_stop_ends_with_nothing_held(
    limit: int, batch_size: int, steps: list[tuple[str, int]]
) -> None:
    relay = Relay(limit, batch_size)
    for action in steps:
        relay.step(action)
    relay.drain()


@given(left=st.floats(-100, 100))
def test_a_send_starts_only_while_the_lease_allows_it_and_a_lost_lease_is_dropped(left: float) -> None:
    c = Claimer(limit=1, batch_size=1, lease=LEASE, breaker=CircuitBreaker())
    c.start(0.0)
    one = attrs.evolve(claim(1, T0), lease_until=T0 + left)
    c.claimed([one])
    expected = SendCheck.SEND if lease_allows_send(left, LEASE) else SendCheck.RENEW
    assert c.send_check(one, T0) is expected
    taken = c.take()
    assert taken is one
    assert c.renewed([one], frozenset(), T0 + LEASE) == []  # taken: not dropped here, but never sent
    assert c.send_check(one, T0) is SendCheck.DROP
    c.renewed([one], frozenset({1}), T0 + LEASE)
    assert c.send_check(one, T0) is SendCheck.SEND


def test_a_lease_lost_while_waiting_for_a_sender_is_dropped_unsent() -> None:
    c = Claimer(limit=1, batch_size=4, lease=LEASE, breaker=CircuitBreaker())
    c.start(0.0)
    claims = [claim(i, T0) for i in range(1, 4)]
    c.claimed(claims)
    first = c.take()
    due = c.renewal(LEASE / 3)
    assert due == claims
    assert c.renewed(claims, frozenset({1}), T0 + LEASE) == claims[1:]
    assert (first, list(c.queue), sorted(c.held)) == (claims[0], [], [1])
    assert c.stats().not_recorded == 2


def test_the_breaker_open_claims_nothing_probes_with_one_and_hands_back_what_waits() -> None:
    c = Claimer(limit=2, batch_size=4, lease=LEASE, breaker=CircuitBreaker(threshold=1, cooldown=1.0))
    c.start(0.0)
    assert c.plan(0.0) == ClaimUpTo(4)
    claims = [claim(i, T0) for i in range(1, 5)]
    c.claimed(claims)
    sent = c.take()
    assert sent is not None
    seen = c.observed(sent, TransientError("503"), started=0.0, now=0.5)
    assert (seen.opened, seen.failed_while_open, seen.unstarted) == (True, True, tuple(claims[1:]))
    assert c.take() is None
    assert c.plan(0.6) == HoldOff(0.9)
    assert c.handled(sent, (sent, RetryAt(T0, Cause.TRANSIENT, "503")), failed_while_open=True) == (sent, None)
    c.settled([(sent, None), *((x, None) for x in seen.unstarted)])
    assert c.plan(1.6) == ClaimUpTo(1, probe=True)  # half-open: one probe
    assert c.plan(1.6) == HoldOff(0.0)  # and nothing else while it is out
    c.claimed([], probe=True)  # nothing was due: the probe is withdrawn, the next plan probes
    assert c.plan(1.7) == ClaimUpTo(1, probe=True)
    probe = claim(9, T0)
    c.claimed([probe], probe=True)
    assert c.take() is probe
    seen = c.observed(probe, "m-9", started=1.7, now=1.8)
    assert seen.closed
    assert c.plan(1.9) == ClaimUpTo(4)


def test_room_counts_senders_and_one_batch_waiting_and_claims_again_at_half_a_batch() -> None:
    c = Claimer(limit=3, batch_size=10, lease=LEASE, breaker=CircuitBreaker())
    c.start(0.0)
    c.claimed([claim(i, T0) for i in range(1, 14)])
    assert c.plan(0.0) == Idle(busy=True)
    taken = [c.take() for _ in range(4)]
    assert taken[3] is None  # three senders at most
    for sent in taken[:3]:
        assert sent is not None
        c.handled(sent, (sent, RecordAccepted("m")))
    assert c.plan(0.0) == Idle(busy=True)  # recorded ones no longer take room: 13 - 3 + 3 = 13 held
    c.settled([(x, RecordAccepted("m")) for x in taken[:3] if x is not None])
    assert c.plan(0.0) == Idle(busy=True)  # 10 held: 3 of room, under half a batch
    for _ in range(2):
        sent = c.take()
        assert sent is not None
        c.handled(sent, None)
    assert c.plan(0.0) == ClaimUpTo(5)
    c.limit = 1  # e.g. fewer connection slots are held: fewer senders, less room
    assert c.plan(0.0) == Idle(busy=True)


def test_decisions_waiting_to_be_recorded_make_room_for_one_batch_only() -> None:
    c = Claimer(limit=2, batch_size=4, lease=LEASE, breaker=CircuitBreaker())
    c.start(0.0)
    ids = iter(range(1, 100))
    for _ in range(3):  # senders finish three rounds while the recorder writes nothing
        plan = c.plan(0.0)
        assert isinstance(plan, ClaimUpTo)
        c.claimed([claim(next(ids), T0) for _ in range(plan.limit)])
        while (sent := c.take()) is not None:
            c.handled(sent, (sent, RecordAccepted("m")))
    assert (len(c.held), c.recording) == (10, 10)  # 2 senders + a batch + a batch being recorded
    assert c.plan(0.0) == Idle(busy=True)  # the recorder first
    c.settled([(x, RecordAccepted("m")) for x in list(c.held.values())[:4]])
    assert c.plan(0.0) == ClaimUpTo(4)
