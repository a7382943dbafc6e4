"""The async relay's hold on its share of a credential's connection slots: ``SlotKeeping``'s rounds performed by a
task in the relay's task group, the store called in worker threads (SQLite and psycopg block), the turns on anyio
events. One slot is one connection, which carries up to the relay's pipeline depth of sends at once."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from flowmailer.app._slots import CapTo, SlotIo, SlotKeeping
from flowmailer.core import MAX_SLOTS
from flowmailer.ports import AsyncConnectionCap, Clock, ConnectionSlots

__all__ = ["AsyncSlotKeeper"]

_R = TypeVar("_R")


class AsyncSlotKeeper(SlotKeeping):
    """:class:`flowmailer.app.SlotKeeper` for :class:`AsyncRelay`: keeps the relay within its share of the
    ``limit`` connections that credential ``key`` (its client id) may have open at Flowmailer, shared through
    ``slots`` with every relay (threaded or async) on the same store. ``cap`` is the relay's transport
    (``AnyioTransport``); the settings are ``SlotKeeper``'s. Holding ``n`` slots, the relay's transport may have
    ``n`` connections open and the relay ``n`` x its pipeline depth sends running.
    """

    def __init__(
        self,
        slots: ConnectionSlots,
        key: str,
        cap: AsyncConnectionCap,
        *,
        lease: float = 90.0,
        margin: float | None = None,
        limit: int = MAX_SLOTS,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(slots, key, lease=lease, margin=margin, limit=limit, clock=clock)
        self._cap = cap
        self._allowed = 0
        self._active = 0
        self._stopping = False
        self._token: anyio.lowlevel.EventLoopToken | None = None  # the running loop's, for poll() from a thread
        self._loop_thread: int | None = None

    async def start(self, owner: str, want: int, *, depth: int = 1) -> None:
        """Ask for a share of up to ``want`` slots (connections, each carrying up to ``depth`` sends) once now; the
        store's error if it cannot answer at all. Then run :meth:`keep` in a task until :meth:`stop`."""
        self._begin(owner, want, depth)
        self._stopping = False
        self._stepping = anyio.Lock()  # the task's rounds, the claimer's and a test's never interleave
        self._changed = anyio.Event()  # set (and replaced) when the cap changes or a turn ends
        self._nudged = anyio.Event()  # set (and replaced) by poll(): a round now
        self._token, self._loop_thread = anyio.lowlevel.current_token(), threading.get_ident()
        await self.step()
        self._started()

    async def keep(self) -> None:
        """Keep the share until :meth:`stop`: a round whenever the share says, or :meth:`poll` asks."""
        while not self._stopping:
            wake_at = await self.step()
            nudged = self._nudged
            with anyio.move_on_after(max(0.0, wake_at - self._clock.monotonic())):
                await nudged.wait()
            if nudged.is_set():
                self._nudged = anyio.Event()

    async def stop(self) -> None:
        """Stop renewing, close every connection that is idle, and give every slot back."""
        self._stopping = True
        self._nudge()
        self._notify()
        async with self._stepping:  # after a round under way
            await self._drive(self._ending())
        self._token = self._loop_thread = None

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """One send (or search) at a time per place on the connections usable: wait until fewer are running than
        the share allows. After :meth:`stop` it waits no more; the transport's cap of 0 refuses the request."""
        while self._active >= self._allowed and not self._stopping:
            await self._changed.wait()
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1
            self._notify()

    async def step(self) -> float:
        """One round: ask the store if it is time, then apply the share's cap; when to come back (monotonic)."""
        async with self._stepping:
            return await self._drive(self._round())

    def poll(self) -> None:
        """A round soon: the relay's claimer loop asks each turn, so the share follows the relay's own clock (a
        test's fake one too), while the task keeps it going if the claimer is stuck. Safe from any thread."""
        token = self._token
        if token is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._nudge()
            return
        with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
            anyio.from_thread.run_sync(self._nudge, token=token)

    def _nudge(self) -> None:
        self._nudged.set()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _drive(self, io: SlotIo[_R]) -> _R:
        try:
            effect = next(io)
            while True:
                if isinstance(effect, CapTo):
                    answer: object = await self._cap_to(effect)
                else:
                    answer = await anyio.to_thread.run_sync(self._store, effect)
                effect = io.send(answer)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _cap_to(self, cap: CapTo) -> tuple[int, int]:
        open_now = await self._cap.limit_connections(cap.connections)
        raised, self._allowed = cap.sends > self._allowed, cap.sends
        if raised:  # sends over a lowered cap finish; their connections close as their pipelines drain
            self._notify()
        return open_now, self._active
