"""The relay's accounting, shared by the threaded and the async relay: when to claim and how many, what it holds,
its leases, the circuit breaker's permits and its one probe, what a stop hands back, and the counts.

One mutable object per relay run, as h11's ``Connection`` is per connection: the shell asks it what to do next,
performs that with its outbox and clients, and tells it what happened. Pure: the shell passes in the time and
does every wait itself. A threaded shell calls it under its lock; an async shell from its one event loop.
"""

from __future__ import annotations

import collections
import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

import attrs

from flowmailer.core._breaker import CircuitBreaker, Permit, says_down
from flowmailer.core._errors import FlowmailerError
from flowmailer.core._outbox import Claim, OutboxId
from flowmailer.core._outcomes import Transient
from flowmailer.core._relay import Cause, Halt, ReconcileAt, RecordAccepted, RelayDecision, RetryAt, lease_allows_send
from flowmailer.core._relay import outcome_of as _outcome_of

__all__ = [
    "ClaimPlan",
    "ClaimUpTo",
    "Claimer",
    "Handled",
    "HoldOff",
    "Idle",
    "Observed",
    "RelayStats",
    "SendCheck",
]

#: What a claim came to: the claim and the decision to record (None: release it unsent), or None (dropped unsent).
Handled: TypeAlias = tuple[Claim, RelayDecision | None] | None


@attrs.frozen
class RelayStats:
    """What one relay did since it started; the observer receives the same as events."""

    claimed: int = 0
    #: Accepted messages, reconciled ones included.
    accepted: int = 0
    #: Accepted because a search by tag found them after an ambiguous send or a lost relay.
    reconciled: int = 0
    #: Extra copies a search found at Flowmailer (0 unless a reconciliation came too late).
    duplicates: int = 0
    #: Later sends and searches scheduled, by cause.
    retries: Mapping[Cause, int] = attrs.field(factory=dict)
    dead: int = 0
    #: Decisions that could not be recorded: the lease was lost to another relay, or the outbox failed.
    not_recorded: int = 0
    #: Claims handed back at a graceful stop (or after the credentials were refused), and while the circuit breaker
    #: was open: those waiting for a worker, and sends that failed then (the breaker, not the row, says when next).
    released: int = 0
    #: Claims still in flight when the stop timeout ran out; their leases expire and they are reconciled.
    abandoned: int = 0
    #: Claims, counts or waits that failed in the outbox; the relay kept going.
    outbox_errors: int = 0
    #: Now, not a total: claims held (sending, waiting for a worker, or being recorded) and those being sent.
    holding: int = 0
    sending: int = 0


@attrs.frozen
class ClaimUpTo:
    """Claim at most ``limit`` rows; with ``probe``, the half-open breaker's one probe. Report with ``claimed``."""

    limit: int
    probe: bool = False


@attrs.frozen
class HoldOff:
    """The breaker is open: claim nothing. ``cooling``: seconds until a probe may go (wait them on the clock); 0
    while the probe is out (wait for it to end)."""

    cooling: float


@attrs.frozen
class Idle:
    """Nothing to claim now: with ``busy``, wait for a claim to end; else wait for work in the outbox (or, draining,
    ask whether any is left)."""

    busy: bool


ClaimPlan: TypeAlias = ClaimUpTo | HoldOff | Idle


class SendCheck(enum.Enum):
    """May a send start on a claim now?"""

    #: More than a third of the lease is left.
    SEND = "send"
    #: Too little is left: renew it (``renewed``), then send only if it was kept.
    RENEW = "renew"
    #: A renewal already said the lease is lost: drop the claim unsent.
    DROP = "drop"


@attrs.frozen
class Observed:
    """What the end of one request to Flowmailer did to the breaker."""

    #: It opened (log it) or closed (log that Flowmailer answers again).
    opened: bool = False
    closed: bool = False
    #: This request failed while the breaker is open: the breaker, not the row's backoff, says when it goes next.
    failed_while_open: bool = False
    #: Claims that were waiting for a sender when it opened, taken off the queue: settle each as a release.
    unstarted: tuple[Claim, ...] = ()


