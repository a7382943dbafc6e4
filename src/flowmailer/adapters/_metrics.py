"""What an event counts for, once for every metrics backend: the Prometheus and OpenTelemetry observers only name it.

``facts(event)`` turns one event into plain counts and one request duration; each observer maps those onto its
ecosystem's names and units, so the two can never disagree about what was accepted, retried or reconciled.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from flowmailer.core import (
    Accepted,
    Ambiguous,
    AttemptFinished,
    CredentialsRejected,
    Dead,
    Event,
    NotSent,
    Outcome,
    ReconcileAt,
    RecordAccepted,
    Rejected,
    RelayNotRecorded,
    RelayOutboxFailed,
    RelayRecorded,
    RequestFinished,
    RetryAt,
    TokenInvalid,
    Transient,
)

__all__ = ["Count", "Request", "facts", "outcome_name", "status_of"]

_NAMES: dict[type, str] = {
    Accepted: "accepted",
    Rejected: "rejected",
    NotSent: "not_sent",
    Transient: "transient",
    Ambiguous: "ambiguous",
    TokenInvalid: "token_invalid",
    CredentialsRejected: "credentials_rejected",
}


@attrs.frozen
class Count:
    """Add one to the counter ``name`` (with ``label``, if any)."""

    name: str
    label: str | None = None


@attrs.frozen
class Request:
    """One HTTP request (or an attempt at one) that took ``duration`` seconds."""

    operation: str
    address: str
    #: "answered" for a read or a token that came back, else the outcome's name.
    outcome: str
    status: int | None
    duration: float
    attempt: int
    url: str = ""


def outcome_name(outcome: Outcome) -> str:
    return _NAMES.get(type(outcome), type(outcome).__name__.lower())


def status_of(outcome: Outcome) -> int | None:
    """The HTTP status an outcome came with; None when no answer came (nothing sent, or no answer read)."""
    if isinstance(outcome, Accepted):
        return 201
    if isinstance(outcome, Rejected | Transient):
        return outcome.status
    if isinstance(outcome, TokenInvalid | CredentialsRejected):
        return 401
    return None


def facts(event: Event) -> Iterator[Count | Request]:
    """The counts and request durations one event stands for."""
    if isinstance(event, AttemptFinished):
        name = outcome_name(event.outcome)
        yield Request(
            event.operation, event.address, name, status_of(event.outcome), event.duration, event.attempt, event.url
        )  # fmt: skip
        if event.operation == "submit" and isinstance(event.outcome, Accepted):
            yield Count("submits_accepted")
        if event.operation == "submit" and isinstance(event.outcome, Ambiguous):
            yield Count("ambiguous")
    elif isinstance(event, RequestFinished):
        yield Request(
            event.operation, event.address, "answered", event.status, event.duration, event.attempt, event.url
        )  # fmt: skip
        if event.operation == "token":
            yield Count("tokens_fetched")
    elif isinstance(event, RelayRecorded):
        decision = event.decision
        if isinstance(decision, RecordAccepted) and decision.reconciled:
            # Found by its tag after an ambiguous send: Flowmailer accepted it, though no 201 said so.
            yield Count("submits_accepted")
            yield Count("reconciled")
        if isinstance(decision, RecordAccepted):
            for _ in range(decision.copies - 1):
                yield Count("duplicates")
        if isinstance(decision, RetryAt | ReconcileAt):
            yield Count("retries", decision.cause.value)
        elif isinstance(decision, Dead):
            yield Count("dead")
    elif isinstance(event, RelayNotRecorded):
        yield Count("not_recorded")
    elif isinstance(event, RelayOutboxFailed):
        yield Count("outbox_errors")
