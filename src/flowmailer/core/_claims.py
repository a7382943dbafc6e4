"""What a relay does with one claim, as a generator of effects: the steps both relays (threaded and async) take.

Search first if Flowmailer may already have the message, take the row back if it has not, never send on a lease
about to run out, send, and decide what to record (``core._relay``'s decisions). The relay performs the effects
with its clients and its outbox and records the decision; it holds no rule of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeAlias, cast

import attrs

from flowmailer.core._errors import AuthenticationError, CertificateError, FlowmailerError
from flowmailer.core._loop import TICK, Fed, Tick
from flowmailer.core._outbox import Claim, Settlement
from flowmailer.core._outcomes import Accepted, Outcome
from flowmailer.core._relay import (
    Dead,
    Failure,
    Found,
    NotFound,
    ReconcileAt,
    ReconcileResult,
    RecordAccepted,
    RelayDecision,
    RelayRules,
    Resend,
    RetryAt,
    decide_after_reconcile,
    decide_after_submit,
    decide_before_send,
    outcome_of,
)

__all__ = [
    "ClaimEffect",
    "ClaimSteps",
    "HaltRelay",
    "KeepLease",
    "SearchByTag",
    "SubmitClaim",
    "TakeBack",
    "handle_claim",
    "settlement_for",
]


@attrs.frozen
class SearchByTag:
    """Ask the reconciler for the messages tagged ``tag``. Feed their ids (a tuple), or the FlowmailerError."""

    tag: str


@attrs.frozen
class TakeBack:
    """Not found at Flowmailer: take ``claim``'s row back in flight (``Outbox.resend``). Feed the fresh Claim; an
    error raised here leaves the row to its lease."""

    claim: Claim


@attrs.frozen
class KeepLease:
    """About to send on ``claim``: is its lease still long enough (renew it if not)? Feed a bool; False drops
    the claim unsent."""

    claim: Claim


@attrs.frozen
class SubmitClaim:
    """Submit ``claim.message``. Feed Flowmailer's message id (a str), or the FlowmailerError the client raised."""

    claim: Claim


@attrs.frozen
class HaltRelay:
    """Flowmailer refused the credentials, or its certificate did not verify: stop the relay (and raise this from
    its run). Feed None."""

    error: AuthenticationError | CertificateError


ClaimEffect: TypeAlias = Tick | SearchByTag | TakeBack | KeepLease | SubmitClaim | HaltRelay
#: One claim in progress: it returns the claim and the decision to record, or None when it was dropped unsent.
ClaimSteps: TypeAlias = Generator[ClaimEffect, Fed, tuple[Claim, RelayDecision] | None]


def handle_claim(claim: Claim, rules: RelayRules, draw: Callable[[], float]) -> ClaimSteps:
    """Search first if Flowmailer may have the message, send if it has not: the decision to record, if any."""
    fed = yield TICK
    decision: RelayDecision | None
    if claim.must_reconcile:
        fed = yield SearchByTag(claim.tag)
        result: ReconcileResult
        if isinstance(fed.value, FlowmailerError):
            result = yield from _failure(fed.value)
        else:
            ids = cast("tuple[str, ...]", fed.value)
            result = Found(ids) if ids else NotFound()
        found = decide_after_reconcile(claim, result, now=fed.wall, rules=rules, u=draw())
        if not isinstance(found, Resend):
            return claim, found
        # Decided as the resend will count, before the row is taken back (which counts it): one refused is unmade.
        decision = decide_before_send(attrs.evolve(claim, attempts=claim.attempts + 1), now=fed.wall, rules=rules)
        if decision is None:
            fed = yield TakeBack(claim)
            claim = cast("Claim", fed.value)
    else:
        decision = decide_before_send(claim, now=fed.wall, rules=rules)
    if decision is None:
        if not (yield KeepLease(claim)).value:
            return None
        fed = yield SubmitClaim(claim)
        outcome: Outcome
        if isinstance(fed.value, FlowmailerError):
            outcome = yield from _failure(fed.value)
        else:
            outcome = Accepted(cast("str", fed.value))
        decision = decide_after_submit(claim, outcome, now=fed.wall, rules=rules, u=draw())
    return claim, decision


def _failure(error: FlowmailerError) -> Generator[ClaimEffect, Fed, Failure]:
    if isinstance(error, AuthenticationError | CertificateError):
        yield HaltRelay(error)
    return outcome_of(error)


def settlement_for(claim: Claim, decision: RelayDecision | None) -> Settlement:
    """How the outbox records a decision; None (and a halt) releases the claim, unstarted or unsent."""
    if isinstance(decision, RecordAccepted):
        return Settlement.accepted(claim, decision.message_id)
    if isinstance(decision, RetryAt):
        return Settlement.retry(claim, decision.at, decision.reason)
    if isinstance(decision, ReconcileAt):
        return Settlement.reconcile(claim, decision.at, decision.reason)
    if isinstance(decision, Dead):
        return Settlement.dead(claim, decision.reason, decision.errors)
    return Settlement.release(claim)
