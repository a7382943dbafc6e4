"""A relay's hold on its share of a credential's connection slots: thin shells over ``core.SlotShare``.

``SlotKeeping`` holds the settings, the share and the rounds both keepers take, written once as generators that
yield their I/O (cap the transport and the sends, ask the store, give the slots back). ``SlotKeeper`` (the threaded
relay's) performs them in a thread of its own; ``flowmailer.app.async_relay.AsyncSlotKeeper`` (the async relay's) in
a task, with the store called in worker threads. The relay's senders take a turn before each claim they handle.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Generator, Iterator
from typing import TypeAlias, TypeVar

import attrs

from flowmailer.app import _defaults
from flowmailer.core import (
    MAX_SLOTS,
    AcquireSlots,
    FlowmailerError,
    OutboxError,
    SlotHolding,
    SlotRequest,
    SlotShare,
)
from flowmailer.core._checks import check_duration
from flowmailer.ports import Clock, ConnectionCap, ConnectionSlots

__all__ = ["SlotKeeper"]

_log = logging.getLogger(__name__)
_R = TypeVar("_R")


@attrs.frozen
class CapTo:
    """Cap the transport to ``connections`` and the relay to ``sends`` at once; answer ``(open, running)``: the
    connections open once the idle ones over the cap closed, and the sends running."""

    connections: int
    sends: int


@attrs.frozen
class Ask:
    """Ask the slot store; answer its ``SlotHolding``, or the ``FlowmailerError`` it raised."""

    request: SlotRequest


@attrs.frozen
class GiveBack:
    """Give every slot back to the store; answer None, or the ``FlowmailerError`` it raised."""


#: A keeper's step: the I/O it needs, each answered as its docstring says, then what the step returns.
SlotIo: TypeAlias = Generator[CapTo | Ask | GiveBack, object, _R]


class SlotKeeping:
    """What both keepers share: their settings, the share as last decided, and each round's decisions.

    ``cap`` is the relay's transport (both clients', if it has two). ``lease`` is how long the store keeps slots
    without a renewal, so also how soon a killed relay's slots come back; ``margin`` (default a third of it) is how
    long before a lease ends the relay stops using its connections, and must cover one request: the transport's
    connect and read timeouts together.
    """

    def __init__(
        self,
        slots: ConnectionSlots,
        key: str,
        *,
        lease: float = 90.0,
        margin: float | None = None,
        limit: int = MAX_SLOTS,
        clock: Clock | None = None,
    ) -> None:
        self._slots = slots
        self._key = key
        self._lease = check_duration(lease, "slot_lease")
        self._margin = self._lease / 3 if margin is None else check_duration(margin, "slot_margin")
        self._limit = limit
        SlotShare(want=1, lease=self._lease, margin=self._margin, limit=limit)  # refuse bad settings now
        self._clock = clock if clock is not None else _defaults.clock()
        self._owner = ""
        self._depth = 1
        self._share: SlotShare | None = None
        self._failure: FlowmailerError | None = None  # the store's last refusal

    @property
    def share(self) -> SlotShare | None:
        """The share as last decided; None unless started."""
        return self._share

    def _begin(self, owner: str, want: int, depth: int) -> None:
        """A share of up to ``want`` connections, each carrying up to ``depth`` sends at once (a pipeline)."""
        self._owner, self._depth = owner, depth
        self._share = SlotShare(want=want, lease=self._lease, margin=self._margin, limit=self._limit)

    def _started(self) -> None:
        """After the first round: fail now if the store did not answer at all, as a bad outbox would."""
        assert self._share is not None, "start() first"
        if self._share.valid_until == -math.inf:
            raise self._failure or OutboxError("the connection slot store did not answer")

    def _capping(self, connections: int) -> CapTo:
        return CapTo(connections, connections * self._depth)

    def _round(self) -> SlotIo[float]:
        """One round: ask the store if it is time, then cap to what the share allows; when to come back
        (monotonic)."""
        share = self._share
        assert share is not None, "start() first"
        now = self._clock.monotonic()
        if share.due(now):
            # Idle connections over the share close first, and fewer sends start.
            in_use = yield self._capping(share.cap(now))
            assert isinstance(in_use, tuple)
            open_now, running = in_use
            # A running send may open a connection at any moment; ``depth`` of them share one.
            request = share.request(max(open_now, -(-running // self._depth)))
            asked_at = self._clock.monotonic()
            answer = yield Ask(request)
            if isinstance(answer, FlowmailerError):
                self._failure = answer
                share = share.failed(self._clock.monotonic())
                _log.warning(
                    "relay %s: could not renew its connection slots (%s); it stops using them %.0f s before they "
                    "could be handed on",
                    self._owner, answer, self._margin,
                )  # fmt: skip
            else:
                assert isinstance(answer, SlotHolding)
                before = share.held
                share = share.answered(asked_at, answer)
                if share.held != before:
                    _log.info(
                        "relay %s: holds %d of the %d connection slots of client id %s, shared by %d relays",
                        self._owner, share.held, self._limit, self._key, share.owners,
                    )  # fmt: skip
            self._share = share
        now = self._clock.monotonic()
        yield self._capping(share.cap(now))
        return share.wake_at(now)

    def _ending(self) -> SlotIo[None]:
        """Stop: close every connection that is idle, allow no send, and give every slot back."""
        yield CapTo(0, 0)
        failed = yield GiveBack()
        if isinstance(failed, FlowmailerError):  # the lease runs out on its own
            _log.warning(
                "relay %s: could not give its slots back (%s); they free within the lease", self._owner, failed
            )
        if self._share is not None:
            self._share = self._share.released()

    def _store(self, effect: Ask | GiveBack) -> object:
        """The store's answer to ``effect`` (it blocks: the async keeper calls this in a worker thread)."""
        try:
            if isinstance(effect, GiveBack):
                self._slots.release(self._key, self._owner)
                return None
            if isinstance(effect.request, AcquireSlots):
                return self._slots.acquire(self._key, self._owner, effect.request.count, self._lease)
            return self._slots.renew(self._key, self._owner, self._lease)
        except FlowmailerError as e:
            return e


