"""The relay's circuit breaker: opens after failures in a row, holds for a growing cool-down, probes once, closes."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.core import (
    Accepted,
    Ambiguous,
    BreakerState,
    CircuitBreaker,
    ConfigurationError,
    CredentialsRejected,
    NotSent,
    Permit,
    Rejected,
    TokenInvalid,
    Transient,
    says_down,
)


@st.composite
def breakers(draw: st.DrawFn) -> CircuitBreaker:
    cooldown = draw(st.floats(min_value=0.01, max_value=60.0))
    return CircuitBreaker(
        threshold=draw(st.integers(min_value=1, max_value=10)),
        cooldown=cooldown,
        max_cooldown=draw(st.floats(min_value=cooldown, max_value=600.0)),
        multiplier=draw(st.floats(min_value=1.0, max_value=10.0)),
    )


#: One thing happening to a relay's breaker: time passes, a sender asks, or an attempt begun some time ago ends.
steps = st.one_of(
    st.tuples(st.just("wait"), st.floats(min_value=0.0, max_value=100.0)),
    st.tuples(st.just("admit"), st.just(0.0)),
    st.tuples(st.just("fail"), st.floats(min_value=0.0, max_value=100.0)),
    st.tuples(st.just("succeed"), st.just(0.0)),
    st.tuples(st.just("withdraw"), st.just(0.0)),
)


def _open(breaker: CircuitBreaker, now: float) -> CircuitBreaker:
    for _ in range(breaker.threshold):
        breaker = breaker.failed(now, started_at=now)
    return breaker


@given(breakers(), st.floats(min_value=0.0, max_value=1e9))
def test_it_opens_on_the_threshold_th_failure_in_a_row_and_not_before(breaker: CircuitBreaker, now: float) -> None:
    for _ in range(breaker.threshold - 1):
        breaker = breaker.failed(now, started_at=now)
        assert breaker.state(now) is BreakerState.CLOSED
        assert breaker.admit(now)[0] is Permit.SEND
    breaker = breaker.failed(now, started_at=now)
    assert breaker.state(now) is BreakerState.OPEN
    assert breaker.admit(now) == (Permit.HOLD, breaker)
    assert breaker.wait(now) == pytest.approx(breaker.cooldown)


@given(breakers(), st.floats(min_value=0.0, max_value=1e6), st.integers(min_value=1, max_value=50))
def test_a_success_in_between_starts_the_count_again(breaker: CircuitBreaker, now: float, rounds: int) -> None:
    for _ in range(rounds):
        for _ in range(breaker.threshold - 1):
            breaker = breaker.failed(now, started_at=now)
        breaker = breaker.succeeded(now)
    assert breaker.state(now) is BreakerState.CLOSED


@given(breakers(), st.floats(min_value=0.0, max_value=1e6), st.integers(min_value=1, max_value=20))
def test_half_open_lets_exactly_one_probe_through_until_it_is_reported(
    breaker: CircuitBreaker, now: float, askers: int
) -> None:
    breaker = _open(breaker, now)
    later = breaker.wait(now) + now
    permits = []
    for _ in range(askers):
        permit, breaker = breaker.admit(later)
        permits.append(permit)
    assert permits == [Permit.PROBE] + [Permit.HOLD] * (askers - 1)
    assert breaker.state(later) is BreakerState.HALF_OPEN
    assert breaker.withdraw_probe().admit(later)[0] is Permit.PROBE


@given(breakers(), st.floats(min_value=0.0, max_value=1e6), st.integers(min_value=1, max_value=40))
def test_the_cool_down_grows_while_probes_fail_and_stays_capped(
    breaker: CircuitBreaker, now: float, probes: int
) -> None:
    breaker = _open(breaker, now)
    waits = [breaker.wait(now)]
    for _ in range(probes):
        now += breaker.wait(now)
        permit, breaker = breaker.admit(now)
        assert permit is Permit.PROBE
        breaker = breaker.failed(now, started_at=now)
        waits.append(breaker.wait(now))
    assert all(breaker.cooldown * (1 - 1e-9) <= w <= breaker.max_cooldown * (1 + 1e-9) for w in waits)
    assert all(a <= b * (1 + 1e-9) for a, b in itertools.pairwise(waits))


@given(breakers(), st.floats(min_value=0.0, max_value=1e6), st.floats(min_value=0.0, max_value=3600.0))
def test_a_retry_after_keeps_it_open_at_least_that_long(breaker: CircuitBreaker, now: float, after: float) -> None:
    for _ in range(breaker.threshold - 1):
        breaker = breaker.failed(now, started_at=now)
    breaker = breaker.failed(now, started_at=now, retry_after=after)
    assert breaker.open_until is not None
    assert breaker.open_until >= now + after


@given(breakers(), st.floats(min_value=0.0, max_value=1e6), st.booleans())
def test_a_success_closes_it_from_open_or_half_open(breaker: CircuitBreaker, now: float, probing: bool) -> None:
    breaker = _open(breaker, now)
    if probing:
        now += breaker.wait(now)
        breaker = breaker.admit(now)[1]
    closed = breaker.succeeded(now)
    assert closed.state(now) is BreakerState.CLOSED
    assert closed.admit(now) == (Permit.SEND, closed)
    assert (closed.failures, closed.trips, closed.wait(now)) == (0, 0, 0.0)


@given(breakers(), st.floats(min_value=1.0, max_value=1e6), st.integers(min_value=1, max_value=30))
def test_attempts_begun_before_it_opened_or_closed_change_nothing(
    breaker: CircuitBreaker, now: float, stale: int
) -> None:
    opened = _open(breaker, now)
    after = opened
    for _ in range(stale):
        after = after.failed(now + 0.5, started_at=now - 1.0)
    assert after == opened
    closed = opened.succeeded(now + 1.0)
    after = closed
    for _ in range(stale):
        after = after.failed(now + 2.0, started_at=now)
    assert after == closed


@given(breakers(), st.lists(steps, max_size=80))
def test_never_more_than_one_probe_out_and_probes_spaced_by_the_cool_down(
    breaker: CircuitBreaker, script: list[tuple[str, float]]
) -> None:
    """Whatever happens, while it is not closed at most one probe is out, and no two probes start closer together
    than the shortest cool-down: the load while Flowmailer is down is bounded by time, not by the backlog."""
    now, out, last_probe = 0.0, False, -math.inf
    for action, value in script:
        if action == "wait":
            now += value
        elif action == "admit":
            was_closed = breaker.state(now) is BreakerState.CLOSED
            permit, breaker = breaker.admit(now)
            assert (permit is Permit.SEND) == was_closed
            if permit is Permit.PROBE:
                assert not out
                assert now - last_probe >= breaker.cooldown * (1 - 1e-9) or last_probe == -math.inf
                out, last_probe = True, now
        elif action == "fail":
            breaker = breaker.failed(now, started_at=max(0.0, now - value))
            out = breaker.probe_since is not None
        elif action == "succeed":
            breaker = breaker.succeeded(now)
            out, last_probe = False, -math.inf
        else:
            breaker = breaker.withdraw_probe()
            out, last_probe = False, -math.inf  # it was never sent
        assert (breaker.probe_since is not None) == out
        assert breaker.failures < breaker.threshold
        assert breaker.open_until is None or breaker.wait(now) <= max(breaker.max_cooldown, 0.0) + 1e-6


@pytest.mark.parametrize(
    ("outcome", "down"),
    [
        (Transient(503, None, "unavailable"), True),
        (NotSent("connect refused"), True),
        (Ambiguous("read timeout"), True),
        (Accepted("m1"), False),
        (Rejected(422, ()), False),
        (CredentialsRejected("invalid_client"), False),
        (TokenInvalid("invalid_token"), False),
    ],
)
def test_only_outcomes_without_an_answer_say_flowmailer_is_down(outcome: object, down: bool) -> None:
    assert says_down(outcome) is down


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"threshold": 0}, "CircuitBreaker.threshold"),
        ({"cooldown": 0.0}, "CircuitBreaker.cooldown"),
        ({"cooldown": 10.0, "max_cooldown": 5.0}, "CircuitBreaker.max_cooldown"),
        ({"multiplier": 0.5}, "CircuitBreaker.multiplier"),
        ({"cooldown": math.inf}, "CircuitBreaker.cooldown"),
    ],
)
def test_a_bad_breaker_setting_is_refused_naming_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
