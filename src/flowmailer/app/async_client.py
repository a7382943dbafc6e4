"""The async client: :class:`flowmailer.app.Client`'s twin for asyncio and trio programs alike (on anyio), driving
the same core loop.

Imports anyio, so it is not re-exported from ``flowmailer.app``; ``flowmailer.AsyncClient`` imports it on first use.
Durations, deadlines and retry waits use the event loop's clock (``anyio.current_time``, ``anyio.sleep``), so under
trio a ``trio.testing.MockClock`` controls them; wall time (token expiry) comes from ``clock.now()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, TypeVar

import anyio

from flowmailer.app import _defaults
from flowmailer.app._api import AsyncApi
from flowmailer.app._shell import Shell
from flowmailer.core import (
    AccessToken,
    AskReports,
    AwaitResolution,
    Deliver,
    Effect,
    Emit,
    Fed,
    ForgetToken,
    GetToken,
    Listing,
    Loop,
    NewReference,
    Resolve,
    Send,
    Sleep,
    Tick,
)
from flowmailer.ports import AsyncTokenStore, AsyncTransport

__all__ = ["AsyncClient"]

T = TypeVar("T")
#: The effects :meth:`Shell._perform_now` performs: nothing to wait for.
_AT_ONCE = (Tick, NewReference, Emit, ForgetToken)


class AsyncClient(Shell[AsyncTransport, AsyncTokenStore], AsyncApi):
    """Flowmailer's REST API from async tasks, reliably: ``await submit`` returns the message id only after a 201
    and otherwise raises the same errors as :class:`flowmailer.app.Client`, from the same core loop.

    Adapters left out are built by default: an ``AnyioTransport`` (trust from the operating system, or
    ``ca_bundle``), an ``AnyioTokenStore`` on ``clock.now``, and the system resolver, run in a worker thread.
    """

    def _start_shell(self) -> None:
        #: Set (and replaced) whenever a resolution ends: what a call waiting for another's resolution waits on.
        self._resolved = anyio.Event()
        #: One report at a time: Flowmailer's guidelines ask for no overlapping report requests.
        self._reporting = anyio.Lock()

    def _default_transport(
        self, ca_bundle: str | None, max_connections: int, max_connection_age: float
    ) -> AsyncTransport:
        return _defaults.async_transport(
            ca_bundle=ca_bundle, max_connections=max_connections, max_connection_age=max_connection_age
        )

    def _default_token_store(self) -> AsyncTokenStore:
        return _defaults.async_token_store(self._clock.now)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    # --- driving the loop: one task per call, no lock (a step never awaits) ---------------------------------

    def _bind(self, start: Callable[..., Loop[Any]], exclusive: bool) -> Callable[..., Any]:
        async def run(*args: object, **kwargs: object) -> object:
            if not exclusive:
                return await self._run(start(self._engine, *args, **kwargs))
            async with self._reporting:
                return await self._run(start(self._engine, *args, **kwargs))

        return run

    def _bind_listing(self, start: Callable[..., Listing[Any]]) -> Callable[..., Any]:
        return lambda *args, **kwargs: self._iterate(start(self._engine, *args, **kwargs).loop)

    async def _run(self, loop: Loop[T]) -> T:
        """Drive one call to its end. Effects that need no waiting are performed in line (no coroutine for them)
        and fed the clocks' last reading: no time passed since."""
        fed: Fed | None = None
        try:
            effect = next(loop)
            while True:
                value: object
                if isinstance(effect, _AT_ONCE):
                    value = self._perform_now(effect)
                    if fed is not None:
                        effect = loop.send(Fed(value, fed.monotonic, fed.wall))
                        continue
                elif isinstance(effect, Send):
                    value = await self._transport.send(effect.request, effect.origin, effect.address)
                elif isinstance(effect, GetToken):
                    value = await self._tokens.token(effect.credentials, self._fetch_token)
                else:
                    value = await self._perform(effect)
                fed = Fed(value, anyio.current_time(), self._clock.now())
                effect = loop.send(fed)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            loop.close()  # an abandoned call (an error, a cancellation) lets go of what it holds

    async def _iterate(self, loop: Loop[None]) -> AsyncIterator[Any]:
        try:
            effect = next(loop)
            while True:
                if isinstance(effect, Deliver):
                    yield effect.item
                    effect = loop.send(self._now(None))
                else:
                    effect = loop.send(await self._fed(effect))
        except StopIteration:
            return
        finally:
            loop.close()

    async def _fed(self, effect: Effect) -> Fed:
        return self._now(await self._perform(effect))

    def _now(self, value: object) -> Fed:
        return Fed(value, anyio.current_time(), self._clock.now())

    async def _perform(self, effect: Effect) -> object:
        if isinstance(effect, Send):
            return await self._transport.send(effect.request, effect.origin, effect.address)
        if isinstance(effect, GetToken):
            return await self._tokens.token(effect.credentials, self._fetch_token)
        if isinstance(effect, Sleep):
            await anyio.sleep(self._retrying(effect))
            return None
        if isinstance(effect, Resolve):
            try:  # the resolver port is blocking (getaddrinfo): it must not stall the other tasks
                return await anyio.to_thread.run_sync(self._resolver.resolve, effect.name, effect.port)
            finally:  # no checkpoint until the loop has taken the answer in: waiters wake to the new book
                self._resolved.set()
                self._resolved = anyio.Event()
        if isinstance(effect, AwaitResolution):
            while self._engine.resolutions == effect.seen:
                await self._resolved.wait()
            return None
        if isinstance(effect, AskReports):
            # The store may block (SQLite waits for locks and syncs to disk): its calls run in a worker thread.
            return await anyio.to_thread.run_sync(getattr(self._reports, effect.method), *effect.args)
        return self._perform_now(effect)

    async def _fetch_token(self) -> AccessToken:
        return await self._run(self._engine.fetch_token())
