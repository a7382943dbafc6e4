"""The async relay: :class:`flowmailer.app.Relay`'s twin over ``AsyncClient``, for asyncio and trio alike (on anyio).

A thin shell over the same core as the threaded relay: ``Claimer`` decides when to claim and how many, the leases,
the breaker and the counts, ``handle_claim`` the steps for one claim, and ``RelayShell`` (shared with ``Relay``)
turns them into requests and outbox calls. Here: tasks instead of threads, anyio events instead of conditions,
and the outboxes (which block: SQLite, psycopg) called in worker threads. Imports anyio, so it is not re-exported
from ``flowmailer.app``; ``flowmailer.AsyncRelay`` imports it on first use.
"""

from __future__ import annotations

import collections
import contextlib
import random
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from flowmailer.app import _logs
from flowmailer.app._async_slots import AsyncSlotKeeper
from flowmailer.app._relay import _PENDING, _PROBE_TAG, MAX_CONCURRENCY, Io, RelayShell, _log
from flowmailer.core import (
    CircuitBreaker,
    Claim,
    ClaimUpTo,
    ConfigurationError,
    FlowmailerError,
    Handled,
    HoldOff,
    OutboxError,
    RelayDecision,
    RelayRules,
    RelayStats,
    SearchByTag,
    SubmitClaim,
)
from flowmailer.ports import AsyncReconciler, AsyncSubmitter, Clock, Observer, Outbox

__all__ = ["AsyncRelay", "AsyncSlotKeeper"]

_T = TypeVar("_T")
_Outcome = tuple[Claim, RelayDecision | None]


