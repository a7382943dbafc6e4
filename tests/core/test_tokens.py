"""Token freshness and the single-flight refresh decision."""

from __future__ import annotations

import math

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.core import ConfigurationError, TokenAction, TokenFreshness, TokenPolicy


@attrs.frozen
class Token:
    expires_at: float


@st.composite
def token_policies(draw: st.DrawFn) -> TokenPolicy:
    min_remaining = draw(st.floats(min_value=0.0, max_value=30.0))
    return TokenPolicy(draw(st.floats(min_value=min_remaining, max_value=60.0)), min_remaining)


times = st.floats(min_value=-1e6, max_value=1e6)
ORDER = [TokenFreshness.FRESH, TokenFreshness.REFRESH_AHEAD, TokenFreshness.EXPIRED]


@given(token_policies(), times, times, times)
def test_freshness_only_gets_worse_as_time_passes(policy: TokenPolicy, expires_at: float, t1: float, t2: float) -> None:
    early, late = sorted((t1, t2))
    token = Token(expires_at)
    assert ORDER.index(policy.freshness(token, early)) <= ORDER.index(policy.freshness(token, late))


@given(token_policies(), times, times)
def test_never_fresh_past_expiry_minus_the_refresh_margin(policy: TokenPolicy, expires_at: float, now: float) -> None:
    if now >= expires_at - policy.refresh_ahead:
        assert policy.freshness(Token(expires_at), now) is not TokenFreshness.FRESH


@given(token_policies(), times, st.floats(min_value=0.0, max_value=1e6), st.booleans())
def test_never_usable_at_or_after_expiry(policy: TokenPolicy, expires_at: float, late: float, in_flight: bool) -> None:
    now = expires_at + late
    assert policy.freshness(Token(expires_at), now) is TokenFreshness.EXPIRED
    assert policy.action(Token(expires_at), now, refresh_in_flight=in_flight) not in {
        TokenAction.USE,
        TokenAction.USE_AND_REFRESH,
    }


@given(token_policies(), times, times)
def test_a_refresh_starts_only_when_none_is_in_flight(policy: TokenPolicy, expires_at: float, now: float) -> None:
    starts = {TokenAction.USE_AND_REFRESH, TokenAction.REFRESH_AND_WAIT}
    assert policy.action(Token(expires_at), now, refresh_in_flight=True) not in starts
    needs_refresh = policy.freshness(Token(expires_at), now) is not TokenFreshness.FRESH
    assert (policy.action(Token(expires_at), now, refresh_in_flight=False) in starts) == needs_refresh


@pytest.mark.parametrize(
    ("now", "freshness", "idle", "busy"),
    [
        (40.0, TokenFreshness.FRESH, TokenAction.USE, TokenAction.USE),
        (50.0, TokenFreshness.REFRESH_AHEAD, TokenAction.USE_AND_REFRESH, TokenAction.USE),
        (58.9, TokenFreshness.REFRESH_AHEAD, TokenAction.USE_AND_REFRESH, TokenAction.USE),
        (59.0, TokenFreshness.EXPIRED, TokenAction.REFRESH_AND_WAIT, TokenAction.WAIT),
        (61.0, TokenFreshness.EXPIRED, TokenAction.REFRESH_AND_WAIT, TokenAction.WAIT),
    ],
)
def test_a_sixty_second_token_with_the_default_policy(
    now: float, freshness: TokenFreshness, idle: TokenAction, busy: TokenAction
) -> None:
    policy, token = TokenPolicy(), Token(expires_at=60.0)
    assert policy.freshness(token, now) is freshness
    assert policy.action(token, now, refresh_in_flight=False) is idle
    assert policy.action(token, now, refresh_in_flight=True) is busy


def test_no_token_yet_means_fetch_one() -> None:
    assert TokenPolicy().freshness(None, 0.0) is TokenFreshness.EXPIRED
    assert TokenPolicy().action(None, 0.0, refresh_in_flight=False) is TokenAction.REFRESH_AND_WAIT


@pytest.mark.parametrize(
    ("refresh_ahead", "min_remaining", "field"),
    [
        (10.0, -1.0, "TokenPolicy.min_remaining"),
        (math.inf, 1.0, "TokenPolicy.refresh_ahead"),
        (1.0, 2.0, "TokenPolicy.refresh_ahead"),
    ],
)
def test_a_bad_token_policy_is_refused_naming_the_field(refresh_ahead: float, min_remaining: float, field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        TokenPolicy(refresh_ahead, min_remaining)
    assert caught.value.field == field
