"""The relay's pure decisions: what is recorded after a send or a search, and the give-up rules."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.core import (
    Accepted,
    Ambiguous,
    AmbiguousError,
    AuthenticationError,
    Cause,
    Claim,
    ConfigurationError,
    CredentialsRejected,
    Dead,
    ErrorDetail,
    Fed,
    Found,
    Halt,
    HaltRelay,
    KeepLease,
    NotFound,
    NotSent,
    ReconcileAt,
    RecordAccepted,
    Rejected,
    RejectedError,
    RelayRules,
    Resend,
    RetryAt,
    RetryPolicy,
    SearchByTag,
    SubmissionState,
    SubmitClaim,
    SubmitMessage,
    TakeBack,
    Tick,
    TokenInvalid,
    Transient,
    TransientError,
    decide_after_reconcile,
    decide_after_submit,
    decide_before_send,
    handle_claim,
    lease_allows_send,
    outcome_of,
)

T0 = 1_700_000_000.0
RULES = RelayRules(max_attempts=5, max_age=3600.0, backoff=RetryPolicy(base_delay=2.0, cap=60.0), reconcile_delay=10.0)
MESSAGE = SubmitMessage(sender_address="app@example.com", recipient_address="bob@example.com", subject="hi")


def claim(
    *, attempts: int = 1, age: float = 0.0, claimed_from: SubmissionState = SubmissionState.QUEUED, now: float = T0
) -> Claim:
    return Claim(
        id=1,
        message=MESSAGE.with_client_reference("abc"),
        client_reference="abc",
        claimed_from=claimed_from,
        attempts=attempts,
        enqueued_at=now - age,
        requeued_at=None,
        last_reason=None,
        owner="relay-1",
        lease_until=now + 30,
        token=1,
    )


retryable = st.one_of(
    st.builds(NotSent, st.just("connect refused")),
    st.builds(Transient, st.sampled_from([500, 502, 503, 429, 0]), st.none() | st.floats(0, 120), st.just("busy")),
    st.builds(TokenInvalid, st.just("expired")),
)
draws = st.floats(0, 1, exclude_max=True)


def test_a_201_is_recorded_as_accepted() -> None:
    assert decide_after_submit(claim(), Accepted("m1"), now=T0, rules=RULES, u=0.5) == RecordAccepted("m1")


def test_a_rejection_is_dead_with_flowmailers_errors() -> None:
    errors = (ErrorDetail(code="invalid", field="recipientAddress", default_message="bad address"),)
    decision = decide_after_submit(claim(), Rejected(400, errors), now=T0, rules=RULES, u=0.5)
    assert isinstance(decision, Dead)
    assert decision.errors == errors
    assert "recipientAddress: bad address" in decision.reason


def test_refused_credentials_halt_the_relay() -> None:
    decision = decide_after_submit(claim(), CredentialsRejected("invalid_client"), now=T0, rules=RULES, u=0.5)
    assert decision == Halt("invalid_client")


@given(attempts=st.integers(1, 50), age=st.floats(0, 10 * 3600))
def test_an_ambiguous_send_is_always_reconciled_never_resent_or_dead(attempts: int, age: float) -> None:
    decision = decide_after_submit(claim(attempts=attempts, age=age), Ambiguous("reset"), now=T0, rules=RULES, u=0.5)
    assert isinstance(decision, ReconcileAt)
    assert decision.at == T0 + RULES.reconcile_delay
    assert decision.cause is Cause.AMBIGUOUS


@given(outcome=retryable, attempts=st.integers(1, 10), age=st.floats(0, 4000), u=draws)
def test_a_retry_respects_the_give_up_rules(
    outcome: NotSent | Transient | TokenInvalid, attempts: int, age: float, u: float
) -> None:
    c = claim(attempts=attempts, age=age)
    decision = decide_after_submit(c, outcome, now=T0, rules=RULES, u=u)
    if isinstance(decision, Dead):
        retry_after = outcome.retry_after if isinstance(outcome, Transient) else None
        earliest = T0 + (retry_after or 0.0)
        assert attempts >= RULES.max_attempts or earliest - c.enqueued_at > RULES.max_age - RULES.backoff.cap
        return
    assert isinstance(decision, RetryAt)
    assert attempts < RULES.max_attempts
    assert T0 <= decision.at <= T0 + max(RULES.backoff.cap, getattr(outcome, "retry_after", None) or 0.0)
    assert decision.at - c.enqueued_at <= RULES.max_age


def test_retry_after_is_waited_out_even_beyond_the_backoff() -> None:
    decision = decide_after_submit(claim(), Transient(503, 90.0, "busy"), now=T0, rules=RULES, u=0.0)
    assert decision == RetryAt(T0 + 90.0, Cause.TRANSIENT, "busy")


def test_the_retry_cause_names_what_happened() -> None:
    causes = {
        decide_after_submit(claim(), outcome, now=T0, rules=RULES, u=0.1).cause  # type: ignore[union-attr]
        for outcome in (NotSent("dns"), Transient(500), TokenInvalid("expired"))
    }
    assert causes == {Cause.NOT_SENT, Cause.TRANSIENT, Cause.TOKEN}


def test_the_last_attempt_failing_is_dead_with_the_last_reason() -> None:
    decision = decide_after_submit(claim(attempts=5), Transient(503, None, "busy"), now=T0, rules=RULES, u=0.5)
    assert decision == Dead("gave up after 5 attempts; the last: busy")


def test_a_retry_that_would_start_past_max_age_is_dead() -> None:
    decision = decide_after_submit(claim(age=3599.0), NotSent("refused"), now=T0, rules=RULES, u=0.9)
    assert isinstance(decision, Dead)
    assert "max_age" in decision.reason


def test_nothing_is_sent_past_max_age_or_max_attempts() -> None:
    assert decide_before_send(claim(age=100.0), now=T0, rules=RULES) is None
    assert decide_before_send(claim(attempts=5), now=T0, rules=RULES) is None
    too_old = decide_before_send(claim(age=3601.0), now=T0, rules=RULES)
    too_many = decide_before_send(claim(attempts=6), now=T0, rules=RULES)
    assert isinstance(too_old, Dead)
    assert "max_age" in too_old.reason
    assert isinstance(too_many, Dead)
    assert "max_attempts" in too_many.reason


def test_found_by_tag_is_accepted_as_reconciled() -> None:
    c = claim(claimed_from=SubmissionState.RECONCILING)
    assert decide_after_reconcile(c, Found(("m1",)), now=T0, rules=RULES, u=0.5) == RecordAccepted("m1", True, 1)


def test_two_copies_found_are_reported_not_hidden() -> None:
    c = claim(claimed_from=SubmissionState.RECONCILING)
    decision = decide_after_reconcile(c, Found(("m1", "m2")), now=T0, rules=RULES, u=0.5)
    assert decision == RecordAccepted("m1", reconciled=True, copies=2)


def test_not_found_by_tag_means_resend() -> None:
    c = claim(claimed_from=SubmissionState.RECONCILING)
    assert decide_after_reconcile(c, NotFound(), now=T0, rules=RULES, u=0.5) == Resend()


def test_not_found_right_after_a_relay_died_is_confirmed_after_the_reconcile_delay() -> None:
    c = claim(claimed_from=SubmissionState.IN_FLIGHT)
    decision = decide_after_reconcile(c, NotFound(), now=T0, rules=RULES, u=0.5)
    assert isinstance(decision, ReconcileAt)
    assert (decision.at, decision.cause) == (T0 + RULES.reconcile_delay, Cause.LEASE_EXPIRED)


@given(
    failure=st.one_of(
        st.builds(Transient, st.sampled_from([0, 500, 503]), st.none() | st.floats(0, 30), st.just("down")),
        st.builds(Ambiguous, st.just("reset")),
    ),
    age=st.floats(0, 3600),
    u=draws,
)
def test_a_failed_search_asks_again_and_never_resends(failure: Transient | Ambiguous, age: float, u: float) -> None:
    c = claim(claimed_from=SubmissionState.RECONCILING, age=age)
    decision = decide_after_reconcile(c, failure, now=T0, rules=RULES, u=u)
    assert isinstance(decision, ReconcileAt)
    assert decision.cause is Cause.RECONCILE_FAILED
    retry_after = failure.retry_after if isinstance(failure, Transient) else None
    assert T0 <= decision.at <= T0 + max(RULES.backoff.cap, retry_after or 0.0)


def test_a_search_failing_past_max_age_is_dead_and_says_flowmailer_may_have_it() -> None:
    c = claim(claimed_from=SubmissionState.RECONCILING, age=3601.0)
    decision = decide_after_reconcile(c, Transient(503, None, "down"), now=T0, rules=RULES, u=0.5)
    assert isinstance(decision, Dead)
    assert "may have accepted it" in decision.reason
    assert "ref:abc" in decision.reason


def test_max_age_counts_from_the_last_requeue_for_sends_and_searches() -> None:
    send = attrs.evolve(claim(age=3601.0), requeued_at=T0 - 10.0)
    search = attrs.evolve(claim(claimed_from=SubmissionState.RECONCILING, age=3601.0), requeued_at=T0 - 10.0)
    assert decide_before_send(send, now=T0, rules=RULES) is None
    asked_again = decide_after_reconcile(search, Transient(503, None, "down"), now=T0, rules=RULES, u=0.5)
    assert isinstance(asked_again, ReconcileAt)
    too_old = decide_before_send(attrs.evolve(send, requeued_at=T0 - 3601.0), now=T0, rules=RULES)
    assert too_old == Dead("not sent: requeued 3601 s ago, past max_age of 3600 s")


def test_a_refused_search_is_dead_and_says_flowmailer_may_have_it() -> None:
    c = claim(claimed_from=SubmissionState.RECONCILING)
    decision = decide_after_reconcile(c, Rejected(403, ()), now=T0, rules=RULES, u=0.5)
    assert isinstance(decision, Dead)
    assert "HTTP 403" in decision.reason
    assert "may have accepted it" in decision.reason


def test_refused_credentials_during_a_search_halt_the_relay() -> None:
    c = claim(claimed_from=SubmissionState.RECONCILING)
    assert decide_after_reconcile(c, CredentialsRejected("locked"), now=T0, rules=RULES, u=0.5) == Halt("locked")


def test_client_errors_map_to_outcomes() -> None:
    errors = (ErrorDetail(field="subject"),)
    assert outcome_of(RejectedError(422, errors)) == Rejected(422, errors)
    assert isinstance(outcome_of(AuthenticationError("c1", "invalid_client")), CredentialsRejected)
    assert outcome_of(AmbiguousError("reset", client_reference="abc")) == Ambiguous("reset")
    assert outcome_of(TransientError("503 three times", retry_after=4.0)) == Transient(0, 4.0, "503 three times")
    bad = outcome_of(ConfigurationError("subject", "is too long", "shorten it"))
    assert isinstance(bad, Rejected)
    assert bad.errors[0].field == "subject"


def test_a_send_starts_only_with_more_than_a_third_of_the_lease_left() -> None:
    assert lease_allows_send(10.1, 30.0)
    assert not lease_allows_send(10.0, 30.0)
    assert not lease_allows_send(-1.0, 30.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_attempts": 0}, "RelayRules.max_attempts"),
        ({"max_age": 0.0}, "RelayRules.max_age"),
        ({"max_age": float("inf")}, "RelayRules.max_age"),
        ({"reconcile_delay": -1.0}, "RelayRules.reconcile_delay"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        RelayRules(**kwargs)  # type: ignore[arg-type]
    assert e.value.field == field


# --- handle_claim: the steps both relays take for one claim ---------------------------------------------------


def steps(start: Claim, answers: dict[type, object]) -> tuple[list[object], tuple[Claim, object] | None]:
    """Drive ``handle_claim`` feeding each effect its scripted answer; the effects seen and the result."""
    effects: list[object] = []
    loop = handle_claim(start, RULES, lambda: 0.5)
    effect = next(loop)
    try:
        while True:
            effects.append(effect)
            effect = loop.send(Fed(answers.get(type(effect)), 0.0, T0))
    except StopIteration as done:
        return effects, done.value


def test_a_claim_is_sent_after_its_lease_is_confirmed_and_its_acceptance_recorded() -> None:
    c = claim()
    effects, result = steps(c, {KeepLease: True, SubmitClaim: "m1"})
    assert [type(e) for e in effects] == [Tick, KeepLease, SubmitClaim]
    assert result is not None
    assert result[1] == RecordAccepted("m1")


def test_a_claim_whose_lease_is_lost_is_dropped_unsent() -> None:
    effects, result = steps(claim(), {KeepLease: False})
    assert result is None
    assert not any(isinstance(e, SubmitClaim) for e in effects)


def test_a_claim_to_reconcile_is_searched_first_taken_back_when_not_found_and_then_sent() -> None:
    lost = claim(claimed_from=SubmissionState.RECONCILING)
    fresh = attrs.evolve(lost, claimed_from=SubmissionState.IN_FLIGHT, token=2)
    effects, result = steps(lost, {SearchByTag: (), TakeBack: fresh, KeepLease: True, SubmitClaim: "m1"})
    assert [type(e) for e in effects] == [Tick, SearchByTag, TakeBack, KeepLease, SubmitClaim]
    assert effects[4] == SubmitClaim(fresh)  # sent under the new claim, fenced by its token
    assert result is not None
    assert result[0] == fresh


def test_a_claim_not_found_after_its_last_allowed_send_is_dead_without_being_taken_back() -> None:
    # Taking the row back counts a send: a refusal after it would record max_attempts + 1 sends, one never made.
    last = claim(attempts=RULES.max_attempts, claimed_from=SubmissionState.RECONCILING)
    effects, result = steps(last, {SearchByTag: ()})
    assert [type(e) for e in effects] == [Tick, SearchByTag]
    assert result is not None
    assert result[0] == last
    assert isinstance(result[1], Dead)
    assert f"past max_attempts of {RULES.max_attempts}" in result[1].reason


def test_a_lost_relays_claim_found_at_flowmailer_is_recorded_without_a_send() -> None:
    effects, result = steps(claim(claimed_from=SubmissionState.IN_FLIGHT), {SearchByTag: ("m9",)})
    assert not any(isinstance(e, SubmitClaim) for e in effects)
    assert result is not None
    assert result[1] == RecordAccepted("m9", reconciled=True)


@pytest.mark.parametrize("answer", [SubmitClaim, SearchByTag])
def test_refused_credentials_halt_the_relay_and_release_the_claim(answer: type) -> None:
    start = claim(claimed_from=SubmissionState.IN_FLIGHT) if answer is SearchByTag else claim()
    refused = AuthenticationError("client", "invalid_client")
    effects, result = steps(start, {KeepLease: True, answer: refused})
    assert HaltRelay(refused) in effects
    assert result is not None
    assert isinstance(result[1], Halt)
