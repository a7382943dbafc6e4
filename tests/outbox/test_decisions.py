"""The outbox's pure decisions agree with the lifecycle table for every state and every way of settling a claim."""

from __future__ import annotations

import typing
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowmailer.core
from flowmailer.core import (
    TERMINAL_STATES,
    TRANSITIONS,
    Claim,
    ConfigurationError,
    ErrorDetail,
    LifecycleError,
    SettleKind,
    Settlement,
    SubmissionState,
    SubmitMessage,
    claimed_state,
    errors_from_json,
    errors_to_json,
    outcome_state,
    release_state,
    tag_message,
)
from flowmailer.core._checks import check_messages

_S = SubmissionState
MOVES: tuple[SettleKind | Literal["resend"], ...] = (*typing.get_args(SettleKind), "resend")
MESSAGE = SubmitMessage(sender_address="s@example.com", recipient_address="r@example.com", text="x")


def _claim(claimed_from: SubmissionState) -> Claim:
    return Claim(1, MESSAGE, "ref", claimed_from, 1, 0.0, None, None, "relay", 30.0, 1)


@given(st.sampled_from(SubmissionState))
def test_only_live_rows_can_be_claimed_and_a_claim_sends_or_reconciles(state: SubmissionState) -> None:
    if state in TERMINAL_STATES:
        with pytest.raises(LifecycleError):
            claimed_state(state)
    else:
        assert claimed_state(state) in (_S.IN_FLIGHT, _S.RECONCILING)


@pytest.mark.parametrize("state", [_S.IN_FLIGHT, _S.RECONCILING])
def test_a_claim_from_a_lapsed_lease_or_a_reconciliation_must_reconcile(state: SubmissionState) -> None:
    assert _claim(state).must_reconcile


@given(st.sampled_from([_S.QUEUED, _S.RETRY_SCHEDULED, _S.IN_FLIGHT, _S.RECONCILING]), st.sampled_from(MOVES))
def test_every_settlement_is_a_move_of_the_lifecycle_table(
    claimed_from: SubmissionState, how: SettleKind | Literal["resend"]
) -> None:
    claim = _claim(claimed_from)
    legal = {(s, t) for (s, _), t in TRANSITIONS.items()}
    try:
        after = outcome_state(claim, how)
    except LifecycleError:
        assert how == "resend"
        assert not claim.must_reconcile
        return
    if how == "resend":
        assert (claim.state, _S.QUEUED) in legal
        assert after is _S.IN_FLIGHT
    else:
        assert (claim.state, after) in legal


@given(st.sampled_from([_S.QUEUED, _S.RETRY_SCHEDULED, _S.IN_FLIGHT, _S.RECONCILING]))
def test_a_release_never_loses_a_needed_reconciliation(claimed_from: SubmissionState) -> None:
    claim = _claim(claimed_from)
    assert release_state(claim) is (_S.RECONCILING if claim.must_reconcile else _S.QUEUED)


def test_a_message_keeps_its_own_reference_or_gets_the_new_one() -> None:
    mine = MESSAGE.with_client_reference("order-1")
    assert tag_message(mine, "new") == (mine, "order-1")
    tagged, ref = tag_message(MESSAGE, "new")
    assert (ref, tagged.client_reference()) == ("new", "new")


def test_flowmailers_errors_round_trip_through_storage() -> None:
    errors = (ErrorDetail(code="a", field="f", rejected_value={"x": [1]}, arguments=("y", 2)), ErrorDetail())
    assert errors_from_json(errors_to_json(errors)) == errors
    assert errors_from_json(None) == ()


def test_a_batch_with_a_stranger_names_its_position() -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_messages([MESSAGE, "not a message"], "messages")
    assert caught.value.field == "messages[1]"


@given(st.sampled_from([_S.QUEUED, _S.RETRY_SCHEDULED, _S.IN_FLIGHT, _S.RECONCILING]))
def test_a_settlement_is_built_only_with_a_valid_time(claimed_from: SubmissionState) -> None:
    claim = _claim(claimed_from)
    assert Settlement.retry(claim, 5, "x").due_at(1.0) == 5.0
    assert Settlement.release(claim).due_at(1.0) == 1.0
    for bad in (float("inf"), "soon", True):
        with pytest.raises(ConfigurationError):
            Settlement.reconcile(claim, bad, "x")  # type: ignore[arg-type]


def test_input_checks_stay_out_of_the_core_namespace() -> None:
    # A later module's same generic name would silently win in core/__init__'s star imports.
    assert [name for name in vars(flowmailer.core) if name.startswith(("check_", "require"))] == []
