"""The submission lifecycle: closure over every (state, event) pair, and the shape of the graph."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.core import (
    TERMINAL_STATES,
    TRANSITIONS,
    FlowmailerError,
    LifecycleError,
    SubmissionEvent,
    SubmissionState,
    transition,
)

S, E = SubmissionState, SubmissionEvent


@pytest.mark.parametrize(("state", "event"), list(itertools.product(S, E)))
def test_every_pair_either_transitions_as_the_table_says_or_raises(
    state: SubmissionState, event: SubmissionEvent
) -> None:
    if (state, event) in TRANSITIONS:
        assert transition(state, event) is TRANSITIONS[state, event]
    else:
        with pytest.raises(LifecycleError) as caught:
            transition(state, event)
        assert (caught.value.state, caught.value.event) == (state, event)
        assert isinstance(caught.value, FlowmailerError)


@given(st.lists(st.sampled_from(E), max_size=40))
def test_a_refused_event_leaves_the_state_unchanged(events: list[SubmissionEvent]) -> None:
    state = S.QUEUED
    for event in events:
        before = state
        try:
            state = transition(state, event)
        except LifecycleError:
            assert state is before
        else:
            assert (before, event) in TRANSITIONS


def reachable(start: SubmissionState) -> set[SubmissionState]:
    seen, todo = {start}, [start]
    while todo:
        here = todo.pop()
        for (s, _), t in TRANSITIONS.items():
            if s is here and t not in seen:
                seen.add(t)
                todo.append(t)
    return seen


def test_every_state_is_reachable_from_queued() -> None:
    assert reachable(S.QUEUED) == set(S)


@pytest.mark.parametrize("state", [s for s in S if s not in TERMINAL_STATES])
def test_every_live_state_can_end_in_a_terminal_state(state: SubmissionState) -> None:
    assert reachable(state) & TERMINAL_STATES


def test_accepted_is_final_and_dead_leaves_only_by_an_operators_requeue() -> None:
    assert {e for (s, e) in TRANSITIONS if s is S.ACCEPTED} == set()
    assert {(e, t) for (s, e), t in TRANSITIONS.items() if s is S.DEAD} == {
        (E.REQUEUE, S.QUEUED),
        (E.REQUEUE_TO_RECONCILE, S.RECONCILING),
    }


def test_only_reconciliation_or_a_fresh_send_can_accept() -> None:
    assert {s for (s, _), t in TRANSITIONS.items() if t is S.ACCEPTED} == {S.IN_FLIGHT, S.RECONCILING}


def test_a_send_that_may_have_gone_out_is_never_resent_before_reconciling() -> None:
    assert TRANSITIONS[S.IN_FLIGHT, E.AMBIGUOUS] is S.RECONCILING
    assert TRANSITIONS[S.IN_FLIGHT, E.LEASE_EXPIRED] is S.RECONCILING
    assert {t for (s, _), t in TRANSITIONS.items() if s is S.RECONCILING} <= {
        S.RECONCILING,
        S.ACCEPTED,
        S.QUEUED,
        S.DEAD,
    }
    assert (S.RECONCILING, E.CLAIM) not in TRANSITIONS


def test_the_error_names_the_pair_and_what_is_allowed() -> None:
    with pytest.raises(LifecycleError, match=r"FOUND cannot happen to a QUEUED submission \(allowed: CLAIM\)"):
        transition(S.QUEUED, E.FOUND)
    with pytest.raises(LifecycleError, match=r"allowed: none"):
        transition(S.ACCEPTED, E.REQUEUE)
