"""What the shells tell an observer: plain values for metrics and logs. Never a secret in here."""

from __future__ import annotations

import attrs

from flowmailer.core._outbox import TraceContext
from flowmailer.core._outcomes import Outcome
from flowmailer.core._relay import RelayDecision

__all__ = [
    "AttemptFinished",
    "Event",
    "RelayCannotReconcile",
    "RelayClaimed",
    "RelayHandled",
    "RelayHandling",
    "RelayNotRecorded",
    "RelayOutboxFailed",
    "RelayRecorded",
    "RelayStopped",
    "RequestFinished",
]


@attrs.frozen
class AttemptFinished:
    """One request went out (or tried to) and ended in ``outcome``."""

    operation: str
    address: str
    outcome: Outcome
    duration: float
    attempt: int = 1
    #: The request's URL: the origin's host name and port, the path and query (which never hold a secret).
    url: str = ""


@attrs.frozen
class RelayClaimed:
    """A relay leased ``count`` rows from the outbox."""

    owner: str
    count: int


@attrs.frozen
class RelayHandling:
    """A relay worker starts on one claim: the requests its thread makes until :class:`RelayHandled` (a search by
    tag, a send) are for this message. ``trace_context`` is the enqueuing code's, if it had one."""

    owner: str
    outbox_id: int
    client_reference: str
    attempts: int
    #: It searches Flowmailer by tag first (the last send may have been accepted).
    reconcile: bool
    trace_context: TraceContext | None = None


@attrs.frozen
class RelayHandled:
    """The worker is done with the claim ``RelayHandling`` announced: the decision it hands over to be recorded, or
    None when it dropped or released the claim (or failed on it)."""

    owner: str
    outbox_id: int
    decision: RelayDecision | None


@attrs.frozen
class RelayRecorded:
    """A relay recorded the core's decision for one outbox row (accepted, retry, reconcile, dead, or halt)."""

    owner: str
    outbox_id: int
    client_reference: str
    attempts: int
    decision: RelayDecision


@attrs.frozen
class RelayNotRecorded:
    """A relay could not record a row's outcome (its lease was lost, or the outbox failed); the row is reconciled."""

    owner: str
    outbox_id: int
    reason: str


@attrs.frozen
class RelayOutboxFailed:
    """A relay's claim, count or wait failed in the outbox (a database restart, a full disk); it tries again."""

    owner: str
    reason: str


@attrs.frozen
class RelayCannotReconcile:
    """At start, a relay's tag search was refused: an ambiguous submission would go dead, not be reconciled."""

    owner: str
    #: What the search answered, and how to give the relay a credential that may search.
    reason: str


@attrs.frozen
class RelayStopped:
    """A relay stopped: ``released`` claims went back unstarted, ``abandoned`` were still in flight at the timeout."""

    owner: str
    released: int
    abandoned: int


@attrs.frozen
class RequestFinished:
    """A token request or a read was answered; its failed attempts are reported as :class:`AttemptFinished`."""

    operation: str
    address: str
    status: int
    duration: float
    attempt: int = 1
    url: str = ""


Event = (
    AttemptFinished
    | RelayCannotReconcile
    | RelayClaimed
    | RelayHandled
    | RelayHandling
    | RelayRecorded
    | RelayNotRecorded
    | RelayOutboxFailed
    | RelayStopped
    | RequestFinished
)
