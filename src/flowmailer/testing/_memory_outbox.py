"""An outbox in a dict: the fake for tests of code that enqueues, and the reference the adapters are held to."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Sequence

import attrs

from flowmailer._trace import or_current
from flowmailer.core import (
    Claim,
    ErrorDetail,
    LeaseLostError,
    OutboxId,
    OutboxStatus,
    Settlement,
    SingleClaimOutcomes,
    SubmissionState,
    SubmitMessage,
    TraceContext,
    claimed_state,
    duplicate_reference,
    idle_wait,
    not_dead,
    outcome_state,
    requeue_state,
    send_count,
    tag_message,
)
from flowmailer.core._checks import (
    check_after,
    check_dedupe_key,
    check_duration,
    check_ids,
    check_limit,
    check_lookup,
    check_messages,
    check_owner,
)
from flowmailer.ports import Clock

__all__ = ["MemoryOutbox"]

_S = SubmissionState


@attrs.define
class _Row:
    id: OutboxId
    message: SubmitMessage
    client_reference: str
    dedupe_key: str | None
    enqueued_at: float
    requeued_at: float | None = None
    state: SubmissionState = _S.QUEUED
    due_at: float | None = None
    updated_at: float = 0.0
    attempts: int = 0
    owner: str | None = None
    token: int = 0
    message_id: str | None = None
    last_reason: str | None = None
    errors: tuple[ErrorDetail, ...] = ()
    may_be_accepted: bool = False
    trace_context: TraceContext | None = None


class MemoryOutbox(SingleClaimOutcomes):
    """A :class:`flowmailer.ports.Outbox` that forgets everything when the process ends. Thread-safe."""

    def __init__(self, clock: Clock, *, poll_interval: float = 0.05) -> None:
        self._clock = clock
        self._poll = check_duration(poll_interval, "poll_interval")
        self._lock = threading.Lock()
        self._rows: dict[OutboxId, _Row] = {}
        self._by_key: dict[str, OutboxId] = {}
        self._refs: set[str] = set()
        self._next_id = 1

    def enqueue(
        self, message: SubmitMessage, *, dedupe_key: str | None = None, trace_context: TraceContext | None = None
    ) -> OutboxId:
        [checked] = check_messages([message])
        key = check_dedupe_key(dedupe_key)
        trace = or_current(trace_context)
        with self._lock:
            if key is not None and key in self._by_key:
                return self._by_key[key]
            return self._insert([checked], key, trace)[0]

    def enqueue_many(
        self, messages: Iterable[SubmitMessage], *, trace_context: TraceContext | None = None
    ) -> list[OutboxId]:
        checked = check_messages(messages, "messages")
        trace = or_current(trace_context)
        with self._lock:
            return self._insert(checked, None, trace)

    def _insert(self, messages: list[SubmitMessage], key: str | None, trace: TraceContext | None) -> list[OutboxId]:
        tagged = [tag_message(m, uuid.uuid4().hex) for m in messages]
        refs = [ref for _, ref in tagged]
        clash = next((r for r in refs if r in self._refs), None)
        if clash is not None or len(set(refs)) != len(refs):
            raise duplicate_reference(clash or refs[0])
        now = self._clock.now()
        ids = []
        for message, ref in tagged:
            row = _Row(self._next_id, message, ref, key, now, due_at=now, updated_at=now, trace_context=trace)
            self._next_id += 1
            self._rows[row.id] = row
            self._refs.add(ref)
            ids.append(row.id)
        if key is not None:
            self._by_key[key] = ids[0]
        return ids

    def claim(self, owner: str, limit: int, lease: float) -> list[Claim]:
        owner = check_owner(owner)
        limit = check_limit(limit)
        lease = check_duration(lease, "lease")
        with self._lock:
            now = self._clock.now()
            due = sorted(
                (r for r in self._rows.values() if r.due_at is not None and r.due_at <= now),
                key=lambda r: (r.due_at, r.id),
            )[:limit]
            return [self._lease(row, row.state, owner, now, lease) for row in due]

    @staticmethod
    def _lease(row: _Row, claimed_from: SubmissionState, owner: str, now: float, lease: float) -> Claim:
        row.state, row.due_at, row.owner, row.updated_at = claimed_state(claimed_from), now + lease, owner, now
        row.token += 1
        row.attempts += send_count(claimed_from)
        return Claim(
            id=row.id,
            message=row.message,
            client_reference=row.client_reference,
            claimed_from=claimed_from,
            attempts=row.attempts,
            enqueued_at=row.enqueued_at,
            requeued_at=row.requeued_at,
            last_reason=row.last_reason,
            owner=owner,
            lease_until=now + lease,
            token=row.token,
            trace_context=row.trace_context,
        )

    def renew(self, claims: Sequence[Claim], lease: float) -> frozenset[OutboxId]:
        lease = check_duration(lease, "lease")
        with self._lock:
            now = self._clock.now()
            held = [self._rows[c.id] for c in claims if self._holds(c)]
            for row in held:
                row.due_at, row.updated_at = now + lease, now
            return frozenset(row.id for row in held)

    def _holds(self, claim: Claim) -> bool:
        row = self._rows.get(claim.id)
        return row is not None and row.owner is not None and row.token == claim.token

    def settle(self, settlements: Sequence[Settlement]) -> list[Claim]:
        checked = Settlement.check_batch(settlements)
        lost = []
        with self._lock:
            now = self._clock.now()
            for s in checked:
                if not self._holds(s.claim):
                    lost.append(s.claim)
                    continue
                row = self._rows[s.claim.id]
                row.state, row.due_at, row.owner, row.updated_at = s.state, s.due_at(now), None, now
                if s.message_id is not None:
                    row.message_id = s.message_id
                if s.reason is not None:
                    row.last_reason = s.reason
                if s.kind == "dead":
                    row.errors = s.errors
                row.may_be_accepted = s.may_be_accepted
                row.attempts -= s.unsent
        return lost

    def resend(self, claim: Claim, lease: float) -> Claim:
        outcome_state(claim, "resend")
        lease = check_duration(lease, "lease")
        with self._lock:
            if not self._holds(claim):
                raise LeaseLostError(claim.id, claim.owner)
            return self._lease(self._rows[claim.id], _S.QUEUED, claim.owner, self._clock.now(), lease)

    def requeue_dead(self, ids: Iterable[OutboxId] | None = None) -> int:
        wanted = None if ids is None else check_ids(ids)
        with self._lock:
            if wanted is None:
                rows = [r for r in self._rows.values() if r.state is _S.DEAD]
            else:
                rows = []
                for i in dict.fromkeys(wanted):
                    row = self._rows.get(i)
                    if row is None or row.state is not _S.DEAD:
                        raise not_dead(i, None if row is None else row.state)
                    rows.append(row)
            now = self._clock.now()
            for row in rows:
                row.state, row.due_at, row.updated_at, row.attempts = requeue_state(row.may_be_accepted), now, now, 0
                row.last_reason, row.errors, row.requeued_at = None, (), now
            return len(rows)

    def status(self, outbox_id: OutboxId) -> OutboxStatus | None:
        with self._lock:
            row = self._rows.get(outbox_id)
            return None if row is None else _status(row)

    def dead_letters(self, limit: int, after: OutboxId | None = None) -> list[OutboxStatus]:
        limit, after = check_limit(limit), check_after(after)
        with self._lock:
            dead = sorted(i for i, r in self._rows.items() if r.state is _S.DEAD and (after is None or i > after))
            return [_status(self._rows[i]) for i in dead[:limit]]

    def find(
        self, *, client_reference: str | None = None, recipient: str | None = None, limit: int = 50
    ) -> list[OutboxStatus]:
        ref, to = check_lookup(client_reference, recipient)
        limit = check_limit(limit)
        with self._lock:
            found = [
                r
                for r in self._rows.values()
                if r.client_reference == ref or (to is not None and r.message.recipient_address.lower() == to.lower())
            ]
            return [_status(r) for r in sorted(found, key=lambda r: r.id, reverse=True)[:limit]]

    def counts(self) -> dict[SubmissionState, int]:
        with self._lock:
            counts = dict.fromkeys(SubmissionState, 0)
            for row in self._rows.values():
                counts[row.state] += 1
            return counts

    def oldest_pending(self) -> float | None:
        with self._lock:
            return min((_joined(r) for r in self._rows.values() if r.state not in (_S.ACCEPTED, _S.DEAD)), default=None)

    def prune_accepted(self, older_than: float) -> int:
        older_than = check_duration(older_than, "older_than", allow_zero=True)
        with self._lock:
            cutoff = self._clock.now() - older_than
            gone = [r for r in self._rows.values() if r.state is _S.ACCEPTED and r.updated_at <= cutoff]
            for row in gone:
                del self._rows[row.id]
                self._refs.discard(row.client_reference)
                if row.dedupe_key is not None:
                    del self._by_key[row.dedupe_key]
            return len(gone)

    def wait_for_work(self, timeout: float) -> bool:
        timeout = check_duration(timeout, "timeout", allow_zero=True)
        deadline = self._clock.monotonic() + timeout
        last = False
        while True:
            with self._lock:
                now = self._clock.now()
                next_due = min((r.due_at for r in self._rows.values() if r.due_at is not None), default=None)
            if next_due is not None and next_due <= now:
                return True
            left = deadline - self._clock.monotonic()
            if last or left <= 0:
                return False
            wait = idle_wait(now, next_due, left, self._poll)
            # Having slept all that was left, look once more and stop: a remainder too small to move the clock
            # (below a float's resolution at 1.7e9) must not keep the loop going.
            last = wait >= left
            self._clock.sleep(wait)

    def close(self) -> None:
        """Nothing to release; present so the fake satisfies the port."""


def _joined(row: _Row) -> float:
    return row.enqueued_at if row.requeued_at is None else row.requeued_at


def _status(row: _Row) -> OutboxStatus:
    return OutboxStatus(
        id=row.id,
        state=row.state,
        client_reference=row.client_reference,
        dedupe_key=row.dedupe_key,
        attempts=row.attempts,
        enqueued_at=row.enqueued_at,
        requeued_at=row.requeued_at,
        updated_at=row.updated_at,
        due_at=row.due_at,
        message_id=row.message_id,
        last_reason=row.last_reason,
        errors=row.errors,
    )
