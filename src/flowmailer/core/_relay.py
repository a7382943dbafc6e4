"""The relay's decisions: what to record for a claim after a submission or a reconciliation.

Pure: the shell passes in the time, the random draw and what happened, and does the recording itself, so a trio
relay can follow as a thin shell over the same decisions.
"""

from __future__ import annotations

import enum
from typing import TypeAlias

import attrs

from flowmailer.core._checks import check_duration, require
from flowmailer.core._errors import (
    AmbiguousError,
    AuthenticationError,
    CertificateError,
    ConfigurationError,
    FlowmailerError,
    RejectedError,
    TransientError,
)
from flowmailer.core._lifecycle import SubmissionState
from flowmailer.core._models import ErrorDetail
from flowmailer.core._outbox import Claim
from flowmailer.core._outcomes import (
    Accepted,
    Ambiguous,
    CredentialsRejected,
    NotSent,
    Outcome,
    Rejected,
    TokenInvalid,
    Transient,
)
from flowmailer.core._retry import RetryPolicy

__all__ = [
    "Cause",
    "Dead",
    "Failure",
    "Found",
    "Halt",
    "NotFound",
    "ReconcileAt",
    "ReconcileResult",
    "RecordAccepted",
    "RelayDecision",
    "RelayRules",
    "Resend",
    "RetryAt",
    "decide_after_reconcile",
    "decide_after_submit",
    "decide_before_send",
    "lease_allows_send",
    "outcome_of",
]


@attrs.frozen
class RelayRules:
    """When the relay gives up on a message, how long it waits between durable retries, and when it trusts a search.

    ``max_attempts`` counts sends of one message (searches by tag do not count); ``max_age`` is seconds after
    enqueue, or after an operator's last requeue, past which no send starts. The defaults keep a message through
    about five hours of its sends failing (50 sends, waits capped at 15 minutes; the relay does not count those
    that fail while its circuit breaker is open) and never past a day.
    Only ``backoff.next_delay`` is used: the client's own in-process policy handles the quick retries, these are
    the long waits between claims.
    ``reconcile_delay`` is how long after an ambiguous send the relay first asks Flowmailer by tag: Flowmailer's
    tag search may lag behind acceptance, and a "not found" is only trusted after that long.
    """

    max_attempts: int = 50
    max_age: float = 86_400.0
    backoff: RetryPolicy = attrs.field(factory=lambda: RetryPolicy(base_delay=5.0, cap=900.0))
    reconcile_delay: float = 60.0

    def __attrs_post_init__(self) -> None:
        require(
            self.max_attempts >= 1,
            "RelayRules.max_attempts",
            f"{self.max_attempts!r} allows no attempt",
            "give 1 or more",
        )
        check_duration(self.max_age, "RelayRules.max_age")
        check_duration(self.reconcile_delay, "RelayRules.reconcile_delay", allow_zero=True)


class Cause(enum.Enum):
    """Why a message goes round again: the figure an operator watches."""

    TRANSIENT = "transient"
    NOT_SENT = "not sent"
    TOKEN = "token"  # noqa: S105 - a cause, not a secret
    AMBIGUOUS = "ambiguous"
    #: A relay died holding it and a first search found nothing: confirm after ``reconcile_delay``.
    LEASE_EXPIRED = "lease expired"
    RECONCILE_FAILED = "reconcile failed"


@attrs.frozen
class RecordAccepted:
    """Flowmailer has it: from a 201 (``reconciled`` False) or found by its tag (True)."""

    message_id: str
    reconciled: bool = False
    #: How many messages carried the tag; above 1 is a duplicate at Flowmailer, reported, never silent.
    copies: int = 1


@attrs.frozen
class RetryAt:
    """Send again at ``at``."""

    at: float
    cause: Cause
    reason: str


@attrs.frozen
class ReconcileAt:
    """Ask Flowmailer by tag at ``at`` before any resend."""

    at: float
    cause: Cause
    reason: str


@attrs.frozen
class Dead:
    """A dead letter, with the reason an operator reads and Flowmailer's ``allErrors`` when it refused it."""

    reason: str
    errors: tuple[ErrorDetail, ...] = ()


@attrs.frozen
class Halt:
    """The credentials were refused, or Flowmailer's certificate did not verify on any address: release the claim
    and stop, since every other message would fail alike."""

    reason: str


@attrs.frozen
class Resend:
    """The search says Flowmailer does not have the message: send it now, under a new claim."""


RelayDecision: TypeAlias = RecordAccepted | RetryAt | ReconcileAt | Dead | Halt


@attrs.frozen
class Found:
    """The tag search returned these messages."""

    message_ids: tuple[str, ...]


@attrs.frozen
class NotFound:
    """The tag search answered, with no message."""


#: What a client error stands for, once the client spent its in-process retries on it.
Failure: TypeAlias = Rejected | CredentialsRejected | Ambiguous | Transient | NotSent
#: What asking Flowmailer by tag produced: an answer, or why the search failed.
ReconcileResult: TypeAlias = Found | NotFound | Failure


def outcome_of(error: FlowmailerError) -> Failure:
    """The outcome a client error stands for; the client already spent its in-process retries on it."""
    if isinstance(error, RejectedError):
        return Rejected(error.status, error.errors)
    if isinstance(error, AuthenticationError):
        return CredentialsRejected(str(error))
    if isinstance(error, AmbiguousError):
        return Ambiguous(str(error))
    if isinstance(error, CertificateError):
        return NotSent(str(error), untrusted=True)
    if isinstance(error, ConfigurationError):
        return Rejected(0, (ErrorDetail(field=error.field, default_message=f"{error.problem}. {error.fix}"),))
    retry_after = error.retry_after if isinstance(error, TransientError) else None
    # The status of the client's last attempt is not carried by TransientError; 0 stands for "unknown".
    return Transient(0, retry_after, str(error))


