"""The outbox's values and decisions, shared by every outbox adapter and the in-memory fake."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal, TypeAlias

import attrs

from flowmailer.core._checks import check_instances, check_time, require
from flowmailer.core._errors import ConfigurationError, FlowmailerError
from flowmailer.core._lifecycle import SubmissionEvent, SubmissionState, transition
from flowmailer.core._models import ErrorDetail, SubmitMessage

__all__ = [
    "REFERENCE_PREFIX",
    "Claim",
    "LeaseLostError",
    "OutboxError",
    "OutboxId",
    "OutboxStatus",
    "SettleKind",
    "Settlement",
    "SingleClaimOutcomes",
    "TraceContext",
    "claimed_state",
    "duplicate_reference",
    "errors_from_json",
    "errors_to_json",
    "idle_wait",
    "not_dead",
    "outcome_state",
    "release_state",
    "requeue_state",
    "send_count",
    "tag_message",
    "trace_from_json",
    "trace_to_json",
    "unreadable",
]

#: An outbox row's identity: assigned at enqueue, never reused.
OutboxId: TypeAlias = int

#: The outbox tags each message ``ref:<client reference>`` at enqueue, whatever prefix a Client adds its own with:
#: the relay searches by the tag the stored message carries.
REFERENCE_PREFIX = "ref:"


class OutboxError(FlowmailerError):
    """The outbox's storage failed (disk, lock timeout, lost database connection); the operation may not have run."""


class LeaseLostError(FlowmailerError):
    """An outcome was recorded for a claim that no longer holds its row; the row was left as it was."""

    def __init__(self, outbox_id: OutboxId, owner: str) -> None:
        self.outbox_id = outbox_id
        self.owner = owner
        super().__init__(
            f"outbox row {outbox_id} is no longer held by this claim of {owner!r}: its lease ran out and it was "
            "claimed again (the new owner reconciles it with Flowmailer before any resend), or its outcome was "
            "already recorded. Nothing was changed; renew leases well before they run out."
        )