class SlotKeeper(SlotKeeping):
    """Keeps a threaded relay within its share of the ``limit`` connections that credential ``key`` (its client
    id) may have open at Flowmailer, shared through ``slots`` with every relay that uses the same store; the
    settings are :class:`SlotKeeping`'s."""

    def __init__(
        self,
        slots: ConnectionSlots,
        key: str,
        cap: ConnectionCap,
        *,
        lease: float = 90.0,
        margin: float | None = None,
        limit: int = MAX_SLOTS,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(slots, key, lease=lease, margin=margin, limit=limit, clock=clock)
        self._cap = cap
        self._cond = threading.Condition()
        self._stepping = threading.Lock()  # the thread's rounds and a test's own never interleave
        self._allowed = 0
        self._active = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self, owner: str, want: int) -> None:
        """Ask for a share of up to ``want`` slots once now (so the relay starts with what it can get; the store's
        error if it cannot answer at all, a missing permission say), then keep it in a thread until :meth:`stop`."""
        self._begin(owner, want, 1)
        self._stopping = False
        self.step()
        self._started()
        self._thread = threading.Thread(target=self._run, name="flowmailer-relay-slots", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing, close every connection that is idle, and give every slot back."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._drive(self._ending())

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """One send (or search) at a time per slot usable: wait until fewer are running than the share allows.

        After :meth:`stop` it waits no more; the transport's cap of 0 then refuses the request locally."""
        with self._cond:
            while self._active >= self._allowed and not self._stopping:
                self._cond.wait()
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify()

    def step(self) -> float:
        """One round: ask the store if it is time, then apply the share's cap; when to come back (monotonic)."""
        with self._stepping:
            return self._drive(self._round())

    def poll(self) -> None:
        """A round unless one is under way: the relay's claimer loop calls it each turn, so the share follows the
        relay's own clock (a test's fake one too), while the thread keeps it going if the claimer is stuck."""
        if self._share is not None and self._stepping.acquire(blocking=False):
            try:
                self._drive(self._round())
            finally:
                self._stepping.release()

    def _drive(self, io: SlotIo[_R]) -> _R:
        try:
            effect = next(io)
            while True:
                effect = io.send(self._cap_to(effect) if isinstance(effect, CapTo) else self._store(effect))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _cap_to(self, cap: CapTo) -> tuple[int, int]:
        open_now = self._cap.limit_connections(cap.connections)
        with self._cond:  # sends over a lowered cap finish; their connections close as they come back
            self._allowed = cap.sends
            self._cond.notify_all()
            return open_now, self._active

    def _run(self) -> None:
        while not self._stopping:
            wake_at = self.step()
            with self._cond:
                if not self._stopping:
                    self._cond.wait(max(0.0, wake_at - self._clock.monotonic()))