def _too_old(claim: Claim, at: float, rules: RelayRules) -> bool:
    return at - claim.age_from > rules.max_age


def decide_before_send(claim: Claim, *, now: float, rules: RelayRules) -> Dead | None:
    """Refuse to (re)send a message past its maximum age or attempts; None means: go ahead and send."""
    if _too_old(claim, now, rules):
        since = "enqueued" if claim.requeued_at is None else "requeued"
        return Dead(f"not sent: {since} {now - claim.age_from:.0f} s ago, past max_age of {rules.max_age:.0f} s")
    if claim.attempts > rules.max_attempts:
        return Dead(f"not sent: attempt {claim.attempts} is past max_attempts of {rules.max_attempts}")
    return None


def _retry(
    claim: Claim, cause: Cause, reason: str, retry_after: float | None, now: float, rules: RelayRules, u: float
) -> RetryAt | Dead:
    if claim.attempts >= rules.max_attempts:
        return Dead(f"gave up after {claim.attempts} attempts; the last: {reason}")
    at = now + max(retry_after or 0.0, rules.backoff.next_delay(claim.attempts, u))
    if _too_old(claim, at, rules):
        return Dead(f"gave up: the next attempt would be past max_age of {rules.max_age:.0f} s; the last: {reason}")
    return RetryAt(at, cause, reason)


def decide_after_submit(claim: Claim, outcome: Outcome, *, now: float, rules: RelayRules, u: float) -> RelayDecision:
    """What to record after sending ``claim``'s message ended in ``outcome``.

    An ambiguous send is always reconciled, whatever the limits: asking is not resending, and a message
    Flowmailer may have must not be declared dead unasked.
    """
    if isinstance(outcome, Accepted):
        return RecordAccepted(outcome.message_id)
    if isinstance(outcome, Rejected):
        listed = "; ".join(e.describe() for e in outcome.errors) or "no details"
        return Dead(f"rejected by Flowmailer (HTTP {outcome.status}): {listed}", outcome.errors)
    if isinstance(outcome, CredentialsRejected):
        return Halt(outcome.detail)
    if isinstance(outcome, NotSent) and outcome.untrusted:
        return Halt(outcome.reason)  # the client tried every address: every other message would fail alike
    if isinstance(outcome, Ambiguous):
        return ReconcileAt(now + rules.reconcile_delay, Cause.AMBIGUOUS, f"ambiguous: {outcome.reason}")
    if isinstance(outcome, NotSent):
        return _retry(claim, Cause.NOT_SENT, outcome.reason, None, now, rules, u)
    if isinstance(outcome, TokenInvalid):
        return _retry(claim, Cause.TOKEN, f"token refused: {outcome.detail}", None, now, rules, u)
    return _retry(
        claim, Cause.TRANSIENT, outcome.reason or f"HTTP {outcome.status}", outcome.retry_after, now, rules, u
    )


def decide_after_reconcile(
    claim: Claim, result: ReconcileResult, *, now: float, rules: RelayRules, u: float
) -> RelayDecision | Resend:
    """What follows asking Flowmailer whether it has ``claim``'s message: record it, resend it, or ask again.

    A "not found" is trusted only ``reconcile_delay`` after the last possible send: a row scheduled for
    reconciliation waited that long already, but a row taken over from a dead relay (claimed from IN_FLIGHT) may
    have been sent moments before its lease ran out, so its "not found" is confirmed once more after the delay.
    A failed search asks again after a random wait of up to the message's age (capped by the backoff's cap), so
    the questions thin out while Flowmailer is down; past ``max_age`` the message is dead with a reason that
    says Flowmailer may have it.
    """
    tag = claim.tag
    if isinstance(result, Found):
        return RecordAccepted(result.message_ids[0], reconciled=True, copies=len(result.message_ids))
    if isinstance(result, NotFound):
        if claim.claimed_from is SubmissionState.IN_FLIGHT:
            reason = f"tag {tag} not found right after a relay lost its lease; confirming after reconcile_delay"
            return ReconcileAt(now + rules.reconcile_delay, Cause.LEASE_EXPIRED, reason)
        return Resend()
    if isinstance(result, CredentialsRejected):
        return Halt(result.detail)
    if isinstance(result, NotSent) and result.untrusted:
        return Halt(result.reason)
    unknown = f"Flowmailer may have accepted it; a requeue searches for tag {tag} before any resend"
    if isinstance(result, Rejected):
        listed = "; ".join(e.describe() for e in result.errors) or "no details"
        return Dead(
            f"cannot reconcile: the search was refused (HTTP {result.status}: {listed}); {unknown}", result.errors
        )
    age = now - claim.age_from
    if age > rules.max_age:
        return Dead(f"could not reconcile within max_age of {rules.max_age:.0f} s ({result.reason}); {unknown}")
    ceiling = min(rules.backoff.cap, max(rules.backoff.base_delay, age))
    retry_after = result.retry_after if isinstance(result, Transient) else None
    return ReconcileAt(
        now + max(retry_after or 0.0, u * ceiling), Cause.RECONCILE_FAILED, f"search failed: {result.reason}"
    )


def lease_allows_send(lease_left: float, lease: float) -> bool:
    """Start a send only with more than a third of the lease left.

    So a relay that takes over a lapsed lease searches by tag at least ``lease / 3`` after the dead relay's last
    possible send: choose ``lease`` so that a third of it covers Flowmailer's tag-search lag.
    """
    return lease_left > lease / 3