class AsyncRelay(RelayShell):
    """Drains ``outbox`` through an ``AsyncClient`` with at most ``concurrency`` x ``pipeline_depth`` submissions
    at once.

    Every setting, guarantee and event is :class:`flowmailer.app.Relay`'s: ``await run()`` claims, submits, records
    and renews until ``stop()``; ``await drain()`` also returns once nothing is left to send; a stop lets
    in-flight submissions finish for up to ``stop_timeout`` seconds and releases the rest (a send still running
    then is cancelled and left to its lease, to be reconciled). ``stop()`` is safe from any thread or task; call
    ``install_signal_handlers()`` before ``run()`` (in the main thread) to stop on SIGTERM and SIGINT.

    ``pipeline_depth``: give the depth the client's transport pipelines to (``AnyioTransport(pipeline_depth=N)``),
    so that ``concurrency`` connections (at most 10) each carry up to N submissions: the relay then claims and
    settles in batches of ``20 x N`` by default (one outbox transaction each), and still reconciles every written,
    unanswered submission before any resend (a broken pipeline's are Ambiguous, searched by tag, never resent
    blindly). Its transport, not the relay, holds the connections: a deeper relay over a shallower transport only
    waits for a connection.

    ``slots`` (an :class:`AsyncSlotKeeper` over the client's transport) shares the credential's 10 connections with
    every relay, threaded or async, on the same slot store, as ``Relay``'s ``slots`` does: holding ``n`` slots, the
    relay has at most ``n`` connections open and ``n`` x ``pipeline_depth`` submissions running.

    ``clock`` times leases, renewals and the breaker, as for ``Relay`` (its ``sleep`` runs in a worker thread, so
    a test's ``FakeClock`` moves on at once); the client keeps its own retry waits on the event loop's clock.
    """

    def __init__(
        self,
        outbox: Outbox,
        client: AsyncSubmitter,
        *,
        reconciler: AsyncReconciler | None = None,
        rules: RelayRules | None = None,
        concurrency: int = MAX_CONCURRENCY,
        pipeline_depth: int = 1,
        batch_size: int | None = None,
        lease: float = 30.0,
        clock: Clock | None = None,
        observer: Observer | None = None,
        owner: str | None = None,
        rng: random.Random | None = None,
        idle_wait: float = 1.0,
        stop_timeout: float = 30.0,
        breaker: CircuitBreaker | None = None,
        slots: AsyncSlotKeeper | None = None,
    ) -> None:
        if pipeline_depth < 1:
            raise ConfigurationError(
                "pipeline_depth",
                f"{pipeline_depth!r} is not a positive whole number",
                "give 1 (no pipelining) or the client's transport's depth, e.g. AnyioTransport(pipeline_depth=8)",
            )
        super().__init__(
            outbox, rules=rules, concurrency=concurrency, lease=lease, clock=clock, observer=observer, owner=owner,
            rng=rng, idle_wait=idle_wait, stop_timeout=stop_timeout, breaker=breaker,
            batch_size=20 * pipeline_depth if batch_size is None else batch_size,
        )  # fmt: skip
        self._depth = pipeline_depth
        self._senders = concurrency * pipeline_depth
        self._slots = slots
        self._claimer.limit = self._senders
        self._client = client
        self._reconciler: AsyncReconciler = reconciler if reconciler is not None else client
        self._signals = False
        self._token: anyio.lowlevel.EventLoopToken | None = None  # the running loop's, for stop() from a thread
        self._loop_thread: int | None = None
        self._claiming = False  # the claimer is in the outbox: the recorder lets it go first
        self._fresh()

    def _fresh(self) -> None:
        """Events and the recorder's queue for one run (a run's loop may not be the next one's)."""
        # Made by the first task to wait, set and dropped by the next wake: a claim ending (every message) costs no
        # new Event, and wakes no task, while nobody waits.
        self._changed: anyio.Event | None = None  # a claim ended, or stop(): the claimer loop and the recorder wait
        self._ready: anyio.Event | None = None  # claims wait for a sender, or stop(): idle senders wait on it
        self._outcomes: collections.deque[_Outcome | None] = collections.deque()  # for the recorder (None: stop)
        self._queued = anyio.Event()  # set when an outcome is queued: the recorder waits on it

    def stop(self) -> None:
        """Stop claiming, finish what is in flight, release the rest. Safe from any thread or task."""
        self._stop_requested = True
        token = self._token
        if token is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake()
            return
        with contextlib.suppress(RuntimeError):  # the loop ended meanwhile: nothing waits any more
            anyio.from_thread.run_sync(self._wake, token=token)

    def install_signal_handlers(self) -> None:
        """Make SIGTERM and SIGINT stop the relay gracefully, while ``run()`` runs. Call ``run()`` in the main
        thread."""
        self._signals = True

    async def drain(self) -> RelayStats:
        """Run until every message is accepted or dead (for tests, the demo and one-shot jobs)."""
        return await self.run(until_empty=True)

    async def run(self, *, until_empty: bool = False) -> RelayStats:
        """Relay until stopped (or, with ``until_empty``, until nothing is left to send); raises as ``Relay.run``."""
        self._begin()
        try:
            if self._slots is not None:  # before the first request: the credential's connections are shared
                await self._slots.start(self._owner, self._concurrency, depth=self._depth)
            await self._check_credentials()
        except BaseException:
            with self._lock:
                self._running = False
            await self._stop_slots()
            raise
        self._fresh()
        self._token, self._loop_thread = anyio.lowlevel.current_token(), threading.get_ident()
        try:
            async with anyio.create_task_group() as tasks:
                if self._signals:
                    tasks.start_soon(self._on_signals)
                if self._slots is not None:
                    tasks.start_soon(self._or_stop, self._slots.keep)
                for _ in range(self._senders):
                    tasks.start_soon(self._or_stop, self._work)
                recorder = anyio.Event()
                tasks.start_soon(self._or_stop, self._record_outcomes, recorder)
                try:
                    await self._loop(until_empty)
                finally:
                    self._turned = None
                    with anyio.CancelScope(shield=True):
                        await self._shutdown(recorder)
                    tasks.cancel_scope.cancel()  # a send outliving the timeout is left to its lease
        finally:
            self._token = self._loop_thread = None
            await self._stop_slots()
        self._raise_if_ended_badly()
        return self.stats()

    async def _stop_slots(self) -> None:
        if self._slots is not None:
            with anyio.CancelScope(shield=True):
                await self._slots.stop()

    def _wake(self) -> None:
        """Claims to take, or stop(): wake every waiting task."""
        self._wake_claimer()
        if self._ready is not None:
            self._ready.set()
            self._ready = None

    def _wake_claimer(self) -> None:
        """A claim ended (room to claim, a probe done) or leases changed: wake the claimer loop and the recorder.
        Idle senders sleep on: an ending claim gives them nothing to take."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _on_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                self.stop()

    async def _or_stop(self, target: Callable[..., Awaitable[None]], *args: object) -> None:
        """Run a relay task; if it dies, stop the relay and make run() raise, rather than stall without it."""
        try:
            await target(*args)
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as e:  # noqa: BLE001 - recorded, and raised by run() once the relay stopped
            _log.critical("relay %s: task %s died; stopping", self._owner, target.__name__, exc_info=e)
            with self._lock:
                self._crashed = self._crashed or e
            self.stop()

    async def _check_credentials(self) -> None:
        """As ``Relay._check_credentials``: the submitting credential first, then whether searches by tag are
        allowed."""
        parties = [self._client] if self._reconciler is self._client else [self._client, self._reconciler]
        try:
            for party in parties:
                await party.check_credentials()
            async for _ in self._reconciler.messages_by_tag(_PROBE_TAG):
                break
        except FlowmailerError as e:
            self._check_failed(e)

    # -- the claimer loop --------------------------------------------------------------------------------------

    async def _loop(self, until_empty: bool) -> None:
        while not self._stop_requested:
            self._turned = self._clock.monotonic()
            await self._drive(self._renewing())
            if self._slots is not None:
                self._slots.poll()
            try:
                if await self._step(until_empty):
                    return
            except OutboxError as e:  # a database restart, a full disk: keep what is held, try again shortly
                self._outbox_failed(e)
                await self._wait(self._idle_wait)

    async def _step(self, until_empty: bool) -> bool:
        """Claim if there is room, else wait for a sender, for work, or for the next renewal; True once drained."""
        with self._lock:
            plan = self._claimer.plan(self._clock.monotonic())
        if isinstance(plan, HoldOff):  # Flowmailer looks down: claim nothing, so the rows stay queued
            if plan.cooling > 0:  # on the clock, which a test's fake clock moves on at once
                await self._in_thread(self._clock.sleep, min(plan.cooling, self._until_renewal()))
            else:
                await self._wait(self._until_renewal())  # the probe is out: its sender finishing, or stop()
            return False
        if isinstance(plan, ClaimUpTo):
            self._claiming = True
            claims: list[Claim] = []
            try:
                claims = await self._in_thread(self._outbox.claim, self._owner, plan.limit, self._lease)
            finally:
                self._claiming = False
                self._claimed(claims, plan.probe)
                self._wake()
            if claims:
                return False
        if self._claimer.busy:
            await self._wait(self._until_renewal())  # a sender finishing, or stop(), wakes us
        elif until_empty and await self._in_thread(self._drained):
            return True
        else:
            await self._in_thread(self._outbox.wait_for_work, self._idle_wait)
        return False

    def _drained(self) -> bool:
        counts = self._outbox.counts()
        return not any(counts.get(state, 0) for state in _PENDING)

    def _until_renewal(self) -> float:
        with self._lock:
            return self._claimer.until_renewal(self._clock.monotonic(), self._idle_wait)

    async def _wait(self, seconds: float) -> None:
        """Until a claim ends, stop(), or ``seconds`` pass."""
        if self._changed is None:
            self._changed = anyio.Event()
        changed = self._changed
        with anyio.move_on_after(seconds):
            await changed.wait()

    async def _shutdown(self, recorder: anyio.Event) -> None:
        with self._lock:
            unstarted = self._claimer.stop()
        self._wake()
        await self._drive(self._settling([(claim, None) for claim in unstarted]))
        deadline = self._clock.monotonic() + self._stop_timeout
        while True:
            left = deadline - self._clock.monotonic()
            if not self._claimer.busy or left <= 0:
                with self._lock:
                    abandoned = self._claimer.abandon()
                break
            await self._wait(min(left, self._until_renewal()))
            await self._drive(self._renewing())
        self._queue(None)
        if not abandoned:
            await recorder.wait()
        self._stopped(len(unstarted), abandoned)

    # -- the senders and the recorder --------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            claim = None
            while not (self._stop_requested or self._claimer.stopping):
                with self._lock:
                    claim = self._claimer.take()
                if claim is not None:
                    break
                if self._ready is None:
                    self._ready = anyio.Event()
                await self._ready.wait()
            if claim is None:
                return  # what is still queued is released by the shutdown
            handled: Handled = None
            failed_while_open = False
            with _logs.about(**_logs.about_claim(claim)):  # the client's records of this send carry it too
                async with self._slots.turn() if self._slots is not None else contextlib.nullcontext():  # a place
                    self._announce(claim)
                    try:
                        handled, failed_while_open = await self._drive(self._handling(claim))
                    except Exception as e:  # noqa: BLE001 - as Relay's workers: the lease runs out, it is reconciled
                        self._not_recorded(claim, e)
                    self._handed(claim, handled)
            with self._lock:
                outcome = self._claimer.handled(claim, handled, failed_while_open=failed_while_open)
            self._wake_claimer()
            if outcome is not None:
                self._queue(outcome)

    async def _record_outcomes(self, done: anyio.Event) -> None:
        """The one task that records: each round settles everything the senders queued meanwhile in one outbox
        transaction (group commit)."""
        try:
            stopping = False
            while not stopping:
                while not self._outcomes:
                    await self._queued.wait()
                    self._queued = anyio.Event()
                batch = list(self._outcomes)
                self._outcomes.clear()
                stopping = None in batch
                while self._claiming:  # a claim first: idle senders wait for it, outcomes only wait to be written
                    await self._wait(self._idle_wait)
                await self._drive(self._settling([outcome for outcome in batch if outcome is not None]))
        finally:
            done.set()

    def _queue(self, outcome: _Outcome | None) -> None:
        self._outcomes.append(outcome)
        self._queued.set()

    def _notify(self) -> None:
        self._wake_claimer()  # the steps run on the loop, whatever thread performed their outbox calls

    def _release(self, unstarted: list[Claim]) -> None:
        for waiting in unstarted:
            self._queue((waiting, None))

    # -- performing the steps ----------------------------------------------------------------------------------

    async def _drive(self, io: Io[_T]) -> _T:
        """Perform each request and outbox call ``io`` yields, on this event loop, to its end."""
        try:
            effect = next(io)
            while True:
                try:
                    value = await self._perform(effect)
                except Exception as e:  # noqa: BLE001 - the steps decide what an outbox failure means
                    effect = io.throw(e)
                else:
                    effect = io.send(value)
        except StopIteration as done:
            return cast("_T", done.value)

    async def _perform(self, effect: SubmitClaim | SearchByTag | Callable[[], object]) -> object:
        if isinstance(effect, SubmitClaim):
            try:
                return await self._client.submit(effect.claim.message)
            except FlowmailerError as e:
                return e
        if isinstance(effect, SearchByTag):
            try:
                # A message listed without its id is still one Flowmailer has: it counts, as its id or "".
                return tuple([m.id or "" async for m in self._reconciler.messages_by_tag(effect.tag)])
            except FlowmailerError as e:
                return e
        return await self._in_thread(effect)

    async def _in_thread(self, call: Callable[..., _T], *args: object) -> _T:
        """An outbox or clock call, which blocks (SQLite and psycopg wait for locks and disks): in a worker thread."""
        return await anyio.to_thread.run_sync(call, *args)
