"""The threaded relay's hold on its share of a credential's connection slots: a thin shell over ``core.SlotShare``.

One thread asks the slot store when the share says so, then caps the transport and the relay's sends to what the
share allows; the relay's workers take a turn before each claim they handle. An async relay drives the same
``SlotShare`` with a task instead of the thread.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Iterator

from flowmailer.app import _defaults
from flowmailer.core import MAX_SLOTS, AcquireSlots, FlowmailerError, OutboxError, SlotShare
from flowmailer.core._checks import check_duration
from flowmailer.ports import Clock, ConnectionCap, ConnectionSlots

__all__ = ["SlotKeeper"]

_log = logging.getLogger(__name__)


class SlotKeeper:
    """Keeps a relay within its share of the ``limit`` connections that credential ``key`` (its client id) may
    have open at Flowmailer, shared through ``slots`` with every relay that uses the same store.

    ``cap`` is the relay's transport (both clients', if it has two). ``lease`` is how long the store keeps slots
    without a renewal, so also how soon a killed relay's slots come back; ``margin`` (default a third of it) is how
    long before a lease ends the relay stops using its connections, and must cover one request: the transport's
    connect and read timeouts together.
    """

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
        self._slots = slots
        self._key = key
        self._cap = cap
        self._lease = check_duration(lease, "slot_lease")
        self._margin = self._lease / 3 if margin is None else check_duration(margin, "slot_margin")
        self._limit = limit
        SlotShare(want=1, lease=self._lease, margin=self._margin, limit=limit)  # refuse bad settings now
        self._clock = clock if clock is not None else _defaults.clock()
        self._owner = ""
        self._share: SlotShare | None = None
        self._cond = threading.Condition()
        self._stepping = threading.Lock()  # the thread's rounds and a test's own never interleave
        self._allowed = 0
        self._active = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._failure: FlowmailerError | None = None  # the store's last refusal

    @property
    def share(self) -> SlotShare | None:
        """The share as last decided; None unless started."""
        return self._share

    def start(self, owner: str, want: int) -> None:
        """Ask for a share of up to ``want`` slots once now (so the relay starts with what it can get; the store's
        error if it cannot answer at all, a missing permission say), then keep it in a thread until :meth:`stop`."""
        self._owner = owner
        self._share = SlotShare(want=want, lease=self._lease, margin=self._margin, limit=self._limit)
        self._stopping = False
        self.step()
        if self._share.valid_until == -math.inf:  # the store did not answer: fail now, as a bad outbox would
            raise self._failure or OutboxError("the connection slot store did not answer")
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
        self._apply(0)
        try:
            self._slots.release(self._key, self._owner)
        except FlowmailerError as e:  # the lease runs out on its own
            _log.warning("relay %s: could not give its slots back (%s); they free within the lease", self._owner, e)
        if self._share is not None:
            self._share = self._share.released()

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
            return self._step()

    def poll(self) -> None:
        """A round unless one is under way: the relay's claimer loop calls it each turn, so the share follows the
        relay's own clock (a test's fake one too), while the thread keeps it going if the claimer is stuck."""
        if self._share is not None and self._stepping.acquire(blocking=False):
            try:
                self._step()
            finally:
                self._stepping.release()

    def _step(self) -> float:
        share = self._share
        assert share is not None, "start() first"
        now = self._clock.monotonic()
        if share.due(now):
            self._apply(share.cap(now))  # idle connections over the share close first, and fewer sends start
            open_now = self._cap.limit_connections(share.cap(now))
            with self._cond:
                running = self._active
            request = share.request(max(open_now, running))  # a running send may open a connection at any moment
            asked_at = self._clock.monotonic()
            try:
                if isinstance(request, AcquireSlots):
                    holding = self._slots.acquire(self._key, self._owner, request.count, self._lease)
                else:
                    holding = self._slots.renew(self._key, self._owner, self._lease)
            except FlowmailerError as e:
                self._failure = e
                share = share.failed(self._clock.monotonic())
                _log.warning(
                    "relay %s: could not renew its connection slots (%s); it stops using them %.0f s before they "
                    "could be handed on",
                    self._owner, e, self._margin,
                )  # fmt: skip
            else:
                before = share.held
                share = share.answered(asked_at, holding)
                if share.held != before:
                    _log.info(
                        "relay %s: holds %d of the %d connection slots of client id %s, shared by %d relays",
                        self._owner, share.held, self._limit, self._key, share.owners,
                    )  # fmt: skip
            self._share = share
        now = self._clock.monotonic()
        self._apply(share.cap(now))
        return share.wake_at(now)

    def _apply(self, allowed: int) -> None:
        self._cap.limit_connections(allowed)
        with self._cond:  # sends over a lowered cap finish; their connections close as they come back
            self._allowed = allowed
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stopping:
            wake_at = self.step()
            with self._cond:
                if not self._stopping:
                    self._cond.wait(max(0.0, wake_at - self._clock.monotonic()))
