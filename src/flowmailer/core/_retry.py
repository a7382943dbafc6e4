"""What to do after an attempt: the retry policy, its decisions, the retry budget shared by a client, and the
error a final decision raises.

Pure: the shell passes in elapsed time, the current time and the random draw, and does the sleeping itself.
"""

from __future__ import annotations

import enum
import math
from typing import TypeAlias

import attrs

from flowmailer.core._checks import require, require_number
from flowmailer.core._errors import (
    AmbiguousError,
    AuthenticationError,
    CertificateError,
    FlowmailerError,
    ProtocolError,
    RejectedError,
    TransientError,
)
from flowmailer.core._http import Host
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

__all__ = [
    "Done",
    "GiveUp",
    "GiveUpReason",
    "Reconcile",
    "RefreshToken",
    "Retry",
    "RetryBudget",
    "RetryDecision",
    "RetryPolicy",
    "RetryState",
    "error_for",
]


@attrs.frozen
class Done:
    """Flowmailer accepted the message: stop."""

    message_id: str


@attrs.frozen
class Retry:
    """Send again after ``delay`` seconds (0 means at once), preferably to another address."""

    delay: float
    outcome: NotSent | Transient


@attrs.frozen
class RefreshToken:
    """Fetch a new token, then send again at once. Happens at most once per submission."""

    outcome: TokenInvalid


@attrs.frozen
class Reconcile:
    """The request may have been accepted: never resend blindly, ask Flowmailer by client reference first."""

    outcome: Ambiguous


class GiveUpReason(enum.Enum):
    """Why a submission stopped without being accepted."""

    #: Flowmailer refused the message for good; resending the same message fails again.
    REJECTED = "rejected"
    #: The token request was refused: stop every request for this credential (Flowmailer locks the IP).
    CREDENTIALS_REJECTED = "credentials rejected"
    #: A freshly issued token was refused again right after a refresh (revoked or expired early): the
    #: credentials were accepted, so this is trouble for later, not an authentication failure.
    TOKEN_INVALID_AGAIN = "token invalid after refresh"  # noqa: S105 (a reason, not a secret)
    ATTEMPTS_EXHAUSTED = "attempts exhausted"
    #: The next attempt would start at or after the deadline.
    DEADLINE = "deadline"
    #: Flowmailer asked to wait longer than ``max_retry_after``: wait it out elsewhere (the outbox), never sooner.
    RETRY_AFTER_TOO_LONG = "retry-after too long"
    #: The client's retry budget is empty: Flowmailer looks down, so retries would only add load.
    BUDGET_EMPTY = "retry budget empty"
    #: The certificate did not verify on every address in turn: a setting (the CA bundle) is wrong, not the network.
    CERTIFICATE_UNTRUSTED = "certificate not trusted"
    #: A read's answer was longer than its endpoint can return, or encoded as not asked: asking again gets the same.
    ANSWER_UNREADABLE = "answer unreadable"


@attrs.frozen
class GiveUp:
    """Stop this submission; ``outcome`` is the last attempt's, whose ``retry_after`` (if any) says when to return."""

    reason: GiveUpReason
    outcome: Outcome


RetryDecision: TypeAlias = Done | Retry | RefreshToken | Reconcile | GiveUp


@attrs.frozen
class RetryState:
    """What the policy remembers about one submission between attempts; start with ``RetryState()``."""

    attempts: int = 0
    refreshed: bool = False
    #: Consecutive NotSent outcomes; a full sweep over every address without reaching Flowmailer backs off.
    not_sent_streak: int = 0
    #: Consecutive NotSent outcomes whose certificate did not verify; once every address said so, give up.
    untrusted_streak: int = 0


