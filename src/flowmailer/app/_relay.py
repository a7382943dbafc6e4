"""The relay: drains the outbox through a client, reconciling every ambiguity before any resend.

A thin shell over ``flowmailer.core._relay``: one claimer loop (which also renews leases) and a pool of worker
threads, each of which sends or reconciles one claim and records what the core decided.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import math
import os
import queue
import random
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from types import FrameType
from typing import TypeVar

import attrs

from flowmailer.app import _defaults, _logs
from flowmailer.app._slots import SlotKeeper
from flowmailer.core import (
    AuthenticationError,
    Cause,
    CertificateError,
    CircuitBreaker,
    Claim,
    ClaimEffect,
    ConfigurationError,
    Dead,
    Event,
    Fed,
    FlowmailerError,
    Halt,
    HaltRelay,
    KeepLease,
    LeaseLostError,
    OutboxError,
    OutboxId,
    Permit,
    ReconcileAt,
    RecordAccepted,
    RejectedError,
    RelayCannotReconcile,
    RelayClaimed,
    RelayDecision,
    RelayHandled,
    RelayHandling,
    RelayNotRecorded,
    RelayOutboxFailed,
    RelayRecorded,
    RelayRules,
    RelayStopped,
    RetryAt,
    SearchByTag,
    SubmissionState,
    SubmitClaim,
    TakeBack,
    Transient,
    handle_claim,
    lease_allows_send,
    outcome_of,
    says_down,
    settlement_for,
)
from flowmailer.core._checks import check_duration
from flowmailer.ports import Clock, Observer, Outbox, Reconciler, Submitter

__all__ = ["MAX_CONCURRENCY", "Relay", "RelayStats"]

_T = TypeVar("_T")

#: Flowmailer's guidelines allow up to 10 concurrent connections; the relay never submits more at once.
MAX_CONCURRENCY = 10

#: The tag a relay searches for once at start, to learn whether its reconciler's credential may search at all.
_PROBE_TAG = "flowmailer-relay-probe"
_log = logging.getLogger(__name__)

_PENDING = (
    SubmissionState.QUEUED,
    SubmissionState.IN_FLIGHT,
    SubmissionState.RETRY_SCHEDULED,
    SubmissionState.RECONCILING,
)


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


class Relay:
    """Drains ``outbox`` through ``client`` with at most ``concurrency`` submissions at once.

    ``run()`` claims, submits, records and renews until ``stop()`` (or a signal, after
    ``install_signal_handlers()``); ``run(until_empty=True)`` / ``drain()`` also returns once nothing is left to
    send. A stop lets in-flight submissions finish for up to ``stop_timeout`` seconds and releases the rest.
    Give the client a short in-process retry policy: the outbox holds the long waits.

    ``reconciler`` searches Flowmailer by tag after an ambiguous submission (default: ``client``). Flowmailer's
    credentials carry one role each, so a least-privilege setup submits with a FEATURE_SUBMITMESSAGE credential
    and reconciles with a second ``Client`` whose credential may read messages. ``run()`` checks both credentials
    once at start: a refused one raises ``AuthenticationError`` before anything is claimed (whether or not the
    outbox holds work), and a reconciler that may not search by tag is reported (``RelayCannotReconcile``, and a
    warning on the ``flowmailer.app._relay`` logger). Every record about a message carries its outbox id, client
    reference, send attempt and (once accepted) message id as extra attributes.

    ``breaker`` (a ``CircuitBreaker``) stops the relay from sending while Flowmailer or the network is down: after
    failures in a row it claims nothing and hands back what waits for a worker, so the rows stay queued and the
    load stays at one probe per cool-down however large the backlog. A send that fails while it is open goes back
    to the queue, due at once, its attempt not counted: when a probe succeeds the whole backlog is due, and drains
    at full speed.

    ``slots`` (a ``SlotKeeper``) shares the credential's 10 connections with every relay on the same slot store
    (the outbox's database): the relay handles at most as many claims at once as the slots it holds, and its
    transport keeps no more connections open, so its concurrency follows its share while it runs.
    """

    def __init__(
        self,
        outbox: Outbox,
        client: Submitter,
        *,
        reconciler: Reconciler | None = None,
        rules: RelayRules | None = None,
        concurrency: int = MAX_CONCURRENCY,
        batch_size: int = 20,
        lease: float = 30.0,
        clock: Clock | None = None,
        observer: Observer | None = None,
        owner: str | None = None,
        rng: random.Random | None = None,
        idle_wait: float = 1.0,
        stop_timeout: float = 30.0,
        breaker: CircuitBreaker | None = None,
        slots: SlotKeeper | None = None,
    ) -> None:
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ConfigurationError(
                "concurrency",
                f"{concurrency!r} is not between 1 and {MAX_CONCURRENCY}",
                "Flowmailer's guidelines allow at most 10 concurrent submissions; give 1 to 10",
            )
        if batch_size < 1:
            raise ConfigurationError("batch_size", f"{batch_size!r} is not a positive whole number", "give 1 or more")
        self._outbox = outbox
        self._client = client
        self._reconciler: Reconciler = reconciler if reconciler is not None else client
        self._rules = rules if rules is not None else RelayRules()
        self._concurrency = concurrency
        self._batch_size = batch_size
        self._lease = check_duration(lease, "lease")
        self._renew_every = self._lease / 3
        self._clock = clock if clock is not None else _defaults.clock()
        self._observer = observer
        self._owner = owner if owner is not None else f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._rng = rng if rng is not None else random.Random()
        self._idle_wait = check_duration(idle_wait, "idle_wait")
        self._stop_timeout = check_duration(stop_timeout, "stop_timeout", allow_zero=True)
        self._breaker = breaker if breaker is not None else CircuitBreaker()
        self._probe: OutboxId | None = None  # the half-open breaker's one claim out
        self._slots = slots

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # the claimer waits on it: a claim finished, or stop
        self._ready = threading.Condition(self._lock)  # the workers wait on it: a claim to take, or stop
        self._held: dict[OutboxId, Claim] = {}  # claimed and not yet recorded
        self._claiming = False  # the claimer is in the outbox: the recorder lets it go first
        self._recording = 0  # held, sent, and waiting for the recorder: no longer taking a worker's place
        self._lease_end: dict[OutboxId, float] = {}
        self._queue: collections.deque[Claim] = collections.deque()  # claimed, not yet started
        self._outcomes: queue.SimpleQueue[tuple[Claim, RelayDecision | None] | None] = queue.SimpleQueue()
        self._running = False
        self._stopping = False  # workers take nothing more
        self._stop_requested = False  # a plain flag: stop() may run inside a signal handler
        self._halted: AuthenticationError | CertificateError | None = None
        self._crashed: BaseException | None = None  # a relay thread died: run() raises it after stopping
        self._counts: collections.Counter[str] = collections.Counter()
        self._retries: collections.Counter[Cause] = collections.Counter()
        self._turned: float | None = None  # the claimer loop's last turn, for a liveness check

    @property
    def owner(self) -> str:
        return self._owner

    def last_turn(self) -> float | None:
        """When the claimer loop last went round (the clock's ``monotonic()``); None unless it is running.

        It turns at least every ``idle_wait`` seconds while the outbox answers: a value far older means it is
        stuck, which is what a liveness probe or a systemd watchdog wants to know.
        """
        return self._turned

    def stats(self) -> RelayStats:
        with self._cond:
            c = self._counts
            return RelayStats(
                claimed=c["claimed"], accepted=c["accepted"], reconciled=c["reconciled"],
                duplicates=c["duplicates"], retries=dict(self._retries), dead=c["dead"],
                not_recorded=c["not_recorded"], released=c["released"], abandoned=c["abandoned"],
                outbox_errors=c["outbox_errors"], holding=len(self._held),
                sending=max(0, len(self._held) - len(self._queue) - self._recording),
            )  # fmt: skip

    def stop(self) -> None:
        """Stop claiming, finish what is in flight, release the rest. Safe from a signal handler or any thread."""
        self._stop_requested = True
        if self._lock.acquire(blocking=False):  # never block: the interrupted thread may hold the lock
            try:
                self._cond.notify_all()
                self._ready.notify_all()
            finally:
                self._lock.release()

    def install_signal_handlers(self) -> None:
        """Make SIGTERM and SIGINT stop the relay gracefully. Call it from the main thread."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop()

    def drain(self) -> RelayStats:
        """Run until every message is accepted or dead (for tests, the demo and one-shot jobs)."""
        return self.run(until_empty=True)

    def run(self, *, until_empty: bool = False) -> RelayStats:
        """Relay until stopped (or, with ``until_empty``, until nothing is left to send); raises
        ``AuthenticationError`` after a graceful stop if Flowmailer refused the credentials, and ``CertificateError``
        if Flowmailer's certificate did not verify on any of its addresses."""
        with self._cond:
            if self._running:
                raise ConfigurationError("Relay.run", "is already running", "start one Relay per loop")
            self._running, self._stopping = True, False
        try:
            if self._slots is not None:  # before the first request: the credential's connections are shared
                self._slots.start(self._owner, self._concurrency)
            self._check_credentials()
        except BaseException:
            with self._cond:
                self._running = False
            if self._slots is not None:
                self._slots.stop()
            raise
        targets = {f"flowmailer-relay-{i}": self._work for i in range(self._concurrency)}
        targets["flowmailer-relay-recorder"] = self._record_outcomes
        workers = [
            threading.Thread(target=self._or_stop, args=(target,), name=name, daemon=True)
            for name, target in targets.items()
        ]
        for worker in workers:
            worker.start()
        try:
            self._loop(until_empty)
        finally:
            self._turned = None
            self._shutdown(workers)
            if self._slots is not None:
                self._slots.stop()
        if self._crashed is not None:
            raise self._crashed
        if self._halted is not None:
            raise self._halted
        return self.stats()

    def _or_stop(self, target: Callable[[], None]) -> None:
        """Run a relay thread; if it dies, stop the relay and make run() raise, rather than stall without it."""
        try:
            target()
        except BaseException as e:  # noqa: BLE001 - recorded, and raised by run() once the relay stopped
            _log.critical(
                "relay %s: thread %s died; stopping", self._owner, threading.current_thread().name, exc_info=e
            )
            with self._cond:
                self._crashed = self._crashed or e
            self.stop()

    def _check_credentials(self) -> None:
        """Learn at start, not at the first message or the first ambiguity, that a credential is refused or that
        searches by tag are (a submit-only credential).

        The submitting credential is asked first, and the first refusal ends the run naming its client id:
        Flowmailer locks the calling address out after bad credentials, so any later token request would be
        refused too, and seem to blame a credential that is fine.
        """
        parties = [self._client] if self._reconciler is self._client else [self._client, self._reconciler]
        try:
            for party in parties:
                party.check_credentials()
            next(iter(self._reconciler.messages_by_tag(_PROBE_TAG)), None)
        except (AuthenticationError, CertificateError) as e:
            _log.error("relay %s: %s", self._owner, e)
            raise
        except RejectedError as e:
            reason = (
                f"searching Flowmailer by tag was refused ({e}), so an ambiguous submission cannot be reconciled and "
                "will become a dead letter; give the relay a reconciler whose credential may read messages "
                "(Relay(..., reconciler=Client(...)); for `flowmailer relay`, set FLOWMAILER_RECONCILE_CLIENT_ID and "
                "FLOWMAILER_RECONCILE_CLIENT_SECRET or FLOWMAILER_RECONCILE_CLIENT_SECRET_FILE)"
            )
            _log.warning("relay %s: %s", self._owner, reason)
            self._emit(RelayCannotReconcile(self._owner, reason))
        except FlowmailerError:
            return  # Flowmailer is unreachable for now: the submissions and searches themselves will tell

    # -- the claimer loop --------------------------------------------------------------------------------------

    def _loop(self, until_empty: bool) -> None:
        renew_at = self._clock.monotonic() + self._renew_every
        while not self._stop_requested:
            self._turned = self._clock.monotonic()
            if self._clock.monotonic() >= renew_at:
                self._renew()
                renew_at = self._clock.monotonic() + self._renew_every
            if self._slots is not None:
                self._slots.poll()
            try:
                if self._step(until_empty, renew_at):
                    return
            except OutboxError as e:  # a database restart, a full disk: keep what is held, try again shortly
                with self._cond:
                    self._counts["outbox_errors"] += 1
                self._emit(RelayOutboxFailed(self._owner, str(e)))
                with self._cond:
                    self._cond.wait(self._idle_wait)

    def _step(self, until_empty: bool, renew_at: float) -> bool:
        """Claim if there is room, else wait for a worker, for work, or for the next renewal; True once drained."""
        with self._cond:
            room = self._concurrency + self._batch_size - len(self._held) + self._recording
            busy = bool(self._held)
            permit, self._breaker = self._breaker.admit(self._clock.monotonic())
            cooling = self._breaker.wait(self._clock.monotonic())
        if permit is Permit.HOLD:  # Flowmailer looks down: claim nothing, so the rows stay queued
            if cooling > 0:  # on the clock, which a test's fake clock moves on at once
                self._clock.sleep(min(cooling, self._idle_wait, max(0.0, renew_at - self._clock.monotonic())))
            else:
                with self._cond:  # the probe is out: its worker finishing, or stop(), wakes us
                    self._cond.wait(max(0.0, min(self._idle_wait, renew_at - self._clock.monotonic())))
            return False
        if room >= (1 if permit is Permit.PROBE else max(1, self._batch_size // 2)):
            with self._cond:
                self._claiming = True
            claims: list[Claim] = []
            try:
                limit = 1 if permit is Permit.PROBE else min(room, self._batch_size)
                claims = self._outbox.claim(self._owner, limit, self._lease)
            finally:
                with self._cond:
                    self._claiming = False
                    if permit is Permit.PROBE:
                        self._probe = claims[0].id if claims else None
                        if not claims:
                            self._breaker = self._breaker.withdraw_probe()
                    self._cond.notify_all()
            if claims:
                self._take(claims)
                return False
        elif permit is Permit.PROBE:
            with self._cond:
                self._breaker = self._breaker.withdraw_probe()
        if busy:
            with self._cond:  # a worker finishing, or stop(), wakes us
                self._cond.wait(max(0.0, min(self._idle_wait, renew_at - self._clock.monotonic())))
        elif until_empty and self._drained():
            return True
        else:
            self._outbox.wait_for_work(self._idle_wait)
        return False

    def _drained(self) -> bool:
        counts = self._outbox.counts()
        return not any(counts.get(state, 0) for state in _PENDING)

    def _take(self, claims: list[Claim]) -> None:
        with self._cond:
            for claim in claims:
                self._held[claim.id] = claim
                self._lease_end[claim.id] = claim.lease_until
                self._queue.append(claim)
            self._counts["claimed"] += len(claims)
            self._ready.notify(len(claims))
        self._emit(RelayClaimed(self._owner, len(claims)))

    def _renew(self, claims: list[Claim] | None = None) -> frozenset[OutboxId]:
        """Extend the leases held; a claim lost while still waiting for a worker is dropped unsent."""
        with self._cond:
            claims = list(self._held.values()) if claims is None else claims
        if not claims:
            return frozenset()
        until = self._clock.now() + self._lease
        try:
            kept = self._outbox.renew(claims, self._lease)
        except FlowmailerError:
            return frozenset()  # the outbox is failing; leases may run out and the rows will be reconciled
        lost = []
        with self._cond:
            for claim in claims:
                if claim.id in kept:
                    self._lease_end[claim.id] = until
                elif claim in self._queue:
                    self._queue.remove(claim)
                    self._forget(claim)
                    lost.append(claim)
                elif self._held.get(claim.id) is claim:  # a worker took it meanwhile: it must not start a send
                    self._lease_end[claim.id] = -math.inf
            self._counts["not_recorded"] += len(lost)
        for claim in lost:
            self._emit(RelayNotRecorded(self._owner, claim.id, "lease lost before it was sent"))
        return kept

    def _forget(self, claim: Claim) -> None:
        self._held.pop(claim.id, None)
        self._lease_end.pop(claim.id, None)
        self._cond.notify()

    def _shutdown(self, workers: list[threading.Thread]) -> None:
        with self._cond:
            self._stopping = True
            unstarted = list(self._queue)
            self._queue.clear()
            self._ready.notify_all()
        self._settle([(claim, None) for claim in unstarted])
        deadline = self._clock.monotonic() + self._stop_timeout
        renew_at = self._clock.monotonic() + self._renew_every
        while True:
            with self._cond:
                left = deadline - self._clock.monotonic()
                if not self._held or left <= 0:
                    abandoned = len(self._held)
                    break
                self._cond.wait(max(0.0, min(left, renew_at - self._clock.monotonic(), self._idle_wait)))
            if self._clock.monotonic() >= renew_at:
                self._renew()
                renew_at = self._clock.monotonic() + self._renew_every
        with self._cond:
            self._counts["abandoned"] += abandoned
            self._running = False
        self._outcomes.put(None)
        if not abandoned:
            for worker in workers:
                worker.join()
        self._emit(RelayStopped(self._owner, len(unstarted), abandoned))

    # -- the workers -------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping and not self._stop_requested:
                    self._ready.wait()
                if self._stopping or self._stop_requested:
                    return  # what is still queued is released by the shutdown
                claim = self._queue.popleft()
            with (
                _logs.about(**_logs.about_claim(claim)),  # the client's records of this send carry it too
                self._slots.turn() if self._slots is not None else contextlib.nullcontext(),  # one slot each
            ):
                self._emit(
                    RelayHandling(
                        self._owner, claim.id, claim.client_reference, claim.attempts, claim.must_reconcile,
                        claim.trace_context,
                    )
                )  # fmt: skip
                outcome = self._guarded(claim, self._handle)
                self._emit(RelayHandled(self._owner, claim.id, None if outcome is None else outcome[1]))
            with self._cond:
                if self._probe == claim.id:  # it ended without asking Flowmailer anything: the next claim probes
                    self._probe, self._breaker = None, self._breaker.withdraw_probe()
                if outcome is None:
                    self._forget(claim)
                else:
                    self._recording += outcome[1] is not None  # a release is not counted in _settle either
                    self._cond.notify()
            if outcome is not None:
                self._outcomes.put(outcome)

    def _record_outcomes(self) -> None:
        """The one thread that records: each round settles everything the workers queued meanwhile in one outbox
        transaction (group commit), so a durable outbox flushes to disk once per round, not once per message."""
        stopping = False
        while not stopping:
            batch = [self._outcomes.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._outcomes.get_nowait())
            stopping = None in batch
            with self._cond:  # a claim first: idle workers wait for it, while outcomes only wait to be written
                while self._claiming:
                    self._cond.wait()
            self._settle([outcome for outcome in batch if outcome is not None])

    def _guarded(self, claim: Claim, step: Callable[[Claim], _T]) -> _T | None:
        try:
            return step(claim)
        except FlowmailerError as e:  # LeaseLostError, or the outbox failing: the lease runs out, a relay reconciles
            self._not_recorded(claim, e)
        except Exception as e:  # noqa: BLE001 - a worker outlives a bug in one claim; its lease runs out, it is reconciled
            self._not_recorded(claim, e)
        return None

    def _handle(self, claim: Claim) -> tuple[Claim, RelayDecision | None] | None:
        """The core's steps for one claim (search, take back, send), performed: the decision to record, if any
        (None: release the claim, since the breaker is open and says when it goes again)."""
        steps = handle_claim(claim, self._rules, self._rng.random)
        effect = next(steps)
        held = False
        try:
            while True:
                started = self._clock.monotonic()
                value = self._perform(effect)
                if isinstance(effect, SubmitClaim | SearchByTag):
                    held = self._observe(claim, value, started)
                effect = steps.send(Fed(value, self._clock.monotonic(), self._clock.now()))
        except StopIteration as done:
            result: tuple[Claim, RelayDecision] | None = done.value
        if result is not None and held and _paced_by_breaker(result[1]):
            return result[0], None
        return result

    def _observe(self, claim: Claim, value: object, started: float) -> bool:
        """Tell the breaker how a request begun at ``started`` ended (``value``: what was fed back for it); True if
        it is open and this was a failure. On opening, the claims still waiting for a worker are handed back unsent.
        """
        result = outcome_of(value) if isinstance(value, FlowmailerError) else value
        down = says_down(result)
        now = self._clock.monotonic()
        with self._cond:
            was_open = self._breaker.open_until is not None
            if self._probe == claim.id:
                self._probe = None
            if down:
                after = result.retry_after if isinstance(result, Transient) else None
                self._breaker = self._breaker.failed(now, started_at=started, retry_after=after)
            else:
                self._breaker = self._breaker.succeeded(now)
            is_open = self._breaker.open_until is not None
            unstarted = list(self._queue) if is_open and not was_open else []
            if unstarted:
                self._queue.clear()
        for waiting in unstarted:
            self._outcomes.put((waiting, None))
        if is_open and not was_open:
            _log.warning(
                "relay %s: Flowmailer looks down (%s); claiming nothing, one probe every %.0f s at most",
                self._owner, _short(result), self._breaker.max_cooldown,
            )  # fmt: skip
        elif was_open and not is_open:
            _log.warning("relay %s: Flowmailer answers again; relaying at full speed", self._owner)
        return down and is_open

    def _perform(self, effect: ClaimEffect) -> object:
        if isinstance(effect, SubmitClaim):
            try:
                return self._client.submit(effect.claim.message)
            except FlowmailerError as e:
                return e
        if isinstance(effect, SearchByTag):
            try:
                # A message listed without its id is still one Flowmailer has: it counts, as its id or "".
                return tuple(m.id or "" for m in self._reconciler.messages_by_tag(effect.tag))
            except FlowmailerError as e:
                return e
        if isinstance(effect, TakeBack):
            return self._resend(effect.claim)
        if isinstance(effect, KeepLease):
            return self._still_ours(effect.claim)
        if isinstance(effect, HaltRelay):
            self._halted = effect.error
            self.stop()
        return None

    def _resend(self, claim: Claim) -> Claim:
        """Not found at Flowmailer: take the row back in flight under a new claim (fenced like any outcome)."""
        fresh = self._outbox.resend(claim, self._lease)
        with self._cond:
            self._held[fresh.id] = fresh
            self._lease_end[fresh.id] = fresh.lease_until
        return fresh

    def _still_ours(self, claim: Claim) -> bool:
        """Never send on a lease about to run out (a stalled relay): renew it first, or drop the claim unsent."""
        with self._cond:
            end = self._lease_end.get(claim.id, claim.lease_until)
        if lease_allows_send(end - self._clock.now(), self._lease):
            return True
        if end > -math.inf and claim.id in self._renew([claim]):
            return True
        self._not_recorded(claim, LeaseLostError(claim.id, claim.owner))
        return False

    def _settle(self, outcomes: list[tuple[Claim, RelayDecision | None]]) -> None:
        """Record these decisions (None: release the claim unstarted) in one transaction, and let the claims go."""
        settlements, decided = [], []
        for claim, decision in outcomes:
            settlement = self._guarded(claim, functools.partial(settlement_for, decision=decision))
            if settlement is not None:
                settlements.append(settlement)
                decided.append((claim, decision))
        failure: Exception | None = None
        try:
            lost = {(c.id, c.token) for c in self._outbox.settle(settlements)} if settlements else set()
        except Exception as e:  # noqa: BLE001 - nothing was recorded: the leases run out and the rows are reconciled
            failure, lost = e, {(c.id, c.token) for c, _ in decided}
        try:
            for claim, decision in decided:
                if (claim.id, claim.token) in lost:
                    self._not_recorded(claim, failure or LeaseLostError(claim.id, claim.owner))
                else:
                    self._recorded(claim, decision)
        finally:
            with self._cond:
                for claim, decision in outcomes:
                    self._forget(claim)
                    self._recording -= decision is not None

    def _recorded(self, claim: Claim, decision: RelayDecision | None) -> None:
        with self._cond:
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
        if decision is not None:
            _log_decision(claim, decision)
            self._emit(RelayRecorded(self._owner, claim.id, claim.client_reference, claim.attempts, decision))

    def _not_recorded(self, claim: Claim, error: Exception) -> None:
        with self._cond:
            self._counts["not_recorded"] += 1
        reason = f"{type(error).__name__}: {error}"
        _log.warning("not recorded (the row will be reconciled): %s", reason, extra=_logs.about_claim(claim))
        self._emit(RelayNotRecorded(self._owner, claim.id, reason))

    def _emit(self, event: Event) -> None:
        """Tell the observer; one that raises is logged, never allowed to stop a relay thread."""
        if self._observer is None:
            return
        try:
            self._observer.on_event(event)
        except Exception:  # noqa: BLE001 - a metrics backend going down must not stop the mail
            _log.exception("relay %s: the observer raised on %s", self._owner, type(event).__name__)


def _log_decision(claim: Claim, decision: RelayDecision) -> None:
    """One record per decision recorded, at the level an operator would want to see it."""
    if isinstance(decision, RecordAccepted):
        how = "accepted after reconciliation" if decision.reconciled else "accepted"
        _log.info(how, extra=_logs.about_claim(claim, message_id=decision.message_id))
    elif isinstance(decision, RetryAt | ReconcileAt):
        what = "retry" if isinstance(decision, RetryAt) else "reconciliation"
        _log.info("%s scheduled (%s): %s", what, decision.cause.value, decision.reason, extra=_logs.about_claim(claim))
    elif isinstance(decision, Dead):
        _log.warning("dead letter: %s", decision.reason, extra=_logs.about_claim(claim))
    else:
        _log.info("released, the relay halting: %s", decision.reason, extra=_logs.about_claim(claim))


def _paced_by_breaker(decision: RelayDecision) -> bool:
    """A retry after a failure, or another search after a failed one: while the breaker is open it, not the row's
    own backoff, says when. An ambiguous send still waits its reconcile delay."""
    return isinstance(decision, RetryAt) or (
        isinstance(decision, ReconcileAt) and decision.cause is Cause.RECONCILE_FAILED
    )


def _short(result: object) -> str:
    reason = getattr(result, "reason", "")
    return reason if isinstance(reason, str) and reason else type(result).__name__
