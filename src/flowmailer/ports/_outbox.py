"""The durable queue between the application and the relay."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from flowmailer.core import Claim, OutboxId, OutboxStatus, Settlement, SubmissionState, SubmitMessage, TraceContext

__all__ = ["Outbox"]


class Outbox(Protocol):
    """Holds every message from ``enqueue`` until Flowmailer accepted it or it is declared dead.

    Times (``at``, leases, ages) are seconds, read against the outbox's own Clock. Outcomes are fenced: ``settle``
    answers a claim whose row has since been claimed again and writes nothing for it; ``resend`` raises
    ``LeaseLostError`` for one. Bad input raises ``ConfigurationError`` and writes nothing; storage failures raise
    ``OutboxError``. ``flowmailer.core.SingleClaimOutcomes`` adds ``mark_accepted``, ``mark_dead`` and the like,
    each one ``settle``, to an outbox class that wants them.
    """

    def enqueue(
        self, message: SubmitMessage, *, dedupe_key: str | None = None, trace_context: TraceContext | None = None
    ) -> OutboxId:
        """Durable when it returns. The same ``dedupe_key`` again returns the first id and stores nothing.

        The row keeps ``trace_context`` (by default the caller's current OpenTelemetry span's, if any), and its
        claims carry it, so that the relay's spans for the message join the enqueuing code's trace.
        """
        ...

    def enqueue_many(
        self, messages: Iterable[SubmitMessage], *, trace_context: TraceContext | None = None
    ) -> list[OutboxId]:
        """All or nothing, in one transaction: the fast path for batches. Every row keeps ``trace_context``."""
        ...

    def claim(self, owner: str, limit: int, lease: float) -> list[Claim]:
        """Lease up to ``limit`` due rows to ``owner``, oldest due first.

        Rows whose lease ran out while in flight come back RECONCILING (``must_reconcile``), as do rows scheduled
        for reconciliation.
        """
        ...

    def renew(self, claims: Sequence[Claim], lease: float) -> frozenset[OutboxId]:
        """Extend the leases still held; the ids missing from the answer were lost to another claim."""
        ...

    def settle(self, settlements: Sequence[Settlement]) -> list[Claim]:
        """Record many claims' outcomes in one transaction, so one flush to disk covers them all (group commit).

        Durable when it returns. Answers the claims that no longer held their rows: nothing was written for those,
        and the others were recorded. A batch with a value that is not a Settlement, or with one claim twice,
        raises ``ConfigurationError`` and writes nothing.
        """
        ...

    def resend(self, claim: Claim, lease: float) -> Claim:
        """Reconciliation found no such message at Flowmailer: the same owner sends it now, as a new claim.

        The row becomes IN_FLIGHT again, so a relay that dies mid-send leaves it to be reconciled, not resent.
        """
        ...

    def requeue_dead(self, ids: Iterable[OutboxId] | None = None) -> int:
        """Give dead letters (all of them, or these) a fresh start; an id that is not dead writes nothing."""
        ...

    def status(self, outbox_id: OutboxId) -> OutboxStatus | None: ...

    def dead_letters(self, limit: int, after: OutboxId | None = None) -> list[OutboxStatus]:
        """Up to ``limit`` dead letters in id order (oldest enqueued first), those after the id ``after`` only.

        Page through them all by passing the last id of one page as ``after`` of the next.
        """
        ...

    def find(
        self, *, client_reference: str | None = None, recipient: str | None = None, limit: int = 50
    ) -> list[OutboxStatus]:
        """The message with this client reference (one at most), or up to ``limit`` to this recipient address
        (compared without regard to case), newest first. Give exactly one of the two.

        For an operator's questions (`flowmailer status --reference / --recipient`), not for a hot path: a lookup
        by recipient may read every row.
        """
        ...

    def counts(self) -> dict[SubmissionState, int]:
        """Rows per state, every state present."""
        ...

    def oldest_pending(self) -> float | None:
        """When the oldest message not yet accepted or dead joined the queue (enqueued, or requeued as a dead letter
        since), on the outbox's clock; None when there is none. For a gauge of how far behind the relays are."""
        ...

    def prune_accepted(self, older_than: float) -> int:
        """Delete accepted rows older than ``older_than`` seconds (their dedupe keys go with them)."""
        ...

    def wait_for_work(self, timeout: float) -> bool:
        """Return as soon as a row may be due (True), or after ``timeout`` seconds with none (False)."""
        ...

    def close(self) -> None: ...