@attrs.frozen
class RetryPolicy:
    """Capped exponential backoff with full jitter, bounded by attempts and by a deadline.

    A ``Retry-After`` up to ``max_retry_after`` replaces the backoff; a longer one gives up
    (``RETRY_AFTER_TOO_LONG``) rather than come back sooner than Flowmailer asked, so the outbox waits it out.
    """

    max_attempts: int = 5
    #: Seconds from the start of the first attempt; no attempt is scheduled to start at or after it.
    deadline: float = 60.0
    base_delay: float = 0.5
    cap: float = 10.0
    multiplier: float = 2.0
    max_retry_after: float = 30.0

    def __attrs_post_init__(self) -> None:
        require(
            self.max_attempts >= 1,
            "RetryPolicy.max_attempts",
            f"{self.max_attempts!r} allows no attempt",
            "give 1 (never retry) or more",
        )
        require_number(self.deadline, "RetryPolicy.deadline", strict=True)
        require_number(self.base_delay, "RetryPolicy.base_delay", strict=True)
        require_number(self.cap, "RetryPolicy.cap", minimum=self.base_delay)
        require_number(self.multiplier, "RetryPolicy.multiplier", minimum=1.0)
        require_number(self.max_retry_after, "RetryPolicy.max_retry_after")

    def next_delay(self, attempt: int, u: float) -> float:
        """Full jitter: ``u`` times the capped exponential ceiling for ``attempt`` (1 = after the first attempt)."""
        require(attempt >= 1, "attempt", f"{attempt!r} is not an attempt number", "count attempts from 1")
        require(0.0 <= u < 1.0, "u", f"{u!r} is not a draw from [0, 1)", "pass random.random()")
        try:
            ceiling = min(self.cap, self.base_delay * self.multiplier ** (attempt - 1))
        except OverflowError:
            ceiling = self.cap
        return u * ceiling

    def attempt_timeout(self, elapsed: float) -> float:
        """Seconds the next attempt may take, started ``elapsed`` seconds after the first: what the deadline
        leaves. The transport stops there, so one slow answer cannot outlast the deadline."""
        require_number(elapsed, "elapsed")
        return max(0.0, self.deadline - elapsed)

    def decide(
        self,
        outcome: Outcome,
        state: RetryState,
        *,
        elapsed: float,
        u: float,
        addresses: int = 1,
        idempotent: bool = False,
    ) -> tuple[RetryDecision, RetryState]:
        """Decide what follows ``outcome``, the end of attempt ``state.attempts + 1``.

        ``elapsed`` is seconds since the first attempt started, ``u`` a draw from [0, 1) and ``addresses`` how
        many addresses the name resolved to (a NotSent goes on at once until each was tried once). An idempotent
        request (a read, a token request) is sent again after an Ambiguous outcome, as after a NotSent.
        """
        require(addresses >= 1, "addresses", f"{addresses!r} addresses", "pass the address book's size")
        require_number(elapsed, "elapsed")
        if isinstance(outcome, Ambiguous) and outcome.unreadable and idempotent:
            return GiveUp(GiveUpReason.ANSWER_UNREADABLE, outcome), attrs.evolve(state, attempts=state.attempts + 1)
        if isinstance(outcome, Ambiguous) and idempotent:
            outcome = NotSent(f"no answer to an idempotent request, sent again: {outcome.reason}")
        streak = state.not_sent_streak + 1 if isinstance(outcome, NotSent) else 0
        untrusted = state.untrusted_streak + 1 if isinstance(outcome, NotSent) and outcome.untrusted else 0
        state = attrs.evolve(state, attempts=state.attempts + 1, not_sent_streak=streak, untrusted_streak=untrusted)
        decision: RetryDecision
        if isinstance(outcome, Accepted):
            decision = Done(outcome.message_id)
        elif isinstance(outcome, Rejected):
            decision = GiveUp(GiveUpReason.REJECTED, outcome)
        elif isinstance(outcome, CredentialsRejected):
            decision = GiveUp(GiveUpReason.CREDENTIALS_REJECTED, outcome)
        elif isinstance(outcome, Ambiguous):
            decision = Reconcile(outcome)
        elif state.untrusted_streak >= addresses:
            decision = GiveUp(GiveUpReason.CERTIFICATE_UNTRUSTED, outcome)
        elif isinstance(outcome, TokenInvalid) and state.refreshed:
            decision = GiveUp(GiveUpReason.TOKEN_INVALID_AGAIN, outcome)
        elif state.attempts >= self.max_attempts:
            decision = GiveUp(GiveUpReason.ATTEMPTS_EXHAUSTED, outcome)
        elif isinstance(outcome, TokenInvalid):
            decision = RefreshToken(outcome) if elapsed < self.deadline else GiveUp(GiveUpReason.DEADLINE, outcome)
            state = attrs.evolve(state, refreshed=True)
        else:
            decision = self._wait(outcome, state, elapsed=elapsed, u=u, addresses=addresses)
        return decision, state

    def _wait(
        self, outcome: NotSent | Transient, state: RetryState, *, elapsed: float, u: float, addresses: int
    ) -> Retry | GiveUp:
        if isinstance(outcome, Transient) and outcome.retry_after is not None:
            if outcome.retry_after > self.max_retry_after:
                return GiveUp(GiveUpReason.RETRY_AFTER_TOO_LONG, outcome)
            delay = max(0.0, outcome.retry_after)
        elif isinstance(outcome, NotSent) and state.not_sent_streak % addresses:
            delay = 0.0
        elif isinstance(outcome, NotSent):
            delay = self.next_delay(state.not_sent_streak // addresses, u)
        else:
            delay = self.next_delay(state.attempts, u)
        if elapsed + delay >= self.deadline:
            return GiveUp(GiveUpReason.DEADLINE, outcome)
        return Retry(delay, outcome)


@attrs.frozen
class RetryBudget:
    """A token bucket shared by one client: each retry spends a token, time and successes put them back.

    First attempts never need the budget; when Flowmailer is down the bucket runs dry and retries stop, so a
    client never multiplies its load on a struggling service.
    """

    capacity: float = 10.0
    refill_per_second: float = 0.2
    #: Tokens a success puts back: 0.1 lets about one retry in ten requests through when time alone cannot.
    deposit_per_success: float = 0.1
    tokens: float = attrs.field(default=attrs.Factory(lambda self: self.capacity, takes_self=True))
    #: When ``tokens`` was last brought up to date; None until the first use.
    updated_at: float | None = None

    def __attrs_post_init__(self) -> None:
        require_number(self.capacity, "RetryBudget.capacity", minimum=1.0)
        require_number(self.refill_per_second, "RetryBudget.refill_per_second")
        require_number(self.deposit_per_success, "RetryBudget.deposit_per_success")
        require(
            math.isfinite(self.tokens) and 0.0 <= self.tokens <= self.capacity,
            "RetryBudget.tokens",
            f"{self.tokens!r} is outside [0, capacity]",
            "leave it out to start full",
        )

    def _at(self, now: float) -> RetryBudget:
        """The bucket refilled up to ``now`` (a clock that runs backwards refills nothing)."""
        if self.updated_at is None:
            return attrs.evolve(self, updated_at=now)
        if now <= self.updated_at:
            return self
        gained = (now - self.updated_at) * self.refill_per_second
        return attrs.evolve(self, tokens=min(self.capacity, self.tokens + gained), updated_at=now)

    def try_spend(self, now: float) -> tuple[bool, RetryBudget]:
        """Take one token for a retry if there is one; ``(False, ...)`` means: do not retry."""
        current = self._at(now)
        if current.tokens < 1.0:
            return False, current
        return True, attrs.evolve(current, tokens=current.tokens - 1.0)

    def deposit(self, now: float) -> RetryBudget:
        """Record a success."""
        current = self._at(now)
        return attrs.evolve(current, tokens=min(self.capacity, current.tokens + self.deposit_per_success))

    def admit(self, decision: RetryDecision, now: float) -> tuple[RetryDecision, RetryBudget]:
        """Apply the budget to a decision: a Retry spends a token or becomes GiveUp(BUDGET_EMPTY); Done deposits.

        Token refreshes and reconciliations resend nothing blindly, so they spend nothing.
        """
        if isinstance(decision, Done):
            return decision, self.deposit(now)
        if isinstance(decision, Retry):
            allowed, budget = self.try_spend(now)
            return (decision if allowed else GiveUp(GiveUpReason.BUDGET_EMPTY, decision.outcome)), budget
        return decision, self


def error_for(
    decision: Reconcile | GiveUp,
    *,
    operation: str,
    host: Host,
    hostname: str,
    attempts: int,
    client_id: str,
    reference: str | None = None,
) -> FlowmailerError:
    """The error a client raises for a final decision about a request to ``hostname``: one wording for both shells."""
    if isinstance(decision, Reconcile):
        return AmbiguousError(
            f"{operation}: the request was written but no answer came ({decision.outcome.reason}); Flowmailer "
            f"may have accepted it. Look for tag {reference!r} with messages_by_tag before sending it again.",
            client_reference=reference,
        )
    outcome = decision.outcome
    if isinstance(outcome, Rejected):
        return RejectedError(outcome.status, outcome.errors)
    if isinstance(outcome, CredentialsRejected):
        return AuthenticationError(client_id, outcome.detail)
    if decision.reason is GiveUpReason.CERTIFICATE_UNTRUSTED:
        assert isinstance(outcome, NotSent)
        return CertificateError(hostname, attempts, outcome.reason)
    if decision.reason is GiveUpReason.TOKEN_INVALID_AGAIN:
        return TransientError(
            f"{operation}: {hostname} refused a token issued moments ago as invalid_token, twice in a row (revoked "
            "or expired early); the credentials themselves were accepted. Nothing was accepted; try again later "
            "(the outbox does this for you)."
        )
    if decision.reason is GiveUpReason.ANSWER_UNREADABLE:
        return ProtocolError(
            f"{operation}: {hostname} gave an answer Flowmailer's API never gives ({outcome!r}); it was not read "
            "and not asked for again. A proxy in between, or a server that is not Flowmailer, is the likely cause: "
            "check api_url and login_url."
        )
    retry_after = outcome.retry_after if isinstance(outcome, Transient) else None
    if host is Host.LOGIN:
        return TransientError(
            f"the token request to {hostname} gave up after {attempts} attempt(s) ({decision.reason.value}); the "
            f"last one ended in {outcome!r}. Nothing was sent to the API. Check that {hostname} resolves and is "
            "reachable from here (DNS, firewall, proxy) and that login_url is right; then try again.",
            retry_after=retry_after,
        )
    return TransientError(
        f"{operation} gave up after {attempts} attempt(s) ({decision.reason.value}); the last one ended in "
        f"{outcome!r}. Flowmailer did not accept it; try again later (the outbox does this for you).",
        retry_after=retry_after,
    )