#: W3C Trace Context's traceparent: version, trace id, parent span id, flags (lower-case hex).
_TRACEPARENT = re.compile(r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
#: W3C's limit on what a tracestate must be propagated with; a longer one may be cut by any party.
_MAX_TRACESTATE = 512


def _check_traceparent(_: object, __: object, value: Any) -> None:
    if not isinstance(value, str) or not _TRACEPARENT.fullmatch(value):
        raise ConfigurationError(
            "trace_context.traceparent",
            f"{value!r} is not a W3C traceparent",
            "give the header's value, like '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'",
        )


def _check_tracestate(_: object, __: object, value: Any) -> None:
    if not isinstance(value, str) or len(value) > _MAX_TRACESTATE or any(c in value for c in "\r\n"):
        raise ConfigurationError(
            "trace_context.tracestate",
            f"is not one line of at most {_MAX_TRACESTATE} characters",
            "give the tracestate header's value, or '' for none",
        )


@attrs.frozen
class TraceContext:
    """The W3C trace context of the code that enqueued a message, stored with its row: its submit spans' parent."""

    traceparent: str = attrs.field(validator=_check_traceparent)
    tracestate: str = attrs.field(default="", validator=_check_tracestate)


def trace_to_json(trace: TraceContext | None) -> str | None:
    """The trace context as stored in its row: the W3C carrier, as JSON; None for none."""
    if trace is None:
        return None
    carrier = {"traceparent": trace.traceparent, "tracestate": trace.tracestate}
    return json.dumps({k: v for k, v in carrier.items() if v})


def trace_from_json(text: str | None) -> TraceContext | None:
    """The stored trace context; one that does not read back is dropped, never a reason to hold the message up."""
    if not text:
        return None
    try:
        carrier = json.loads(text)
        return TraceContext(carrier["traceparent"], carrier.get("tracestate", ""))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


@attrs.frozen
class Claim:
    """A row leased to one owner until ``lease_until``; only this claim may record the row's outcome."""

    id: OutboxId
    message: SubmitMessage
    client_reference: str
    #: The row's state before this claim: IN_FLIGHT means a relay lost its lease, maybe mid-request.
    claimed_from: SubmissionState
    #: How many times the message was sent, this claim included if it sends: searches and releases do not count.
    attempts: int
    enqueued_at: float
    #: When an operator last requeued the row as a dead letter; None if never.
    requeued_at: float | None
    #: The reason given with the last retry or reconcile; None before the first.
    last_reason: str | None
    owner: str
    lease_until: float
    #: Fencing token: bumped by every claim, so an outcome from a lost lease cannot overwrite the new owner's.
    token: int
    #: The enqueuing code's trace context, if it had one: the parent of the relay's spans for this claim.
    trace_context: TraceContext | None = None

    @property
    def state(self) -> SubmissionState:
        """The row's state while claimed: IN_FLIGHT to send, RECONCILING to ask Flowmailer first."""
        return claimed_state(self.claimed_from)

    @property
    def age_from(self) -> float:
        """Where ``max_age`` counts from: a requeue is an operator's decision to try again, so it restarts the age."""
        return self.enqueued_at if self.requeued_at is None else max(self.enqueued_at, self.requeued_at)

    @property
    def must_reconcile(self) -> bool:
        """Flowmailer may have the message already: search by client reference before any resend."""
        return self.state is SubmissionState.RECONCILING

    @property
    def tag(self) -> str:
        """The tag the stored message carries its client reference in, which a search by tag finds."""
        return f"{REFERENCE_PREFIX}{self.client_reference}"


@attrs.frozen
class OutboxStatus:
    """What the outbox knows about one message."""

    id: OutboxId
    state: SubmissionState
    client_reference: str
    dedupe_key: str | None
    attempts: int
    enqueued_at: float
    #: When an operator last requeued it as a dead letter; None if never.
    requeued_at: float | None
    updated_at: float
    #: When the row is next due: the retry or reconcile time, or the lease end while claimed; None once final.
    due_at: float | None
    #: Flowmailer's message id, once accepted.
    message_id: str | None
    last_reason: str | None
    #: Flowmailer's ``allErrors`` for a dead letter.
    errors: tuple[ErrorDetail, ...] = ()


def send_count(claimed_from: SubmissionState) -> int:
    """1 if a claim from this state sends the message, 0 if it only searches: ``max_attempts`` counts sends."""
    return int(claimed_state(claimed_from) is SubmissionState.IN_FLIGHT)


def claimed_state(state: SubmissionState) -> SubmissionState:
    """The state of a due row once claimed: a lapsed in-flight lease means the request may have gone out."""
    if state is SubmissionState.IN_FLIGHT:
        return transition(state, SubmissionEvent.LEASE_EXPIRED)
    if state is SubmissionState.RECONCILING:
        return state  # a new lease on the same reconciliation, not a lifecycle event
    return transition(state, SubmissionEvent.CLAIM)


#: The lifecycle event each way of settling a claim stands for, for a send (IN_FLIGHT) and a reconciliation.
_SETTLE_EVENTS = {
    "accepted": (SubmissionEvent.ACCEPT, SubmissionEvent.FOUND),
    "retry": (SubmissionEvent.RETRY, SubmissionEvent.RETRY),
    "reconcile": (SubmissionEvent.AMBIGUOUS, SubmissionEvent.RETRY),
    "dead": (SubmissionEvent.GIVE_UP, SubmissionEvent.GIVE_UP),
    "resend": (SubmissionEvent.NOT_FOUND, SubmissionEvent.NOT_FOUND),
}

#: The ways a claim can be settled (a resend is not one: it leases the row again, see ``Outbox.resend``).
SettleKind: TypeAlias = Literal["accepted", "retry", "reconcile", "dead", "release"]


def outcome_state(claim: Claim, outcome: SettleKind | Literal["resend"]) -> SubmissionState:
    """The row's next state; an outcome the lifecycle forbids (a resend of a send) raises LifecycleError."""
    if outcome == "release":
        return release_state(claim)
    send, reconcile = _SETTLE_EVENTS[outcome]
    state = transition(claim.state, reconcile if claim.must_reconcile else send)
    return claimed_state(state) if outcome == "resend" else state


@attrs.frozen
class Settlement:
    """One claim's outcome, recorded with others in one transaction by ``Outbox.settle`` (the relay's group commit).

    Build it with the class methods; a value that exists is a legal move of the lifecycle with a valid time.
    """

    claim: Claim
    kind: SettleKind
    #: When the row is due again, for a retry or a reconciliation.
    at: float | None = None
    message_id: str | None = None
    reason: str | None = None
    errors: tuple[ErrorDetail, ...] = ()

    def __attrs_post_init__(self) -> None:
        outcome_state(self.claim, self.kind)

    @classmethod
    def accepted(cls, claim: Claim, message_id: str) -> Settlement:
        return cls(claim, "accepted", message_id=message_id)

    @classmethod
    def retry(cls, claim: Claim, at: float, reason: str) -> Settlement:
        """Not accepted, try again at ``at``: a send is sent again, a reconciliation asks again."""
        return cls(claim, "retry", at=check_time(at), reason=reason)

    @classmethod
    def reconcile(cls, claim: Claim, at: float, reason: str) -> Settlement:
        """Flowmailer may have the message: ask it by client reference at ``at`` before any resend."""
        return cls(claim, "reconcile", at=check_time(at), reason=reason)

    @classmethod
    def dead(cls, claim: Claim, reason: str, errors: Sequence[ErrorDetail] = ()) -> Settlement:
        return cls(claim, "dead", reason=reason, errors=tuple(errors))

    @classmethod
    def release(cls, claim: Claim) -> Settlement:
        """Graceful shutdown: due again at once, a send back to QUEUED, and its send not counted as an attempt."""
        return cls(claim, "release")

    @classmethod
    def check_batch(cls, settlements: Iterable[object]) -> list[Settlement]:
        """Refuse anything but Settlement values, and a claim settled twice, before a single row is written."""
        fix = "build it with Settlement.accepted(claim, message_id), Settlement.retry(claim, at, reason), ..."
        checked = check_instances(settlements, cls, "settlements", fix)
        seen = set()
        for i, settlement in enumerate(checked):
            key = (settlement.claim.id, settlement.claim.token)
            require(key not in seen, f"settlements[{i}]", f"settles row {key[0]}'s claim again", "settle a claim once")
            seen.add(key)
        return checked

    @property
    def state(self) -> SubmissionState:
        return outcome_state(self.claim, self.kind)

    @property
    def may_be_accepted(self) -> bool:
        """A dead letter given up while reconciling: an earlier send may have reached Flowmailer."""
        return self.kind == "dead" and self.claim.must_reconcile

    @property
    def unsent(self) -> int:
        """1 for a released send, whose attempt is given back; a reconciliation's claim never counted one."""
        return int(self.kind == "release" and not self.claim.must_reconcile)

    def due_at(self, now: float) -> float | None:
        """When the row is next due: at once after a release, at ``at`` after a retry or reconcile, else never."""
        return now if self.kind == "release" else self.at


class SingleClaimOutcomes:
    """One-claim shorthands over ``settle``, for code and tests that record one outcome at a time.

    Not part of the Outbox port (the relay settles in batches); the three outboxes here inherit them.
    """

    def settle(self, settlements: Sequence[Settlement]) -> list[Claim]:
        raise NotImplementedError

    def mark_accepted(self, claim: Claim, message_id: str) -> None:
        self._one(Settlement.accepted(claim, message_id))

    def schedule_retry(self, claim: Claim, at: float, reason: str) -> None:
        self._one(Settlement.retry(claim, at, reason))

    def schedule_reconcile(self, claim: Claim, at: float, reason: str) -> None:
        self._one(Settlement.reconcile(claim, at, reason))

    def mark_dead(self, claim: Claim, reason: str, errors: Sequence[ErrorDetail] = ()) -> None:
        self._one(Settlement.dead(claim, reason, errors))

    def release(self, claim: Claim) -> None:
        self._one(Settlement.release(claim))

    def _one(self, settlement: Settlement) -> None:
        """A lost lease raises LeaseLostError here, where ``settle`` answers it."""
        if self.settle([settlement]):
            raise LeaseLostError(settlement.claim.id, settlement.claim.owner)


def unreadable(claimed_from: SubmissionState, error: Exception) -> tuple[SubmissionState, str]:
    """A stored message that no longer decodes is claimed and given up at once: one bad row must not stop the queue.

    It happens when a row was damaged, or when a newer SubmitMessage refuses what an older version stored.
    """
    reason = f"the stored message cannot be read ({error}); enqueue it again from its source"
    return transition(claimed_state(claimed_from), SubmissionEvent.GIVE_UP), reason


def release_state(claim: Claim) -> SubmissionState:
    """A released send goes back to the queue; a released reconciliation stays one."""
    return claim.state if claim.must_reconcile else transition(claim.state, SubmissionEvent.RELEASE)


def requeue_state(may_be_accepted: bool) -> SubmissionState:
    """Where a requeued dead letter goes: to a search by tag first if Flowmailer may have it, else to the queue."""
    event = SubmissionEvent.REQUEUE_TO_RECONCILE if may_be_accepted else SubmissionEvent.REQUEUE
    return transition(SubmissionState.DEAD, event)


def tag_message(message: SubmitMessage, new_reference: str) -> tuple[SubmitMessage, str]:
    """The message as stored, tagged with its client reference: its own if it has one, else ``new_reference``."""
    reference = message.client_reference(REFERENCE_PREFIX)
    if reference is not None:
        return message, reference
    return message.with_client_reference(new_reference, REFERENCE_PREFIX), new_reference


def duplicate_reference(reference: str) -> ConfigurationError:
    return ConfigurationError(
        "message",
        f"client reference {reference!r} is already in the outbox",
        "give each message its own client reference, or use dedupe_key to enqueue one message once",
    )


def not_dead(outbox_id: OutboxId, state: SubmissionState | None) -> ConfigurationError:
    found = "unknown" if state is None else state.name
    return ConfigurationError(
        "ids", f"outbox row {outbox_id} is {found}, not DEAD", "requeue only ids that status() reports as DEAD"
    )


def errors_to_json(errors: Sequence[ErrorDetail]) -> str:
    """Flowmailer's ``allErrors`` for storage next to a dead letter."""
    return json.dumps([attrs.asdict(e) for e in errors], default=repr)


def errors_from_json(text: str | None) -> tuple[ErrorDetail, ...]:
    if not text:
        return ()
    return tuple(ErrorDetail(**{**item, "arguments": tuple(item["arguments"])}) for item in json.loads(text))


def idle_wait(now: float, next_due: float | None, left: float, poll: float) -> float:
    """How long an idle relay sleeps before it looks again: never past its deadline or the next due row."""
    return min(left, poll, *(() if next_due is None else (max(next_due - now, 0.0),)))
