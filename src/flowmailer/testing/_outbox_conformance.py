"""The conformance suite every :class:`flowmailer.ports.Outbox` must pass: the fake, SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from flowmailer.core import (
    Claim,
    ConfigurationError,
    ErrorDetail,
    LeaseLostError,
    LifecycleError,
    OutboxStatus,
    Settlement,
    SubmissionState,
    SubmitMessage,
    TraceContext,
)
from flowmailer.ports import Outbox
from flowmailer.testing._clock import FakeClock

__all__ = ["OUTBOX_CHECKS", "OutboxFactory", "check_outbox"]

#: Builds a fresh, empty outbox that reads time from the given clock.
OutboxFactory = Callable[[FakeClock], Outbox]

_S = SubmissionState
LEASE = 30.0


def check_outbox(factory: OutboxFactory, checks: Iterable[Callable[[Outbox, FakeClock], None]] | None = None) -> None:
    """Run every check (or these), each on a fresh outbox; raises AssertionError naming the check that failed."""
    for check in OUTBOX_CHECKS if checks is None else checks:
        clock = FakeClock()
        outbox = factory(clock)
        try:
            check(outbox, clock)
        except AssertionError as e:
            raise AssertionError(f"{check.__name__}: {e}") from e
        finally:
            outbox.close()


def _message(n: int = 0, *, reference: str | None = None) -> SubmitMessage:
    built = SubmitMessage(
        sender_address="sender@example.com", recipient_address=f"r{n}@example.com", subject=f"m{n}", text="hi"
    )
    return built if reference is None else built.with_client_reference(reference)


def _status(outbox: Outbox, outbox_id: int) -> OutboxStatus:
    status = outbox.status(outbox_id)
    assert status is not None, f"row {outbox_id} is missing"
    return status


def _only(claims: list[Claim]) -> Claim:
    assert len(claims) == 1, f"expected one claim, got {len(claims)}"
    return claims[0]


def _raises(error: type[Exception], action: Callable[[], object]) -> None:
    try:
        action()
    except error:
        return
    raise AssertionError(f"expected {error.__name__}")


def _settle(outbox: Outbox, settlement: Settlement) -> bool:
    """Record one outcome: True if its claim still held the row, False if ``settle`` answered it as lost."""
    lost = outbox.settle([settlement])
    assert lost in ([], [settlement.claim]), f"settle answered {lost!r} for one claim"
    return not lost


def _total(outbox: Outbox) -> int:
    return sum(outbox.counts().values())


# -- enqueue -----------------------------------------------------------------------------------------------------


def check_enqueue_assigns_a_client_reference_and_queues(outbox: Outbox, clock: FakeClock) -> None:
    first, second = outbox.enqueue(_message(1)), outbox.enqueue(_message(2))
    assert first != second
    status = _status(outbox, first)
    assert status.state is _S.QUEUED
    assert status.attempts == 0
    assert status.enqueued_at == status.due_at == clock.now()
    assert len(status.client_reference) == 32
    int(status.client_reference, 16)
    assert _status(outbox, second).client_reference != status.client_reference
    claim = _only(outbox.claim("relay", 1, LEASE))
    assert claim.message == _message(1).with_client_reference(status.client_reference)
    assert claim.message.client_reference() == claim.client_reference == status.client_reference


def check_enqueue_keeps_the_messages_own_reference_and_refuses_a_duplicate(outbox: Outbox, clock: FakeClock) -> None:
    outbox_id = outbox.enqueue(_message(1, reference="order-1"))
    assert _status(outbox, outbox_id).client_reference == "order-1"
    _raises(ConfigurationError, lambda: outbox.enqueue(_message(2, reference="order-1")))
    assert _total(outbox) == 1


def check_dedupe_key_returns_the_first_id_and_stores_one_row(outbox: Outbox, clock: FakeClock) -> None:
    first = outbox.enqueue(_message(1), dedupe_key="order-7")
    again = outbox.enqueue(_message(2), dedupe_key="order-7")
    other = outbox.enqueue(_message(3), dedupe_key="order-8")
    assert again == first != other
    assert outbox.counts()[_S.QUEUED] == 2
    assert _status(outbox, first).dedupe_key == "order-7"
    for bad in (7, "", "x" * 201):
        _raises(ConfigurationError, lambda bad=bad: outbox.enqueue(_message(4), dedupe_key=bad))  # type: ignore[misc]
    assert _total(outbox) == 2


def check_enqueue_refuses_what_is_not_a_message(outbox: Outbox, clock: FakeClock) -> None:
    _raises(ConfigurationError, lambda: outbox.enqueue({"subject": "hi"}))  # type: ignore[arg-type]
    assert _total(outbox) == 0


def check_enqueue_many_is_all_or_nothing(outbox: Outbox, clock: FakeClock) -> None:
    ids = outbox.enqueue_many([_message(i) for i in range(5)])
    assert len(set(ids)) == 5
    assert [c.message.subject for c in outbox.claim("relay", 10, LEASE)] == [f"m{i}" for i in range(5)]
    _raises(ConfigurationError, lambda: outbox.enqueue_many([_message(5), "not a message"]))  # type: ignore[list-item]
    twins = [_message(6, reference="twin"), _message(7, reference="twin")]
    _raises(ConfigurationError, lambda: outbox.enqueue_many(twins))
    assert _total(outbox) == 5
    assert outbox.enqueue_many([]) == []


# -- claims --------------------------------------------------------------------------------------------------------


def check_claim_leases_due_rows_oldest_first_once(outbox: Outbox, clock: FakeClock) -> None:
    ids = []
    for i in range(5):
        ids.append(outbox.enqueue(_message(i)))
        clock.advance(1)
    first = outbox.claim("a", 3, LEASE)
    assert [c.id for c in first] == ids[:3]
    claim = first[0]
    assert (claim.owner, claim.lease_until, claim.attempts) == ("a", clock.now() + LEASE, 1)
    assert (claim.claimed_from, claim.state, claim.must_reconcile) == (_S.QUEUED, _S.IN_FLIGHT, False)
    assert claim.enqueued_at == clock.now() - 5
    assert claim.last_reason is None
    assert [c.id for c in outbox.claim("b", 10, LEASE)] == ids[3:]
    assert outbox.claim("c", 10, LEASE) == []
    status = _status(outbox, ids[0])
    assert (status.state, status.attempts, status.due_at) == (_S.IN_FLIGHT, 1, claim.lease_until)
    assert outbox.counts()[_S.IN_FLIGHT] == 5


def check_claim_refuses_bad_arguments(outbox: Outbox, clock: FakeClock) -> None:
    outbox.enqueue(_message())
    for owner, limit, lease in (("", 1, LEASE), ("a", 0, LEASE), ("a", 1, 0.0), ("a", 1, float("nan"))):
        _raises(ConfigurationError, lambda o=owner, n=limit, t=lease: outbox.claim(o, n, t))  # type: ignore[misc]
    assert outbox.counts()[_S.QUEUED] == 1


def check_lapsed_lease_comes_back_to_be_reconciled(outbox: Outbox, clock: FakeClock) -> None:
    outbox_id = outbox.enqueue(_message())
    lost = _only(outbox.claim("a", 1, LEASE))
    clock.advance(LEASE - 1)
    assert outbox.claim("b", 1, LEASE) == []
    clock.advance(1)
    taken = _only(outbox.claim("b", 1, LEASE))
    assert (taken.id, taken.claimed_from, taken.state, taken.must_reconcile) == (
        outbox_id,
        _S.IN_FLIGHT,
        _S.RECONCILING,
        True,
    )
    assert taken.attempts == 1  # a search, not a send
    assert _status(outbox, outbox_id).state is _S.RECONCILING
    for late in (
        Settlement.accepted(lost, "m-1"),
        Settlement.retry(lost, clock.now() + 5, "late"),
        Settlement.reconcile(lost, clock.now() + 5, "late"),
        Settlement.dead(lost, "late"),
        Settlement.release(lost),
    ):
        assert not _settle(outbox, late)
    assert outbox.renew([lost], LEASE) == frozenset()
    status = _status(outbox, outbox_id)
    assert (status.state, status.attempts, status.due_at) == (_S.RECONCILING, 1, taken.lease_until)
    assert _settle(outbox, Settlement.accepted(taken, "m-2"))
    assert _status(outbox, outbox_id).message_id == "m-2"


def check_renew_extends_only_leases_still_held(outbox: Outbox, clock: FakeClock) -> None:
    a, b = outbox.enqueue(_message(1)), outbox.enqueue(_message(2))
    claims = outbox.claim("a", 2, LEASE)
    clock.advance(LEASE - 1)
    assert outbox.renew(claims[:1], LEASE) == frozenset({a})
    clock.advance(2)
    taken = _only(outbox.claim("b", 5, LEASE))
    assert taken.id == b
    assert outbox.renew(claims, LEASE) == frozenset({a})
    assert _status(outbox, a).due_at == clock.now() + LEASE
    _raises(ConfigurationError, lambda: outbox.renew(claims, -1.0))


def check_a_lapsed_lease_not_yet_taken_can_still_record(outbox: Outbox, clock: FakeClock) -> None:
    outbox_id = outbox.enqueue(_message())
    claim = _only(outbox.claim("a", 1, LEASE))
    clock.advance(LEASE * 2)
    assert _settle(outbox, Settlement.accepted(claim, "m-1"))
    assert _status(outbox, outbox_id).state is _S.ACCEPTED
    assert outbox.claim("b", 1, LEASE) == []


# -- outcomes ------------------------------------------------------------------------------------------------------


def check_accepted_is_final_and_recorded_once(outbox: Outbox, clock: FakeClock) -> None:
    outbox_id = outbox.enqueue(_message())
    claim = _only(outbox.claim("a", 1, LEASE))
    clock.advance(1)
    assert _settle(outbox, Settlement.accepted(claim, "20211230130407e3b36e2e92fdbefc86"))
    status = _status(outbox, outbox_id)
    assert (status.state, status.message_id, status.due_at) == (_S.ACCEPTED, "20211230130407e3b36e2e92fdbefc86", None)
    assert status.updated_at == clock.now()
    assert not _settle(outbox, Settlement.accepted(claim, "again"))
    assert not _settle(outbox, Settlement.dead(claim, "again"))
    clock.advance(LEASE * 10)
    assert outbox.claim("a", 1, LEASE) == []


def check_retry_is_due_at_its_time(outbox: Outbox, clock: FakeClock) -> None:
    outbox_id = outbox.enqueue(_message())
    claim = _only(outbox.claim("a", 1, LEASE))
    assert _settle(outbox, Settlement.retry(claim, clock.now() + 60, "HTTP 503"))
    status = _status(outbox, outbox_id)
    assert (status.state, status.due_at, status.last_reason) == (_S.RETRY_SCHEDULED, clock.now() + 60, "HTTP 503")
    clock.advance(59)
    assert outbox.claim("a", 1, LEASE) == []
    clock.advance(1)
    again = _only(outbox.claim("a", 1, LEASE))
    assert (again.claimed_from, again.state, again.attempts, again.last_reason) == (
        _S.RETRY_SCHEDULED,
        _S.IN_FLIGHT,
        2,
        "HTTP 503",
    )


def check_reconcile_then_found(outbox: Outbox, clock: FakeClock) -> None:
    outbox_id = outbox.enqueue(_message())
    claim = _only(outbox.claim("a", 1, LEASE))
    assert _settle(outbox, Settlement.reconcile(claim, clock.now() + 60, "read timeout"))
    assert _status(outbox, outbox_id).state is _S.RECONCILING
    clock.advance(60)
    check = _only(outbox.claim("a", 1, LEASE))
    assert (check.claimed_from, check.must_reconcile, check.attempts) == (_S.RECONCILING, True, 1)
    assert _settle(outbox, Settlement.retry(check, clock.now() + 10, "search failed"))
    assert _status(outbox, outbox_id).state is _S.RECONCILING
    clock.advance(10)
    check = _only(outbox.claim("a", 1, LEASE))
    assert _settle(outbox, Settlement.accepted(check, "m-1"))
    assert _status(outbox, outbox_id).state is _S.ACCEPTED


def check_reconcile_then_not_found_resends_in_the_same_hands(outbox: Outbox, clock: FakeClock) -> None:
    outbox_id = outbox.enqueue(_message())
    claim = _only(outbox.claim("a", 1, LEASE))
    _raises(LifecycleError, lambda: outbox.resend(claim, LEASE))
    assert _settle(outbox, Settlement.reconcile(claim, clock.now(), "read timeout"))
    check = _only(outbox.claim("a", 1, LEASE))
    clock.advance(1)
    send = outbox.resend(check, LEASE)
    assert (send.id, send.owner, send.claimed_from, send.state, send.attempts) == (
        outbox_id,
        "a",
        _S.QUEUED,
        _S.IN_FLIGHT,
        2,
    )
    assert send.lease_until == clock.now() + LEASE
    assert send.message == check.message
    assert not _settle(outbox, Settlement.accepted(check, "m-0"))
    _raises(LeaseLostError, lambda: outbox.resend(check, LEASE))
    assert _status(outbox, outbox_id).state is _S.IN_FLIGHT
    assert _settle(outbox, Settlement.accepted(send, "m-1"))
    assert _status(outbox, outbox_id).message_id == "m-1"


def check_dead_letters_keep_their_errors_and_can_be_requeued(outbox: Outbox, clock: FakeClock) -> None:
    dead_id, live_id = outbox.enqueue(_message(1)), outbox.enqueue(_message(2))
    claim, _ = outbox.claim("a", 2, LEASE)
    errors = (
        ErrorDetail(code="message.toobig", default_message="too big", field="attachments", rejected_value=12),
        ErrorDetail(code="x", arguments=("a", 1)),
    )
    assert _settle(outbox, Settlement.dead(claim, "HTTP 413", errors))
    status = _status(outbox, dead_id)
    assert (status.state, status.last_reason, status.errors, status.due_at) == (_S.DEAD, "HTTP 413", errors, None)
    clock.advance(LEASE * 2)
    assert [c.id for c in outbox.claim("b", 5, LEASE)] == [live_id]
    _raises(ConfigurationError, lambda: outbox.requeue_dead([dead_id, 999_999]))
    _raises(ConfigurationError, lambda: outbox.requeue_dead([dead_id, live_id]))
    assert _status(outbox, dead_id).state is _S.DEAD
    assert outbox.requeue_dead([dead_id]) == 1
    status = _status(outbox, dead_id)
    assert (status.state, status.attempts, status.errors, status.due_at) == (_S.QUEUED, 0, (), clock.now())
    assert _only(outbox.claim("c", 5, LEASE)).id == dead_id


def check_a_requeued_dead_letter_flowmailer_may_have_is_searched_for_first(outbox: Outbox, clock: FakeClock) -> None:
    refused_id, unsure_id, lost_id = outbox.enqueue_many([_message(i) for i in range(3)])
    refused, unsure, lost = outbox.claim("a", 3, LEASE)
    now = clock.now()
    assert (
        outbox.settle([Settlement.dead(refused, "HTTP 400"), Settlement.reconcile(unsure, now, "read timeout")]) == []
    )
    clock.advance(LEASE)  # the lost send's lease runs out: it may have reached Flowmailer too
    for search in outbox.claim("b", 2, LEASE):
        assert search.must_reconcile
        assert outbox.settle([Settlement.dead(search, "cannot reconcile: the search was refused")]) == []
    clock.advance(1)
    assert outbox.requeue_dead([unsure_id]) == 1
    assert outbox.requeue_dead() == 2
    found = [_status(outbox, i) for i in (refused_id, unsure_id, lost_id)]
    assert [(s.state, s.due_at, s.attempts) for s in found] == [
        (_S.QUEUED, clock.now(), 0),
        (_S.RECONCILING, clock.now(), 0),
        (_S.RECONCILING, clock.now(), 0),
    ]
    again = outbox.claim("c", 3, LEASE)
    assert [(c.id, c.must_reconcile, c.attempts) for c in again] == [
        (refused_id, False, 1),
        (unsure_id, True, 0),
        (lost_id, True, 0),
    ]
    assert lost.id == lost_id


def check_requeue_restarts_the_age_clock_and_keeps_the_enqueue_time(outbox: Outbox, clock: FakeClock) -> None:
    enqueued = clock.now()
    outbox_id = outbox.enqueue(_message())
    clock.advance(100)
    first = _only(outbox.claim("a", 1, LEASE))
    assert (first.enqueued_at, first.requeued_at, first.age_from) == (enqueued, None, enqueued)
    assert _settle(outbox, Settlement.dead(first, "not sent: past max_age"))
    clock.advance(50)
    assert outbox.requeue_dead([outbox_id]) == 1
    requeued = clock.now()
    status = _status(outbox, outbox_id)
    assert (status.enqueued_at, status.requeued_at) == (enqueued, requeued)
    again = _only(outbox.claim("b", 1, LEASE))
    assert (again.enqueued_at, again.requeued_at, again.age_from) == (enqueued, requeued, requeued)
    assert _settle(outbox, Settlement.reconcile(again, clock.now(), "read timeout"))
    search = _only(outbox.claim("c", 1, LEASE))
    assert outbox.resend(search, LEASE).age_from == requeued


def check_dead_letters_are_listed_oldest_first_page_by_page(outbox: Outbox, clock: FakeClock) -> None:
    ids = outbox.enqueue_many([_message(i) for i in range(5)])
    claims = outbox.claim("a", 5, LEASE)
    errors = (ErrorDetail(code="invalid", field="recipientAddress", default_message="bad address"),)
    for claim in reversed(claims[::2]):  # died newest first: the listing still follows the ids
        assert _settle(outbox, Settlement.dead(claim, f"HTTP 400 #{claim.id}", errors))
    assert _settle(outbox, Settlement.accepted(claims[1], "m-1"))
    first = outbox.dead_letters(2)
    assert first == [_status(outbox, ids[0]), _status(outbox, ids[2])]
    assert (first[0].state, first[0].last_reason, first[0].errors) == (_S.DEAD, f"HTTP 400 #{ids[0]}", errors)
    assert [s.id for s in outbox.dead_letters(2, after=first[-1].id)] == [ids[4]]
    assert outbox.dead_letters(10, after=ids[4]) == []
    assert [s.id for s in outbox.dead_letters(10)] == ids[::2]
    for limit, after in ((0, None), (1, "3"), (1, True)):
        _raises(ConfigurationError, lambda n=limit, a=after: outbox.dead_letters(n, a))  # type: ignore[misc]


def check_requeue_all_dead(outbox: Outbox, clock: FakeClock) -> None:
    outbox.enqueue_many([_message(i) for i in range(3)])
    for claim in outbox.claim("a", 3, LEASE):
        assert _settle(outbox, Settlement.dead(claim, "refused"))
    assert outbox.requeue_dead([]) == 0
    assert outbox.requeue_dead() == 3
    assert outbox.counts()[_S.QUEUED] == 3
    assert outbox.requeue_dead() == 0


def check_release_returns_the_row_at_once_without_counting_an_attempt(outbox: Outbox, clock: FakeClock) -> None:
    send_id, check_id = outbox.enqueue(_message(1)), outbox.enqueue(_message(2))
    send, check = outbox.claim("a", 2, LEASE)
    assert _settle(outbox, Settlement.retry(send, clock.now(), "HTTP 503"))
    assert _settle(outbox, Settlement.reconcile(check, clock.now(), "read timeout"))
    send, check = outbox.claim("a", 2, LEASE)
    assert _settle(outbox, Settlement.release(send))
    assert _settle(outbox, Settlement.release(check))
    assert not _settle(outbox, Settlement.release(send))
    status = _status(outbox, send_id)
    assert (status.state, status.attempts, status.due_at) == (_S.QUEUED, 1, clock.now())
    status = _status(outbox, check_id)
    assert (status.state, status.attempts) == (_S.RECONCILING, 1)
    again = outbox.claim("b", 2, LEASE)
    assert [(c.id, c.attempts, c.must_reconcile) for c in again] == [(send_id, 2, False), (check_id, 1, True)]


def check_only_sends_count_as_attempts(outbox: Outbox, clock: FakeClock) -> None:
    outbox_id = outbox.enqueue(_message())
    send = _only(outbox.claim("a", 1, LEASE))
    assert outbox.settle([Settlement.reconcile(send, clock.now(), "read timeout")]) == []
    search = _only(outbox.claim("a", 1, LEASE))
    assert outbox.settle([Settlement.retry(search, clock.now(), "search failed")]) == []
    search = _only(outbox.claim("a", 1, LEASE))
    assert (send.attempts, search.attempts) == (1, 1)
    resent = outbox.resend(search, LEASE)
    assert resent.attempts == _status(outbox, outbox_id).attempts == 2
    clock.advance(LEASE)
    taken = _only(outbox.claim("b", 1, LEASE))  # the lapsed send is searched for, not sent
    assert taken.attempts == 2
    assert outbox.settle([Settlement.release(taken)]) == []
    assert _status(outbox, outbox_id).attempts == 2


def check_outcomes_refuse_bad_times_and_keep_the_claim(outbox: Outbox, clock: FakeClock) -> None:
    outbox_id = outbox.enqueue(_message())
    claim = _only(outbox.claim("a", 1, LEASE))
    _raises(ConfigurationError, lambda: outbox.settle([Settlement.retry(claim, float("inf"), "x")]))
    _raises(ConfigurationError, lambda: outbox.settle([Settlement.reconcile(claim, "soon", "x")]))  # type: ignore[arg-type]
    assert _status(outbox, outbox_id).state is _S.IN_FLIGHT
    assert _settle(outbox, Settlement.retry(claim, clock.now() + 1, "x"))


def check_settle_records_a_batch_and_answers_the_lost_claims(outbox: Outbox, clock: FakeClock) -> None:
    ids = outbox.enqueue_many([_message(i) for i in range(6)])
    claims = outbox.claim("a", 6, LEASE)
    clock.advance(LEASE)
    outbox.renew(claims[:5], LEASE)
    taken = _only(outbox.claim("b", 1, LEASE))
    assert taken.id == ids[5]
    errors = (ErrorDetail(code="invalid", field="recipientAddress"),)
    now = clock.now()
    answer = outbox.settle(
        [
            Settlement.accepted(claims[0], "m-0"),
            Settlement.retry(claims[1], now + 60, "HTTP 503"),
            Settlement.reconcile(claims[2], now + 90, "read timeout"),
            Settlement.dead(claims[3], "HTTP 400", errors),
            Settlement.release(claims[4]),
            Settlement.accepted(claims[5], "m-5"),
        ]
    )
    assert answer == [claims[5]]
    found = [_status(outbox, i) for i in ids]
    assert [(s.state, s.due_at, s.message_id, s.last_reason, s.errors, s.attempts) for s in found] == [
        (_S.ACCEPTED, None, "m-0", None, (), 1),
        (_S.RETRY_SCHEDULED, now + 60, None, "HTTP 503", (), 1),
        (_S.RECONCILING, now + 90, None, "read timeout", (), 1),
        (_S.DEAD, None, None, "HTTP 400", errors, 1),
        (_S.QUEUED, now, None, None, (), 0),
        (_S.RECONCILING, taken.lease_until, None, None, (), 1),
    ]
    assert outbox.settle([Settlement.release(taken)]) == []
    status = _status(outbox, taken.id)
    assert (status.state, status.due_at, status.attempts) == (_S.RECONCILING, now, 1)
    assert outbox.settle([]) == []


def check_settle_refuses_a_bad_batch_and_writes_nothing(outbox: Outbox, clock: FakeClock) -> None:
    outbox.enqueue_many([_message(i) for i in range(2)])
    first, second = outbox.claim("a", 2, LEASE)
    for batch in (
        [Settlement.accepted(first, "m-1"), "accepted"],
        [Settlement.accepted(first, "m-1"), Settlement.dead(second, "x"), Settlement.retry(first, clock.now(), "x")],
    ):
        _raises(ConfigurationError, lambda batch=batch: outbox.settle(batch))  # type: ignore[misc]
    _raises(ConfigurationError, lambda: Settlement.retry(first, float("nan"), "x"))
    assert outbox.counts()[_S.IN_FLIGHT] == 2
    assert outbox.settle([Settlement.accepted(first, "m-1"), Settlement.dead(second, "x")]) == []


# -- operators -----------------------------------------------------------------------------------------------------


def check_status_and_counts(outbox: Outbox, clock: FakeClock) -> None:
    assert outbox.status(12345) is None
    assert outbox.counts() == dict.fromkeys(SubmissionState, 0)
    outbox.enqueue_many([_message(i) for i in range(4)])
    a, b, c = outbox.claim("a", 3, LEASE)
    assert _settle(outbox, Settlement.accepted(a, "m"))
    assert _settle(outbox, Settlement.retry(b, clock.now() + 9, "x"))
    assert _settle(outbox, Settlement.dead(c, "x"))
    assert outbox.counts() == {
        _S.QUEUED: 1,
        _S.IN_FLIGHT: 0,
        _S.ACCEPTED: 1,
        _S.RETRY_SCHEDULED: 1,
        _S.RECONCILING: 0,
        _S.DEAD: 1,
    }


def check_prune_removes_only_old_accepted_rows(outbox: Outbox, clock: FakeClock) -> None:
    old = outbox.enqueue(_message(1), dedupe_key="old")
    dead = outbox.enqueue(_message(2))
    claim_old, claim_dead = outbox.claim("a", 2, LEASE)
    assert _settle(outbox, Settlement.accepted(claim_old, "m-1"))
    assert _settle(outbox, Settlement.dead(claim_dead, "x"))
    clock.advance(100)
    new = outbox.enqueue(_message(3))
    assert _settle(outbox, Settlement.accepted(_only(outbox.claim("a", 1, LEASE)), "m-3"))
    _raises(ConfigurationError, lambda: outbox.prune_accepted(-1))
    assert outbox.prune_accepted(101) == 0
    assert outbox.prune_accepted(100) == 1
    assert outbox.status(old) is None
    assert _status(outbox, dead).state is _S.DEAD
    assert _status(outbox, new).state is _S.ACCEPTED
    assert outbox.enqueue(_message(4), dedupe_key="old") != old


def check_find_by_reference_or_recipient_newest_first(outbox: Outbox, clock: FakeClock) -> None:
    first = outbox.enqueue(_message(1, reference="ref-one"))
    to_bob = [outbox.enqueue(attrs.evolve(_message(n), recipient_address="Bob@Example.com")) for n in range(3)]
    assert [s.id for s in outbox.find(client_reference="ref-one")] == [first]
    assert outbox.find(client_reference="ref-none") == []
    assert [s.id for s in outbox.find(recipient="bob@example.COM")] == to_bob[::-1]
    assert [s.id for s in outbox.find(recipient="bob@example.com", limit=2)] == to_bob[:0:-1]
    assert outbox.find(recipient="r1") == []  # the whole address, never a part of one
    found = outbox.find(recipient="r1@example.com")
    assert [(s.id, s.client_reference, s.state) for s in found] == [(first, "ref-one", _S.QUEUED)]
    _raises(ConfigurationError, lambda: outbox.find())
    _raises(ConfigurationError, lambda: outbox.find(client_reference="ref-one", recipient="r1@example.com"))
    _raises(ConfigurationError, lambda: outbox.find(recipient=""))
    _raises(ConfigurationError, lambda: outbox.find(recipient="r1@example.com", limit=0))


def check_oldest_pending_is_the_oldest_not_yet_final(outbox: Outbox, clock: FakeClock) -> None:
    assert outbox.oldest_pending() is None
    start = clock.now()
    first = outbox.enqueue(_message(1))
    clock.advance(10)
    outbox.enqueue(_message(2))
    assert outbox.oldest_pending() == start
    claim = _only(outbox.claim("a", 1, LEASE))
    assert claim.id == first
    assert outbox.oldest_pending() == start  # in flight is not yet final
    assert _settle(outbox, Settlement.dead(claim, "x"))
    assert outbox.oldest_pending() == start + 10
    clock.advance(5)
    assert outbox.requeue_dead([first]) == 1
    assert outbox.oldest_pending() == start + 10  # requeued now: it joined the queue again at start + 15
    for claim in outbox.claim("a", 2, LEASE):
        assert _settle(outbox, Settlement.accepted(claim, f"m-{claim.id}"))
    assert outbox.oldest_pending() is None


def check_wait_for_work_returns_at_once_when_a_row_is_due(outbox: Outbox, clock: FakeClock) -> None:
    assert outbox.wait_for_work(0) is False
    outbox.enqueue(_message())
    assert outbox.wait_for_work(3600) is True
    _raises(ConfigurationError, lambda: outbox.wait_for_work(-1))


#: Every check, in the order check_outbox runs them; a test suite may parametrize over them.
def check_trace_context_travels_with_every_claim_of_its_row(outbox: Outbox, clock: FakeClock) -> None:
    one = TraceContext("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "vendor=a,other=b")
    many = TraceContext("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
    traced = outbox.enqueue(_message(1), trace_context=one)
    plain = outbox.enqueue(_message(2))
    batch = outbox.enqueue_many([_message(3), _message(4)], trace_context=many)
    _raises(ConfigurationError, lambda: outbox.enqueue(_message(5), trace_context="00-1-2-01"))  # type: ignore[arg-type]
    expected = {traced: one, plain: None, batch[0]: many, batch[1]: many}
    claims = outbox.claim("a", 10, LEASE)
    assert {c.id: c.trace_context for c in claims} == expected
    for claim in claims:
        assert _settle(outbox, Settlement.reconcile(claim, clock.now(), "read timeout"))
    searches = outbox.claim("a", 10, LEASE)
    resent = outbox.resend(next(c for c in searches if c.id == traced), LEASE)
    assert resent.trace_context == one
    clock.advance(LEASE)
    assert {c.id: c.trace_context for c in outbox.claim("b", 10, LEASE)} == expected  # the lapsed leases too


OUTBOX_CHECKS: tuple[Callable[[Outbox, FakeClock], None], ...] = (
    check_trace_context_travels_with_every_claim_of_its_row,
    check_enqueue_assigns_a_client_reference_and_queues,
    check_enqueue_keeps_the_messages_own_reference_and_refuses_a_duplicate,
    check_dedupe_key_returns_the_first_id_and_stores_one_row,
    check_enqueue_refuses_what_is_not_a_message,
    check_enqueue_many_is_all_or_nothing,
    check_claim_leases_due_rows_oldest_first_once,
    check_claim_refuses_bad_arguments,
    check_lapsed_lease_comes_back_to_be_reconciled,
    check_renew_extends_only_leases_still_held,
    check_a_lapsed_lease_not_yet_taken_can_still_record,
    check_accepted_is_final_and_recorded_once,
    check_retry_is_due_at_its_time,
    check_reconcile_then_found,
    check_reconcile_then_not_found_resends_in_the_same_hands,
    check_dead_letters_keep_their_errors_and_can_be_requeued,
    check_a_requeued_dead_letter_flowmailer_may_have_is_searched_for_first,
    check_requeue_restarts_the_age_clock_and_keeps_the_enqueue_time,
    check_dead_letters_are_listed_oldest_first_page_by_page,
    check_requeue_all_dead,
    check_release_returns_the_row_at_once_without_counting_an_attempt,
    check_only_sends_count_as_attempts,
    check_outcomes_refuse_bad_times_and_keep_the_claim,
    check_settle_records_a_batch_and_answers_the_lost_claims,
    check_settle_refuses_a_bad_batch_and_writes_nothing,
    check_status_and_counts,
    check_prune_removes_only_old_accepted_rows,
    check_find_by_reference_or_recipient_newest_first,
    check_oldest_pending_is_the_oldest_not_yet_final,
    check_wait_for_work_returns_at_once_when_a_row_is_due,
)
