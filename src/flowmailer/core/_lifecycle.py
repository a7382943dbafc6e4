"""The submission lifecycle: one transition table, the only source of truth for what may follow what.

ACCEPTED is final. DEAD is final for the relay; only an operator's requeue brings a dead letter back, after
fixing what killed it: into the queue, or first to a search by tag if Flowmailer may have it. The documentation's
diagram is drawn from ``TRANSITIONS`` by ``docs/gen_lifecycle.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from flowmailer.core._errors import FlowmailerError

__all__ = ["TERMINAL_STATES", "TRANSITIONS", "LifecycleError", "SubmissionEvent", "SubmissionState", "transition"]


class SubmissionState(enum.Enum):
    """Where one submission stands; the outbox stores it as the row's state."""

    QUEUED = "queued"
    #: Claimed under a lease; a request may be on the wire.
    IN_FLIGHT = "in_flight"
    ACCEPTED = "accepted"
    RETRY_SCHEDULED = "retry_scheduled"
    #: It may have been accepted: ask Flowmailer by client reference before any resend.
    RECONCILING = "reconciling"
    DEAD = "dead"


class SubmissionEvent(enum.Enum):
    """What can happen to a submission."""

    CLAIM = "claim"
    ACCEPT = "accept"
    #: Not accepted yet, try later (the retry policy gave up for now, or a reconciliation lookup failed).
    RETRY = "retry"
    #: Permanently refused, or an operator or the relay stopped trying.
    GIVE_UP = "give_up"
    AMBIGUOUS = "ambiguous"
    #: The claim's lease ran out (the relay died or stalled): whether the request went out is unknown.
    LEASE_EXPIRED = "lease_expired"
    #: Claimed but never sent (a graceful shutdown): back to the queue, nothing to reconcile.
    RELEASE = "release"
    #: Reconciliation found the message at Flowmailer.
    FOUND = "found"
    #: Reconciliation found no such message: resending cannot duplicate it.
    NOT_FOUND = "not_found"
    #: An operator sends a dead letter again; no earlier send of it can have reached Flowmailer.
    REQUEUE = "requeue"
    #: An operator requeues a dead letter that Flowmailer may have accepted: it is searched for before any resend.
    REQUEUE_TO_RECONCILE = "requeue_to_reconcile"


_S = SubmissionState
_E = SubmissionEvent

#: Every legal ``(state, event) -> new state``; any pair missing here is illegal.
TRANSITIONS: Final[Mapping[tuple[SubmissionState, SubmissionEvent], SubmissionState]] = {
    (_S.QUEUED, _E.CLAIM): _S.IN_FLIGHT,
    (_S.IN_FLIGHT, _E.ACCEPT): _S.ACCEPTED,
    (_S.IN_FLIGHT, _E.RETRY): _S.RETRY_SCHEDULED,
    (_S.IN_FLIGHT, _E.GIVE_UP): _S.DEAD,
    (_S.IN_FLIGHT, _E.AMBIGUOUS): _S.RECONCILING,
    (_S.IN_FLIGHT, _E.LEASE_EXPIRED): _S.RECONCILING,
    (_S.IN_FLIGHT, _E.RELEASE): _S.QUEUED,
    (_S.RETRY_SCHEDULED, _E.CLAIM): _S.IN_FLIGHT,
    (_S.RECONCILING, _E.FOUND): _S.ACCEPTED,
    (_S.RECONCILING, _E.NOT_FOUND): _S.QUEUED,
    (_S.RECONCILING, _E.RETRY): _S.RECONCILING,
    (_S.RECONCILING, _E.LEASE_EXPIRED): _S.RECONCILING,
    (_S.RECONCILING, _E.GIVE_UP): _S.DEAD,
    (_S.DEAD, _E.REQUEUE): _S.QUEUED,
    (_S.DEAD, _E.REQUEUE_TO_RECONCILE): _S.RECONCILING,
}

#: No event of the relay's leaves these; DEAD only by an operator's requeue.
TERMINAL_STATES: Final = frozenset({SubmissionState.ACCEPTED, SubmissionState.DEAD})


class LifecycleError(FlowmailerError):
    """An event that cannot happen in the submission's state: a bug in the caller, and nothing was changed."""

    def __init__(self, state: SubmissionState, event: SubmissionEvent) -> None:
        self.state = state
        self.event = event
        allowed = ", ".join(e.name for (s, e) in TRANSITIONS if s is state) or "none"
        super().__init__(f"{event.name} cannot happen to a {state.name} submission (allowed: {allowed})")


def transition(state: SubmissionState, event: SubmissionEvent) -> SubmissionState:
    """The state after ``event``; raises LifecycleError for an illegal pair."""
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise LifecycleError(state, event) from None
