"""The retry policy's bounds and decisions, and the retry budget."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from flowmailer.core import (
    Accepted,
    Ambiguous,
    AmbiguousError,
    AuthenticationError,
    CertificateError,
    ConfigurationError,
    CredentialsRejected,
    Done,
    GiveUp,
    GiveUpReason,
    Host,
    NotSent,
    Outcome,
    Reconcile,
    RefreshToken,
    Rejected,
    RejectedError,
    Retry,
    RetryBudget,
    RetryDecision,
    RetryPolicy,
    RetryState,
    TokenInvalid,
    Transient,
    TransientError,
    error_for,
)

draws = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@st.composite
def policies(draw: st.DrawFn) -> RetryPolicy:
    base = draw(st.floats(min_value=0.001, max_value=10.0))
    return RetryPolicy(
        max_attempts=draw(st.integers(min_value=1, max_value=12)),
        deadline=draw(st.floats(min_value=0.01, max_value=600.0)),
        base_delay=base,
        cap=draw(st.floats(min_value=base, max_value=120.0)),
        multiplier=draw(st.floats(min_value=1.0, max_value=10.0)),
        max_retry_after=draw(st.floats(min_value=0.0, max_value=300.0)),
    )


retry_afters = st.none() | st.floats(min_value=0.0, max_value=1000.0)
retryable: st.SearchStrategy[Outcome] = st.one_of(
    st.builds(NotSent, st.just("connect refused")),
    st.builds(Transient, st.sampled_from([429, 500, 502, 503]), retry_afters),
    st.builds(TokenInvalid),
)
outcomes: st.SearchStrategy[Outcome] = st.one_of(
    retryable,
    st.builds(Accepted, st.just("20211230130407e3b36e2e92fdbefc86")),
    st.builds(Rejected, st.sampled_from([400, 403, 404, 413, 422])),
    st.builds(Ambiguous, st.just("read timeout")),
    st.builds(CredentialsRejected, st.just("invalid_client")),
)
states = st.builds(
    RetryState,
    attempts=st.integers(min_value=0, max_value=20),
    refreshed=st.booleans(),
    not_sent_streak=st.integers(min_value=0, max_value=20),
)
addresses = st.integers(min_value=1, max_value=4)


def run(
    policy: RetryPolicy, results: list[Outcome], draws_: list[float], durations: list[float], n_addresses: int
) -> tuple[int, list[tuple[float, RetryDecision]]]:
    """Drive a submission like the shell does; return the attempts made and each decision with its elapsed time."""
    state, elapsed, made, seen = RetryState(), 0.0, 0, []
    for i, outcome in enumerate(results):
        made += 1
        elapsed += durations[i % len(durations)]
        decision, state = policy.decide(
            outcome, state, elapsed=elapsed, u=draws_[i % len(draws_)], addresses=n_addresses
        )
        seen.append((elapsed, decision))
        if isinstance(decision, Retry):
            elapsed += decision.delay
        elif not isinstance(decision, RefreshToken):
            break
    return made, seen


@given(policies(), st.integers(min_value=1, max_value=10_000), draws)
def test_every_delay_is_within_zero_and_cap(policy: RetryPolicy, attempt: int, u: float) -> None:
    assert 0.0 <= policy.next_delay(attempt, u) <= policy.cap


@given(
    policies(),
    st.lists(retryable, min_size=30, max_size=30),
    st.lists(draws, min_size=1),
    st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=1),
    addresses,
)
def test_never_more_attempts_than_configured(
    policy: RetryPolicy, results: list[Outcome], us: list[float], durations: list[float], n: int
) -> None:
    made, seen = run(policy, results, us, durations, n)
    assert made <= policy.max_attempts
    assert not isinstance(seen[-1][1], Retry | RefreshToken)


@given(policies(), outcomes, states, st.floats(min_value=0.0, max_value=700.0), draws, addresses)
# Found only by the thorough profile: a token refresh allowed at or past the deadline.
@example(RetryPolicy(deadline=1.0), TokenInvalid(), RetryState(), 1.0, 0.0, 1)
@example(RetryPolicy(deadline=1.0), TokenInvalid(), RetryState(attempts=1), 2.5, 0.0, 1)
def test_nothing_is_scheduled_past_the_deadline(
    policy: RetryPolicy, outcome: Outcome, state: RetryState, elapsed: float, u: float, n: int
) -> None:
    decision, _ = policy.decide(outcome, state, elapsed=elapsed, u=u, addresses=n)
    if isinstance(decision, Retry):
        assert elapsed + decision.delay < policy.deadline
    if isinstance(decision, RefreshToken):
        assert elapsed < policy.deadline


@given(policies(), st.floats(min_value=0.0, max_value=300.0), st.sampled_from([429, 503]), draws)
def test_retry_after_is_honoured_up_to_the_maximum(
    policy: RetryPolicy, retry_after: float, status: int, u: float
) -> None:
    assume(policy.max_attempts > 1 and retry_after < policy.deadline)
    decision, _ = policy.decide(Transient(status, retry_after), RetryState(), elapsed=0.0, u=u)
    if retry_after <= policy.max_retry_after:
        assert decision == Retry(retry_after, Transient(status, retry_after))
    else:
        assert decision == GiveUp(GiveUpReason.RETRY_AFTER_TOO_LONG, Transient(status, retry_after))


@given(st.floats(min_value=0.0, max_value=0.999), st.floats(min_value=0.0, max_value=1e6))
def test_an_empty_budget_allows_no_retry(tokens: float, now: float) -> None:
    budget = RetryBudget(capacity=5.0, refill_per_second=0.5, tokens=tokens, updated_at=now)
    allowed, after = budget.try_spend(now)
    assert not allowed
    assert after.tokens == tokens
    decision, _ = budget.admit(Retry(0.0, NotSent("refused")), now)
    assert decision == GiveUp(GiveUpReason.BUDGET_EMPTY, NotSent("refused"))


@given(
    st.lists(st.tuples(st.sampled_from(["spend", "deposit"]), st.floats(min_value=-10.0, max_value=100.0)), max_size=50)
)
def test_budget_tokens_stay_between_zero_and_capacity(steps: list[tuple[str, float]]) -> None:
    budget, now = RetryBudget(capacity=3.0, refill_per_second=0.25, deposit_per_success=0.5), 0.0
    for op, dt in steps:
        now += dt
        budget = budget.try_spend(now)[1] if op == "spend" else budget.deposit(now)
        assert 0.0 <= budget.tokens <= budget.capacity


def test_accepted_is_done() -> None:
    decision, state = RetryPolicy().decide(Accepted("m1"), RetryState(), elapsed=1.0, u=0.5)
    assert decision == Done("m1")
    assert state.attempts == 1


@given(policies(), states, st.sampled_from([400, 403, 404, 413, 422]))
def test_rejected_gives_up_permanently_on_any_attempt(policy: RetryPolicy, state: RetryState, status: int) -> None:
    decision, _ = policy.decide(Rejected(status), state, elapsed=0.0, u=0.0)
    assert decision == GiveUp(GiveUpReason.REJECTED, Rejected(status))


@given(policies(), states)
def test_credentials_rejected_gives_up(policy: RetryPolicy, state: RetryState) -> None:
    decision, _ = policy.decide(CredentialsRejected("invalid_client"), state, elapsed=0.0, u=0.0)
    assert decision == GiveUp(GiveUpReason.CREDENTIALS_REJECTED, CredentialsRejected("invalid_client"))


@given(policies(), states, st.floats(min_value=0.0, max_value=1000.0))
def test_ambiguous_always_reconciles_and_never_resends(policy: RetryPolicy, state: RetryState, elapsed: float) -> None:
    decision, _ = policy.decide(Ambiguous("read timeout"), state, elapsed=elapsed, u=0.0)
    assert decision == Reconcile(Ambiguous("read timeout"))


@given(policies(), states, st.floats(min_value=0.0, max_value=1000.0), draws, addresses)
def test_ambiguous_on_an_idempotent_request_is_decided_as_not_sent(
    policy: RetryPolicy, state: RetryState, elapsed: float, u: float, n: int
) -> None:
    decided = policy.decide(Ambiguous("read timeout"), state, elapsed=elapsed, u=u, addresses=n, idempotent=True)
    resent = NotSent("no answer to an idempotent request, sent again: read timeout")
    assert decided == policy.decide(resent, state, elapsed=elapsed, u=u, addresses=n)


def test_token_invalid_refreshes_once_then_gives_up() -> None:
    policy = RetryPolicy()
    first, state = policy.decide(TokenInvalid(), RetryState(), elapsed=0.0, u=0.0)
    assert first == RefreshToken(TokenInvalid())
    second, state = policy.decide(TokenInvalid(), state, elapsed=0.1, u=0.0)
    assert second == GiveUp(GiveUpReason.TOKEN_INVALID_AGAIN, TokenInvalid())
    assert state.attempts == 2


def test_token_invalid_at_the_deadline_gives_up() -> None:
    decision, _ = RetryPolicy(deadline=5.0).decide(TokenInvalid(), RetryState(), elapsed=5.0, u=0.0)
    assert decision == GiveUp(GiveUpReason.DEADLINE, TokenInvalid())


@given(draws)
def test_not_sent_goes_on_at_once_until_every_address_was_tried_then_backs_off(u: float) -> None:
    policy = RetryPolicy(max_attempts=10, deadline=100.0, base_delay=1.0, cap=8.0)
    state, delays = RetryState(), []
    for _ in range(6):
        decision, state = policy.decide(NotSent("refused"), state, elapsed=0.0, u=u, addresses=3)
        assert isinstance(decision, Retry)
        delays.append(decision.delay)
    assert delays == [0.0, 0.0, policy.next_delay(1, u), 0.0, 0.0, policy.next_delay(2, u)]


@given(st.integers(min_value=1, max_value=8), st.lists(st.booleans(), max_size=12), draws)
def test_an_untrusted_certificate_gives_up_once_every_address_in_a_row_said_so(
    addresses: int, before: list[bool], u: float
) -> None:
    """Any run of NotSents (True: the certificate did not verify) ends in CERTIFICATE_UNTRUSTED exactly when the
    last ``addresses`` of them were untrusted, and the error names the CA bundle setting."""
    policy = RetryPolicy(max_attempts=100, deadline=1e9)
    state = RetryState()
    streak = 0
    for untrusted in [*before, *[True] * addresses]:
        outcome = NotSent("certificate verify failed" if untrusted else "refused", untrusted=untrusted)
        decision, state = policy.decide(outcome, state, elapsed=0.0, u=u, addresses=addresses)
        streak = streak + 1 if untrusted else 0
        if streak >= addresses:
            assert decision == GiveUp(GiveUpReason.CERTIFICATE_UNTRUSTED, outcome)
            break
        assert isinstance(decision, Retry)
    else:
        raise AssertionError("never gave up")
    assert isinstance(decision, GiveUp)
    error = error_for(
        decision, operation="submit", host=Host.API, hostname="api.flowmailer.net", attempts=state.attempts,
        client_id="c",
    )  # fmt: skip
    assert isinstance(error, CertificateError)
    assert (error.field, error.hostname) == ("ca_bundle", "api.flowmailer.net")


def test_an_untrusted_streak_longer_than_a_re_resolved_book_gives_up() -> None:
    """The name re-resolved to fewer addresses than already refused the certificate in a row: every one of
    them has, so the next untrusted answer gives up at once, not after the streak wrapped around."""
    outcome = NotSent("certificate verify failed", untrusted=True)
    state = RetryState(attempts=3, not_sent_streak=3, untrusted_streak=3)
    decision, _ = RetryPolicy().decide(outcome, state, elapsed=0.0, u=0.0, addresses=2)
    assert decision == GiveUp(GiveUpReason.CERTIFICATE_UNTRUSTED, outcome)


def test_not_sent_with_one_address_backs_off_every_time() -> None:
    policy = RetryPolicy(base_delay=1.0, cap=8.0)
    decision, state = policy.decide(NotSent("refused"), RetryState(), elapsed=0.0, u=0.5)
    assert decision == Retry(0.5, NotSent("refused"))
    decision, _ = policy.decide(NotSent("refused"), state, elapsed=0.5, u=0.5)
    assert decision == Retry(1.0, NotSent("refused"))


def test_an_answer_from_flowmailer_ends_the_not_sent_streak() -> None:
    policy = RetryPolicy()
    _, state = policy.decide(NotSent("refused"), RetryState(), elapsed=0.0, u=0.0, addresses=2)
    assert state.not_sent_streak == 1
    _, state = policy.decide(Transient(503), state, elapsed=0.0, u=0.0, addresses=2)
    assert state.not_sent_streak == 0


def test_transient_without_retry_after_uses_the_jittered_backoff() -> None:
    policy = RetryPolicy(base_delay=1.0, multiplier=3.0, cap=100.0)
    _, state = policy.decide(Transient(500), RetryState(), elapsed=0.0, u=0.25)
    decision, _ = policy.decide(Transient(500), state, elapsed=0.0, u=0.25)
    assert decision == Retry(0.75, Transient(500))


def test_a_delay_that_would_end_past_the_deadline_gives_up() -> None:
    decision, _ = RetryPolicy(deadline=10.0).decide(Transient(503, 3.0), RetryState(), elapsed=7.0, u=0.0)
    assert decision == GiveUp(GiveUpReason.DEADLINE, Transient(503, 3.0))


def test_the_last_attempt_gives_up_as_exhausted() -> None:
    decision, _ = RetryPolicy(max_attempts=2).decide(Transient(500), RetryState(attempts=1), elapsed=0.0, u=0.0)
    assert decision == GiveUp(GiveUpReason.ATTEMPTS_EXHAUSTED, Transient(500))


def test_a_huge_attempt_number_is_capped_instead_of_overflowing() -> None:
    assert RetryPolicy(multiplier=10.0, cap=7.0).next_delay(10**6, 0.5) == 3.5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_attempts": 0}, "RetryPolicy.max_attempts"),
        ({"deadline": 0.0}, "RetryPolicy.deadline"),
        ({"deadline": math.inf}, "RetryPolicy.deadline"),
        ({"base_delay": math.nan}, "RetryPolicy.base_delay"),
        ({"base_delay": 2.0, "cap": 1.0}, "RetryPolicy.cap"),
        ({"multiplier": 0.5}, "RetryPolicy.multiplier"),
        ({"max_retry_after": -1.0}, "RetryPolicy.max_retry_after"),
    ],
)
def test_a_bad_policy_setting_is_refused_naming_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


@pytest.mark.parametrize(("attempt", "u", "field"), [(0, 0.5, "attempt"), (1, 1.0, "u"), (1, 1.5, "u"), (1, -0.1, "u")])
def test_next_delay_refuses_arguments_outside_its_domain(attempt: int, u: float, field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RetryPolicy().next_delay(attempt, u)
    assert caught.value.field == field


@pytest.mark.parametrize(("elapsed", "n", "field"), [(-1.0, 1, "elapsed"), (0.0, 0, "addresses")])
def test_decide_refuses_arguments_outside_its_domain(elapsed: float, n: int, field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RetryPolicy().decide(NotSent("x"), RetryState(), elapsed=elapsed, u=0.0, addresses=n)
    assert caught.value.field == field


def test_budget_starts_full_and_refills_with_time_up_to_capacity() -> None:
    budget = RetryBudget(capacity=2.0, refill_per_second=0.5)
    assert budget.tokens == 2.0
    for _ in range(2):
        allowed, budget = budget.try_spend(10.0)
        assert allowed
    allowed, budget = budget.try_spend(11.0)
    assert not allowed
    allowed, budget = budget.try_spend(12.0)
    assert allowed
    assert budget.try_spend(1000.0)[1].tokens == 1.0


def test_budget_refills_nothing_when_the_clock_runs_backwards() -> None:
    budget = RetryBudget(capacity=2.0, refill_per_second=1.0, tokens=0.0, updated_at=10.0)
    assert budget.try_spend(5.0) == (False, budget)
    assert budget.try_spend(11.0)[0]


def test_admit_deposits_on_done_and_spends_on_retry_only() -> None:
    budget = RetryBudget(capacity=2.0, refill_per_second=0.0, deposit_per_success=0.25, tokens=1.0, updated_at=0.0)
    _, after_done = budget.admit(Done("m1"), 1.0)
    assert after_done.tokens == 1.25
    decision, after_retry = budget.admit(Retry(0.0, NotSent("x")), 1.0)
    assert decision == Retry(0.0, NotSent("x"))
    assert after_retry.tokens == 0.0
    for other in (RefreshToken(TokenInvalid()), Reconcile(Ambiguous("x")), GiveUp(GiveUpReason.DEADLINE, NotSent("x"))):
        assert budget.admit(other, 1.0) == (other, budget)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"capacity": 0.5}, "RetryBudget.capacity"),
        ({"refill_per_second": -1.0}, "RetryBudget.refill_per_second"),
        ({"deposit_per_success": math.nan}, "RetryBudget.deposit_per_success"),
        ({"tokens": 11.0}, "RetryBudget.tokens"),
        ({"tokens": -0.5}, "RetryBudget.tokens"),
    ],
)
def test_a_bad_budget_setting_is_refused_naming_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RetryBudget(**kwargs)
    assert caught.value.field == field


WHERE: dict[str, Any] = {
    "operation": "submit",
    "host": Host.API,
    "hostname": "api.flowmailer.net",
    "attempts": 3,
    "client_id": "c",
}


def test_error_for_a_reconcile_is_ambiguous_and_carries_the_reference() -> None:
    error = error_for(Reconcile(Ambiguous("reset")), reference="ref:1", **WHERE)
    assert isinstance(error, AmbiguousError)
    assert error.client_reference == "ref:1"
    assert "ref:1" in str(error)


@pytest.mark.parametrize(
    ("outcome", "reason", "expected"),
    [
        (Rejected(400), GiveUpReason.REJECTED, RejectedError),
        (CredentialsRejected("invalid_client"), GiveUpReason.CREDENTIALS_REJECTED, AuthenticationError),
        (Transient(503, 40.0), GiveUpReason.RETRY_AFTER_TOO_LONG, TransientError),
        (NotSent("refused"), GiveUpReason.ATTEMPTS_EXHAUSTED, TransientError),
    ],
)
def test_error_for_a_give_up_is_split_by_blame(outcome: Outcome, reason: GiveUpReason, expected: type) -> None:
    error = error_for(GiveUp(reason, outcome), **WHERE)
    assert type(error) is expected
    if isinstance(outcome, Transient):
        assert isinstance(error, TransientError)
        assert error.retry_after == 40.0


def test_error_for_a_token_refused_twice_is_transient_not_an_authentication_error() -> None:
    error = error_for(GiveUp(GiveUpReason.TOKEN_INVALID_AGAIN, TokenInvalid()), **WHERE)
    assert type(error) is TransientError
    assert "credentials themselves were accepted" in str(error)


def test_error_for_a_token_request_that_gave_up_names_the_login_host() -> None:
    where = {**WHERE, "operation": "token", "host": Host.LOGIN, "hostname": "login.flowmailer.net"}
    error = error_for(GiveUp(GiveUpReason.ATTEMPTS_EXHAUSTED, NotSent("could not resolve")), **where)
    assert type(error) is TransientError
    assert "the token request to login.flowmailer.net" in str(error)
    assert "Flowmailer did not accept" not in str(error)


@given(policies(), st.integers(min_value=1, max_value=200), draws)
@example(RetryPolicy(base_delay=1.0, multiplier=2.0, cap=100.0), 3, 0.5)
def test_the_backoff_grows_by_the_multiplier_per_attempt_until_the_cap(
    policy: RetryPolicy, attempt: int, u: float
) -> None:
    """Growth, not only bounds: the first delay draws from base_delay, each next one from ``multiplier`` times the
    one before, until the cap. (The bounds alone let ``attempt >> 1`` pass for ``attempt - 1``.)"""
    assert policy.next_delay(1, u) == u * policy.base_delay
    grown = min(policy.cap, policy.base_delay * policy.multiplier**attempt)
    assert policy.next_delay(attempt + 1, u) == pytest.approx(u * grown, rel=1e-9)


def test_the_backoff_doubles_from_the_base_delay() -> None:
    policy = RetryPolicy(base_delay=1.0, multiplier=2.0, cap=10.0)
    assert [policy.next_delay(attempt, 0.5) for attempt in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


@pytest.mark.parametrize("retry_after", [-5.0, -0.001])
def test_a_negative_retry_after_is_waited_as_zero(retry_after: float) -> None:
    decision, _ = RetryPolicy().decide(Transient(503, retry_after), RetryState(), elapsed=0.0, u=0.9)
    assert decision == Retry(0.0, Transient(503, retry_after))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 1},
        {"base_delay": 2.0, "cap": 2.0},
        {"multiplier": 1.0},
        {"max_retry_after": 0.0},
        {"deadline": 5e-324, "base_delay": 5e-324, "cap": 5e-324},
    ],
)
def test_a_policy_setting_at_its_boundary_is_accepted(kwargs: dict[str, float]) -> None:
    policy = RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert all(getattr(policy, name) == value for name, value in kwargs.items())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"base_delay": 0.0}, "RetryPolicy.base_delay"), ({"multiplier": 0.999}, "RetryPolicy.multiplier")],
)
def test_a_policy_setting_just_past_its_boundary_is_refused(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


@pytest.mark.parametrize(
    "kwargs",
    [
        {"capacity": 1.0},
        {"refill_per_second": 0.0},
        {"deposit_per_success": 0.0},
        {"capacity": 3.0, "tokens": 0.0},
        {"capacity": 3.0, "tokens": 3.0},
    ],
)
def test_a_budget_setting_at_its_boundary_is_accepted(kwargs: dict[str, float]) -> None:
    budget = RetryBudget(**kwargs)
    assert all(getattr(budget, name) == value for name, value in kwargs.items())


@pytest.mark.parametrize(("attempt", "u"), [(1, 0.0), (1, 0.999999)])
def test_next_delay_accepts_the_edges_of_its_domain(attempt: int, u: float) -> None:
    assert RetryPolicy(base_delay=1.0).next_delay(attempt, u) == u


def test_decide_accepts_a_single_address_and_no_time_elapsed() -> None:
    decision, _ = RetryPolicy(base_delay=1.0).decide(NotSent("x"), RetryState(), elapsed=0.0, u=0.5, addresses=1)
    assert decision == Retry(0.5, NotSent("x"))


@given(policies(), st.integers(min_value=0, max_value=20), st.sampled_from([Transient(503), NotSent("refused")]))
def test_a_state_at_or_past_the_last_attempt_gives_up_as_exhausted(
    policy: RetryPolicy, extra: int, outcome: Outcome
) -> None:
    """Also a state already past ``max_attempts`` (a policy lowered between attempts): never one attempt more."""
    state = RetryState(attempts=policy.max_attempts - 1 + extra)
    decision, _ = policy.decide(outcome, state, elapsed=0.0, u=0.0, addresses=2)
    assert decision == GiveUp(GiveUpReason.ATTEMPTS_EXHAUSTED, outcome)


def test_the_defaults_are_the_documented_ones() -> None:
    """Five attempts within a minute, 0.5 s doubling up to 10 s, Retry-After honoured up to 30 s; a budget of ten
    retries refilled at one every five seconds and a tenth of one per success."""
    assert attrs.astuple(RetryPolicy()) == (5, 60.0, 0.5, 10.0, 2.0, 30.0)
    assert attrs.astuple(RetryBudget()) == (10.0, 0.2, 0.1, 10.0, None)


@pytest.mark.parametrize(("elapsed", "left"), [(0.0, 10.0), (4.0, 6.0), (9.5, 0.5), (10.0, 0.0), (12.0, 0.0)])
def test_an_attempt_may_take_what_the_deadline_leaves(elapsed: float, left: float) -> None:
    assert RetryPolicy(deadline=10.0).attempt_timeout(elapsed) == left


def test_an_unreadable_answer_to_an_idempotent_request_counts_as_an_attempt() -> None:
    unreadable = Ambiguous("answer over 64 KiB", unreadable=True)
    decision, state = RetryPolicy().decide(unreadable, RetryState(attempts=3), elapsed=0.0, u=0.0, idempotent=True)
    assert decision == GiveUp(GiveUpReason.ANSWER_UNREADABLE, unreadable)
    assert state.attempts == 4  # 3 | 1 and 3 ^ 1 are not 4, as 2 | 1 and 2 ^ 1 would be 3


def test_a_delay_that_together_with_the_time_spent_reaches_the_deadline_gives_up() -> None:
    """The sum, not the product: 0.5 s spent and 9.6 s to wait reach a 10 s deadline."""
    decision, _ = RetryPolicy(deadline=10.0).decide(Transient(503, 9.6), RetryState(), elapsed=0.5, u=0.0)
    assert decision == GiveUp(GiveUpReason.DEADLINE, Transient(503, 9.6))


def test_an_untrusted_certificate_on_each_of_many_addresses_gives_up() -> None:
    """Counts compared by value: 300 addresses (past the integers Python keeps one object for)."""
    outcome = NotSent("certificate verify failed", untrusted=True)
    policy = RetryPolicy(max_attempts=1000, deadline=1e9)
    decision, _ = policy.decide(outcome, RetryState(untrusted_streak=299), elapsed=0.0, u=0.0, addresses=300)
    assert decision == GiveUp(GiveUpReason.CERTIFICATE_UNTRUSTED, outcome)