class Claimer:
    """What a relay holds and what it does next, given the time.

    ``limit`` senders at once (the relay's concurrency: at most that many claims between ``take`` and ``handled``);
    it may be changed between calls. The claimer keeps up to ``batch_size`` claims waiting beyond the senders and
    claims again once half a batch fits, so senders rarely wait for the outbox; decisions waiting to be recorded
    count as room up to one batch, so a recorder behind on its settles holds claiming back. Every lease is renewed
    each third of ``lease``; a send starts only with more than a third of its lease left (``lease_allows_send``).
    """

    def __init__(self, *, limit: int, batch_size: int, lease: float, breaker: CircuitBreaker) -> None:
        self.limit = limit
        self.batch_size = batch_size
        self.lease = lease
        self.breaker = breaker
        #: Claimed and not yet settled, by row.
        self.held: dict[OutboxId, Claim] = {}
        #: Claimed, not yet started.
        self.queue: collections.deque[Claim] = collections.deque()
        #: Taken by a sender and not yet handled.
        self.sending = 0
        #: Handled, waiting for the outbox to record their decision: they no longer take a sender's place.
        self.recording = 0
        #: Stopping: nothing more is claimed or taken.
        self.stopping = False
        self.renew_at = math.inf
        self._lease_end: dict[OutboxId, float] = {}
        self._probe: OutboxId | None = None
        self._counts: collections.Counter[str] = collections.Counter()
        self._retries: collections.Counter[Cause] = collections.Counter()

    @property
    def renew_every(self) -> float:
        return self.lease / 3

    @property
    def busy(self) -> bool:
        return bool(self.held)

    def start(self, now: float) -> None:
        """A run begins at monotonic ``now``: the first renewal is a third of a lease away."""
        self.stopping = False
        self.renew_at = now + self.renew_every

    # -- claiming ------------------------------------------------------------------------------------------------

    def plan(self, now: float) -> ClaimPlan:
        """Claim how many, or why not: the room left for senders and a batch waiting, and the breaker's permit."""
        permit, self.breaker = self.breaker.admit(now)
        if self.stopping:
            if permit is Permit.PROBE:
                self.breaker = self.breaker.withdraw_probe()
            return Idle(self.busy)
        if permit is Permit.HOLD:  # Flowmailer looks down: claim nothing, so the rows stay queued
            return HoldOff(self.breaker.wait(now))
        # Claims being recorded no longer take a sender's place, up to a batch of them: decisions piling up beyond
        # that hold claims back, so the recorder gets the outbox (one fsync a batch, not a backlog a crash leaves to
        # reconcile) and what is held stays under limit + 2 x batch_size.
        room = self.limit + self.batch_size - len(self.held) + min(self.recording, self.batch_size)
        if permit is Permit.PROBE:
            if room >= 1:
                return ClaimUpTo(1, probe=True)
            self.breaker = self.breaker.withdraw_probe()
        elif room >= max(1, self.batch_size // 2):
            return ClaimUpTo(min(room, self.batch_size))
        return Idle(self.busy)

    def claimed(self, claims: Sequence[Claim], *, probe: bool = False) -> None:
        """The outbox leased these (maybe none) for a ``ClaimUpTo``; a probe that found nothing is withdrawn."""
        for claim in claims:
            self.held[claim.id] = claim
            self._lease_end[claim.id] = claim.lease_until
            self.queue.append(claim)
        self._counts["claimed"] += len(claims)
        if probe:
            self._probe = claims[0].id if claims else None
            if not claims:
                self.breaker = self.breaker.withdraw_probe()

    def take(self) -> Claim | None:
        """The next claim for a sender, while fewer than ``limit`` are sending and the relay is not stopping."""
        if self.stopping or not self.queue or self.sending >= self.limit:
            return None
        self.sending += 1
        return self.queue.popleft()

    # -- leases --------------------------------------------------------------------------------------------------

    def renewal(self, now: float) -> list[Claim] | None:
        """The claims whose leases to renew at monotonic ``now`` (all held), or None when no renewal is due."""
        if now < self.renew_at:
            return None
        self.renew_at = now + self.renew_every
        return list(self.held.values())

    def until_renewal(self, now: float, most: float) -> float:
        """How long a wait may last at ``now`` (at most ``most``) and still renew on time."""
        return max(0.0, min(most, self.renew_at - now))

    def renewed(self, claims: Iterable[Claim], kept: frozenset[OutboxId], until: float) -> list[Claim]:
        """The outbox extended ``kept`` of ``claims`` to wall time ``until``. The others are lost: those not yet
        started are dropped (returned, to be reported unrecorded), those a sender took must not start a send."""
        lost = []
        for claim in claims:
            if claim.id in kept:
                self._lease_end[claim.id] = until
            elif claim in self.queue:
                self.queue.remove(claim)
                self._forget(claim)
                lost.append(claim)
            elif self.held.get(claim.id) is claim:
                self._lease_end[claim.id] = -math.inf
        self._counts["not_recorded"] += len(lost)
        return lost

    def send_check(self, claim: Claim, now: float) -> SendCheck:
        """Never send on a lease about to run out at wall time ``now`` (a stalled relay): renew first, or drop."""
        end = self._lease_end.get(claim.id, claim.lease_until)
        if lease_allows_send(end - now, self.lease):
            return SendCheck.SEND
        return SendCheck.RENEW if end > -math.inf else SendCheck.DROP

    def resent(self, fresh: Claim) -> None:
        """The row was taken back in flight under a new claim (``TakeBack``): hold that one."""
        self.held[fresh.id] = fresh
        self._lease_end[fresh.id] = fresh.lease_until

    # -- the breaker ---------------------------------------------------------------------------------------------

    def observed(self, claim: Claim, value: object, *, started: float, now: float) -> Observed:
        """A request for ``claim`` begun at ``started`` ended at ``now`` with ``value`` (what was fed back for it).
        On opening, the claims waiting for a sender are handed back unsent."""
        result = _outcome_of(value) if isinstance(value, FlowmailerError) else value
        down = says_down(result)
        was_open = self.breaker.open_until is not None
        if self._probe == claim.id:
            self._probe = None
        if down:
            after = result.retry_after if isinstance(result, Transient) else None
            self.breaker = self.breaker.failed(now, started_at=started, retry_after=after)
        else:
            self.breaker = self.breaker.succeeded(now)
        is_open = self.breaker.open_until is not None
        unstarted: tuple[Claim, ...] = ()
        if is_open and not was_open:
            unstarted = tuple(self.queue)
            self.queue.clear()
        return Observed(
            opened=is_open and not was_open,
            closed=was_open and not is_open,
            failed_while_open=down and is_open,
            unstarted=unstarted,
        )

    # -- ending --------------------------------------------------------------------------------------------------

    def handled(self, claim: Claim, handled: Handled, *, failed_while_open: bool = False) -> Handled:
        """A sender is done with ``claim``: what to settle (None: nothing, the claim is let go). A retry after a
        failure while the breaker is open is released instead, with no attempt counted: the breaker paces it."""
        self.sending -= 1
        if self._probe == claim.id:  # it ended without asking Flowmailer anything: the next claim probes
            self._probe, self.breaker = None, self.breaker.withdraw_probe()
        if handled is None:
            self._forget(claim)
            return None
        if failed_while_open and handled[1] is not None and _paced_by_breaker(handled[1]):
            handled = handled[0], None
        self.recording += handled[1] is not None
        return handled

    def settled(self, outcomes: Iterable[tuple[Claim, RelayDecision | None]]) -> None:
        """These went to the outbox (recorded or not): they are no longer held."""
        for claim, decision in outcomes:
            self._forget(claim)
            self.recording -= decision is not None

    def stop(self) -> list[Claim]:
        """Claim and take nothing more: the claims not yet started, to release."""
        self.stopping = True
        unstarted = list(self.queue)
        self.queue.clear()
        return unstarted

    def abandon(self) -> int:
        """The stop timeout ran out: what is still held is left to its leases (reconciled by a later relay)."""
        self._counts["abandoned"] += len(self.held)
        return len(self.held)

    def _forget(self, claim: Claim) -> None:
        self.held.pop(claim.id, None)
        self._lease_end.pop(claim.id, None)

    # -- counts --------------------------------------------------------------------------------------------------

    def recorded(self, decision: RelayDecision | None) -> None:
        if decision is None or isinstance(decision, Halt):
            self._counts["released"] += 1
        elif isinstance(decision, RecordAccepted):
            self._counts["accepted"] += 1
            self._counts["reconciled"] += decision.reconciled
            self._counts["duplicates"] += decision.copies - 1
        elif isinstance(decision, RetryAt | ReconcileAt):
            self._retries[decision.cause] += 1
        else:
            self._counts["dead"] += 1

    def not_recorded(self) -> None:
        self._counts["not_recorded"] += 1

    def outbox_failed(self) -> None:
        self._counts["outbox_errors"] += 1

    def stats(self) -> RelayStats:
        c = self._counts
        return RelayStats(
            claimed=c["claimed"], accepted=c["accepted"], reconciled=c["reconciled"],
            duplicates=c["duplicates"], retries=dict(self._retries), dead=c["dead"],
            not_recorded=c["not_recorded"], released=c["released"], abandoned=c["abandoned"],
            outbox_errors=c["outbox_errors"], holding=len(self.held), sending=self.sending,
        )  # fmt: skip


def _paced_by_breaker(decision: RelayDecision) -> bool:
    """A retry after a failure, or another search after a failed one: while the breaker is open it, not the row's
    own backoff, says when. An ambiguous send still waits its reconcile delay."""
    return isinstance(decision, RetryAt) or (
        isinstance(decision, ReconcileAt) and decision.cause is Cause.RECONCILE_FAILED
    )
