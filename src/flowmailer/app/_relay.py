"""The relay: drains the outbox through a client, reconciling every ambiguity before any resend.

A thin shell over the core: ``Claimer`` decides when to claim and how many, the leases, the breaker and the counts;
``handle_claim`` the steps for one claim; ``core._relay`` what to record. Here: one claimer loop (which also renews
leases), a pool of worker threads that each send or reconcile one claim, and one recorder thread. ``RelayShell`` is
what the async relay (``flowmailer.app.async_relay``) shares with it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import random
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Generator
from types import FrameType
from typing import TypeAlias, TypeVar, cast

from flowmailer.app import _defaults, _logs
from flowmailer.app._slots import SlotKeeper
from flowmailer.core import (
    AuthenticationError,
    CertificateError,
    CircuitBreaker,
    Claim,
    Claimer,
    ClaimUpTo,
    ConfigurationError,
    Dead,
    Event,
    Fed,
    FlowmailerError,
    HaltRelay,
    Handled,
    HoldOff,
    KeepLease,
    LeaseLostError,
    OutboxError,
    OutboxId,
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
    RelayStats,
    RelayStopped,
    RetryAt,
    SearchByTag,
    SendCheck,
    SubmissionState,
    SubmitClaim,
    TakeBack,
    handle_claim,
    outcome_of,
    settlement_for,
)
from flowmailer.core._checks import check_duration
from flowmailer.ports import Clock, Observer, Outbox, Reconciler, Submitter

__all__ = ["MAX_CONCURRENCY", "Relay", "RelayStats"]

_T = TypeVar("_T")
#: The steps both relays take, as a generator: it yields a request to Flowmailer (performed with the shell's client)
#: or an outbox call (a callable, performed in the shell's way: in a thread), is sent what came back, and a failed
#: outbox call is thrown into it.
Io: TypeAlias = Generator["SubmitClaim | SearchByTag | Callable[[], object]", object, _T]

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


class RelayShell:
    """What the threaded and the async relay share: their settings, the core's ``Claimer`` (every claiming and
    accounting decision) and ``handle_claim`` (every step for one claim), and the parts of the shell that neither
    wait nor do IO: the breaker's log lines, which decisions go to the outbox, the counts and the observer.

    ``_lock`` guards the claimer: a threaded relay's threads and a reader of ``stats()`` on another thread share it;
    nothing holds it across a wait or a call out.
    """

    def __init__(
        self,
        outbox: Outbox,
        *,
        rules: RelayRules | None,
        concurrency: int,
        batch_size: int,
        lease: float,
        clock: Clock | None,
        observer: Observer | None,
        owner: str | None,
        rng: random.Random | None,
        idle_wait: float,
        stop_timeout: float,
        breaker: CircuitBreaker | None,
        max_concurrency: int = MAX_CONCURRENCY,
        how: str = "Flowmailer's guidelines allow at most 10 concurrent submissions; give 1 to 10",
    ) -> None:
        if not 1 <= concurrency <= max_concurrency:
            raise ConfigurationError("concurrency", f"{concurrency!r} is not between 1 and {max_concurrency}", how)
        if batch_size < 1:
            raise ConfigurationError("batch_size", f"{batch_size!r} is not a positive whole number", "give 1 or more")
        self._outbox = outbox
        self._rules = rules if rules is not None else RelayRules()
        self._concurrency = concurrency
        self._lease = check_duration(lease, "lease")
        self._clock = clock if clock is not None else _defaults.clock()
        self._observer = observer
        self._owner = owner if owner is not None else f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._rng = rng if rng is not None else random.Random()
        self._idle_wait = check_duration(idle_wait, "idle_wait")
        self._stop_timeout = check_duration(stop_timeout, "stop_timeout", allow_zero=True)
        self._claimer = Claimer(
            limit=concurrency,
            batch_size=batch_size,
            lease=self._lease,
            breaker=breaker if breaker is not None else CircuitBreaker(),
        )
        self._lock = threading.Lock()
        self._running = False
        self._stop_requested = False  # a plain flag: stop() may run inside a signal handler
        self._halted: AuthenticationError | CertificateError | None = None
        self._crashed: BaseException | None = None  # a relay task or thread died: run() raises it after stopping
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
        with self._lock:
            return self._claimer.stats()

    def _begin(self) -> None:
        with self._lock:
            if self._running:
                raise ConfigurationError("Relay.run", "is already running", "start one Relay per loop")
            self._running = True
            self._claimer.start(self._clock.monotonic())

    def _check_failed(self, e: FlowmailerError) -> None:
        """The credential check at start failed: a refused credential or certificate ends the run (raised); a
        refused search is reported; Flowmailer being unreachable for now is for the sends and searches to meet."""
        if isinstance(e, AuthenticationError | CertificateError):
            _log.error("relay %s: %s", self._owner, e)
            raise e
        if isinstance(e, RejectedError):
            self._cannot_reconcile(e)

    def _cannot_reconcile(self, e: RejectedError) -> None:
        reason = (
            f"searching Flowmailer by tag was refused ({e}), so an ambiguous submission cannot be reconciled and "
            "will become a dead letter; give the relay a reconciler whose credential may read messages "
            "(Relay(..., reconciler=Client(...)); for `flowmailer relay`, set FLOWMAILER_RECONCILE_CLIENT_ID and "
            "FLOWMAILER_RECONCILE_CLIENT_SECRET or FLOWMAILER_RECONCILE_CLIENT_SECRET_FILE)"
        )
        _log.warning("relay %s: %s", self._owner, reason)
        self._emit(RelayCannotReconcile(self._owner, reason))

    def _observe(self, claim: Claim, value: object, started: float) -> tuple[bool, list[Claim]]:
        """Tell the breaker how a request begun at ``started`` ended (``value``: what was fed back for it): whether
        it is open and this was a failure, and the claims waiting for a sender that it hands back on opening."""
        with self._lock:
            seen = self._claimer.observed(claim, value, started=started, now=self._clock.monotonic())
            cooldown = self._claimer.breaker.max_cooldown
        if seen.opened:
            result = outcome_of(value) if isinstance(value, FlowmailerError) else value
            _log.warning(
                "relay %s: Flowmailer looks down (%s); claiming nothing, one probe every %.0f s at most",
                self._owner, _short(result), cooldown,
            )  # fmt: skip
        elif seen.closed:
            _log.warning("relay %s: Flowmailer answers again; relaying at full speed", self._owner)
        return seen.failed_while_open, list(seen.unstarted)

    def _announce(self, claim: Claim) -> None:
        """A sender starts on ``claim``: the requests it makes until ``_handed`` are for this message (an observer
        makes its span current in the sender's context: its thread, or its task)."""
        if self._observer is None:  # the hot path: no event built for nobody
            return
        self._emit(
            RelayHandling(
                self._owner, claim.id, claim.client_reference, claim.attempts, claim.must_reconcile,
                claim.trace_context,
            )
        )  # fmt: skip

    def _handed(self, claim: Claim, handled: Handled) -> None:
        if self._observer is None:
            return
        self._emit(RelayHandled(self._owner, claim.id, None if handled is None else handled[1]))

    def _claimed(self, claims: list[Claim], probe: bool) -> None:
        with self._lock:
            self._claimer.claimed(claims, probe=probe)
        if claims:
            self._emit(RelayClaimed(self._owner, len(claims)))

    # -- the steps both shells drive: each yields a client request or an outbox call (a callable) to perform ----

    def _handling(self, claim: Claim) -> Io[tuple[Handled, bool]]:
        """The core's steps for one claim (search, take back, send): the decision to record, if any, and whether
        its request failed while the breaker is open."""
        steps = handle_claim(claim, self._rules, self._rng.random)
        effect = next(steps)
        failed_while_open = False
        try:
            while True:
                started = self._clock.monotonic()
                value: object = None
                if isinstance(effect, SubmitClaim | SearchByTag):
                    value = yield effect
                    failed_while_open, unstarted = self._observe(claim, value, started)
                    self._release(unstarted)
                elif isinstance(effect, TakeBack):  # not found at Flowmailer: the row back in flight, fenced anew
                    value = yield functools.partial(self._outbox.resend, effect.claim, self._lease)
                    with self._lock:
                        self._claimer.resent(cast("Claim", value))
                elif isinstance(effect, KeepLease):
                    value = yield from self._keeping(effect.claim)
                elif isinstance(effect, HaltRelay):
                    self._halted = effect.error
                    self.stop()
                effect = steps.send(Fed(value, self._clock.monotonic(), self._clock.now()))
        except StopIteration as done:
            return done.value, failed_while_open

    def _keeping(self, claim: Claim) -> Io[bool]:
        """Never send on a lease about to run out (a stalled relay): renew it first, or drop the claim unsent."""
        with self._lock:
            check = self._claimer.send_check(claim, self._clock.now())
        if check is SendCheck.SEND or (check is SendCheck.RENEW and claim.id in (yield from self._renewing([claim]))):
            return True
        self._not_recorded(claim, LeaseLostError(claim.id, claim.owner))
        return False

    def _renewing(self, claims: list[Claim] | None = None) -> Io[frozenset[OutboxId]]:
        """Extend the leases held when a renewal is due (or those of ``claims`` now); a claim lost while still
        waiting for a sender is dropped unsent."""
        with self._lock:
            claims = self._claimer.renewal(self._clock.monotonic()) if claims is None else claims
        if not claims:
            return frozenset()
        until = self._clock.now() + self._lease
        try:
            kept = cast("frozenset[OutboxId]", (yield functools.partial(self._outbox.renew, claims, self._lease)))
        except FlowmailerError:
            return frozenset()  # the outbox is failing; leases may run out and the rows will be reconciled
        with self._lock:
            lost = self._claimer.renewed(claims, kept, until)
        for claim in lost:
            self._emit(RelayNotRecorded(self._owner, claim.id, "lease lost before it was sent"))
        self._notify()
        return kept

    def _settling(self, outcomes: list[tuple[Claim, RelayDecision | None]]) -> Io[None]:
        """Record these decisions (None: release the claim unstarted) in one transaction, and let the claims go."""
        settlements, decided = [], []
        for claim, decision in outcomes:
            settlement = self._guarded(claim, functools.partial(settlement_for, decision=decision))
            if settlement is not None:
                settlements.append(settlement)
                decided.append((claim, decision))
        failure: Exception | None = None
        try:
            refused = (yield functools.partial(self._outbox.settle, settlements)) if settlements else []
            lost = {(c.id, c.token) for c in cast("list[Claim]", refused)}
        except Exception as e:  # noqa: BLE001 - nothing was recorded: the leases run out and the rows are reconciled
            failure, lost = e, {(c.id, c.token) for c, _ in decided}
        try:
            for claim, decision in decided:
                if (claim.id, claim.token) in lost:
                    self._not_recorded(claim, failure or LeaseLostError(claim.id, claim.owner))
                else:
                    self._recorded(claim, decision)
        finally:
            with self._lock:
                self._claimer.settled(outcomes)
            self._notify()

    # -- what each shell does its own way ------------------------------------------------------------------------

    def stop(self) -> None:
        raise NotImplementedError

    def _notify(self) -> None:
        """Wake the claimer loop: a claim ended, or leases were lost. Called without the lock held."""
        raise NotImplementedError

    def _release(self, unstarted: list[Claim]) -> None:
        """Queue these for the recorder, to be released unsent (the breaker opened while they waited)."""
        raise NotImplementedError

    # -- telling ---------------------------------------------------------------------------------------------------

    def _guarded(self, claim: Claim, step: Callable[[Claim], _T]) -> _T | None:
        try:
            return step(claim)
        except FlowmailerError as e:  # LeaseLostError, or the outbox failing: the lease runs out, a relay reconciles
            self._not_recorded(claim, e)
        except Exception as e:  # noqa: BLE001 - a worker outlives a bug in one claim; its lease runs out, it is reconciled
            self._not_recorded(claim, e)
        return None

    def _recorded(self, claim: Claim, decision: RelayDecision | None) -> None:
        with self._lock:
            self._claimer.recorded(decision)
        if decision is not None:
            _log_decision(claim, decision)
            if self._observer is not None:
                self._emit(RelayRecorded(self._owner, claim.id, claim.client_reference, claim.attempts, decision))

    def _not_recorded(self, claim: Claim, error: Exception) -> None:
        with self._lock:
            self._claimer.not_recorded()
        reason = f"{type(error).__name__}: {error}"
        _log.warning("not recorded (the row will be reconciled): %s", reason, extra=_logs.about_claim(claim))
        self._emit(RelayNotRecorded(self._owner, claim.id, reason))

    def _outbox_failed(self, e: OutboxError) -> None:
        with self._lock:
            self._claimer.outbox_failed()
        self._emit(RelayOutboxFailed(self._owner, str(e)))

    def _stopped(self, released: int, abandoned: int) -> None:
        with self._lock:
            self._running = False
        self._emit(RelayStopped(self._owner, released, abandoned))

    def _emit(self, event: Event) -> None:
        """Tell the observer; one that raises is logged, never allowed to stop a relay thread."""
        if self._observer is None:
            return
        try:
            self._observer.on_event(event)
        except Exception:  # noqa: BLE001 - a metrics backend going down must not stop the mail
            _log.exception("relay %s: the observer raised on %s", self._owner, type(event).__name__)

    def _raise_if_ended_badly(self) -> None:
        if self._crashed is not None:
            raise self._crashed
        if self._halted is not None:
            raise self._halted


class Relay(RelayShell):
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

    A thin shell: one claimer loop (which also renews leases), ``concurrency`` worker threads that each perform
    ``handle_claim`` for one claim at a time, and one recorder thread; the core's ``Claimer`` decides the rest.
    ``AsyncRelay`` is the same over the async client.

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
        super().__init__(
            outbox, rules=rules, concurrency=concurrency, batch_size=batch_size, lease=lease, clock=clock,
            observer=observer, owner=owner, rng=rng, idle_wait=idle_wait, stop_timeout=stop_timeout, breaker=breaker,
        )  # fmt: skip
        self._client = client
        self._reconciler: Reconciler = reconciler if reconciler is not None else client
        self._slots = slots
        self._cond = threading.Condition(self._lock)  # the claimer waits on it: a claim finished, or stop
        self._ready = threading.Condition(self._lock)  # the workers wait on it: a claim to take, or stop
        self._claiming = False  # the claimer is in the outbox: the recorder lets it go first
        self._outcomes: queue.SimpleQueue[tuple[Claim, RelayDecision | None] | None] = queue.SimpleQueue()

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
        self._begin()
        try:
            if self._slots is not None:  # before the first request: the credential's connections are shared
                self._slots.start(self._owner, self._concurrency)
            self._check_credentials()
        except BaseException:
            with self._lock:
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
        self._raise_if_ended_badly()
        return self.stats()

    def _or_stop(self, target: Callable[[], None]) -> None:
        """Run a relay thread; if it dies, stop the relay and make run() raise, rather than stall without it."""
        try:
            target()
        except BaseException as e:  # noqa: BLE001 - recorded, and raised by run() once the relay stopped
            _log.critical(
                "relay %s: thread %s died; stopping", self._owner, threading.current_thread().name, exc_info=e
            )
            with self._lock:
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
        except FlowmailerError as e:
            self._check_failed(e)

    # -- the claimer loop --------------------------------------------------------------------------------------

    def _loop(self, until_empty: bool) -> None:
        while not self._stop_requested:
            self._turned = self._clock.monotonic()
            self._renew()
            if self._slots is not None:
                self._slots.poll()
            try:
                if self._step(until_empty):
                    return
            except OutboxError as e:  # a database restart, a full disk: keep what is held, try again shortly
                self._outbox_failed(e)
                with self._cond:
                    self._cond.wait(self._idle_wait)

    def _step(self, until_empty: bool) -> bool:
        """Claim if there is room, else wait for a worker, for work, or for the next renewal; True once drained."""
        with self._cond:
            plan = self._claimer.plan(self._clock.monotonic())
        if isinstance(plan, HoldOff):  # Flowmailer looks down: claim nothing, so the rows stay queued
            if plan.cooling > 0:  # on the clock, which a test's fake clock moves on at once
                self._clock.sleep(min(plan.cooling, self._until_renewal()))
            else:
                self._wait_on_claims()  # the probe is out: its worker finishing, or stop(), wakes us
            return False
        if isinstance(plan, ClaimUpTo):
            with self._cond:
                self._claiming = True
            claims: list[Claim] = []
            try:
                claims = self._outbox.claim(self._owner, plan.limit, self._lease)
            finally:
                with self._cond:
                    self._claiming = False
                    self._cond.notify_all()
                self._claimed(claims, plan.probe)
                with self._cond:
                    self._ready.notify(len(claims))
            if claims:
                return False
        if self._claimer.busy:
            self._wait_on_claims()  # a worker finishing, or stop(), wakes us
        elif until_empty and self._drained():
            return True
        else:
            self._outbox.wait_for_work(self._idle_wait)
        return False

    def _until_renewal(self) -> float:
        with self._cond:
            return self._claimer.until_renewal(self._clock.monotonic(), self._idle_wait)

    def _wait_on_claims(self) -> None:
        with self._cond:
            self._cond.wait(self._claimer.until_renewal(self._clock.monotonic(), self._idle_wait))

    def _drained(self) -> bool:
        counts = self._outbox.counts()
        return not any(counts.get(state, 0) for state in _PENDING)

    def _renew(self) -> None:
        self._drive(self._renewing())

    def _shutdown(self, workers: list[threading.Thread]) -> None:
        with self._cond:
            unstarted = self._claimer.stop()
            self._ready.notify_all()
        self._settle([(claim, None) for claim in unstarted])
        deadline = self._clock.monotonic() + self._stop_timeout
        while True:
            with self._cond:
                left = deadline - self._clock.monotonic()
                if not self._claimer.busy or left <= 0:
                    abandoned = self._claimer.abandon()
                    break
                self._cond.wait(min(left, self._claimer.until_renewal(self._clock.monotonic(), self._idle_wait)))
            self._renew()
        self._outcomes.put(None)
        if not abandoned:
            for worker in workers:
                worker.join()
        self._stopped(len(unstarted), abandoned)

    # -- the workers -------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                claim = None
                while not (self._stop_requested or self._claimer.stopping):
                    if (claim := self._claimer.take()) is not None:
                        break
                    self._ready.wait()
                if claim is None:
                    return  # what is still queued is released by the shutdown
            with (
                _logs.about(**_logs.about_claim(claim)),  # the client's records of this send carry it too
                self._slots.turn() if self._slots is not None else contextlib.nullcontext(),  # one slot each
            ):
                self._announce(claim)
                handled, failed_while_open = self._guarded(claim, self._handle) or (None, False)
                self._handed(claim, handled)
            with self._cond:
                outcome = self._claimer.handled(claim, handled, failed_while_open=failed_while_open)
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

    def _handle(self, claim: Claim) -> tuple[Handled, bool]:
        return self._drive(self._handling(claim))

    def _settle(self, outcomes: list[tuple[Claim, RelayDecision | None]]) -> None:
        self._drive(self._settling(outcomes))

    def _drive(self, io: Io[_T]) -> _T:
        """Perform each request and outbox call ``io`` yields, in this thread, to its end."""
        try:
            effect = next(io)
            while True:
                try:
                    value = self._perform(effect)
                except Exception as e:  # noqa: BLE001 - the steps decide what an outbox failure means
                    effect = io.throw(e)
                else:
                    effect = io.send(value)
        except StopIteration as done:
            return cast("_T", done.value)

    def _perform(self, effect: SubmitClaim | SearchByTag | Callable[[], object]) -> object:
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
        return effect()

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _release(self, unstarted: list[Claim]) -> None:
        for waiting in unstarted:
            self._outcomes.put((waiting, None))


def _log_decision(claim: Claim, decision: RelayDecision) -> None:
    """One record per decision recorded, at the level an operator would want to see it."""
    if isinstance(decision, RecordAccepted):
        if _log.isEnabledFor(logging.INFO):  # the one decision per message: no record's extra built for nothing
            how = "accepted after reconciliation" if decision.reconciled else "accepted"
            _log.info(how, extra=_logs.about_claim(claim, message_id=decision.message_id))
    elif isinstance(decision, RetryAt | ReconcileAt):
        what = "retry" if isinstance(decision, RetryAt) else "reconciliation"
        _log.info("%s scheduled (%s): %s", what, decision.cause.value, decision.reason, extra=_logs.about_claim(claim))
    elif isinstance(decision, Dead):
        _log.warning("dead letter: %s", decision.reason, extra=_logs.about_claim(claim))
    else:
        _log.info("released, the relay halting: %s", decision.reason, extra=_logs.about_claim(claim))


def _short(result: object) -> str:
    reason = getattr(result, "reason", "")
    return reason if isinstance(reason, str) and reason else type(result).__name__
