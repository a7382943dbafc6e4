"""The synchronous client: an application calls it directly, from as many threads as it likes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, NamedTuple, TypeVar, cast

from flowmailer.app import _defaults
from flowmailer.app._api import SyncApi
from flowmailer.app._shell import DEFAULT_API_URL, DEFAULT_LOGIN_URL, Shell
from flowmailer.core import (
    AccessToken,
    AskReports,
    AwaitResolution,
    Deliver,
    Effect,
    Fed,
    GetToken,
    Listing,
    Loop,
    Resolve,
    Send,
    Sleep,
)
from flowmailer.ports import TokenStore, Transport

__all__ = ["DEFAULT_API_URL", "DEFAULT_LOGIN_URL", "Client"]

T = TypeVar("T")


class Client(Shell[Transport, TokenStore], SyncApi):
    """Flowmailer's REST API, reliably: ``submit`` returns the message id only after a 201 and otherwise raises an
    error that says what happened and whether the message may have been accepted.

    Every request goes through the core's request loop (:class:`flowmailer.core.Engine`): its retry policy, the
    next healthy IP address of the host, one token shared by all threads. This class only performs what the loop
    asks for. Adapters left out are built by default: urllib3 over the system resolver, trust from the operating
    system (or ``ca_bundle``), an in-memory token store, the real clock.
    """

    def _start_shell(self) -> None:
        #: The engine holds it while its shared state (budget, address books) changes, never across an effect.
        self._lock = threading.Lock()
        self._guard = self._lock
        self._resolved = threading.Condition(self._lock)
        #: One report at a time: Flowmailer's guidelines ask for no overlapping report requests.
        self._reporting = threading.Lock()

    def _default_transport(self, ca_bundle: str | None, max_connections: int, max_connection_age: float) -> Transport:
        return _defaults.transport(
            ca_bundle=ca_bundle,
            max_connections=max_connections,
            max_connection_age=max_connection_age,
            clock=self._clock,
        )

    def _default_token_store(self) -> TokenStore:
        return _defaults.token_store(self._clock)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    # --- driving the loop ------------------------------------------------------------------------------------

    def _bind(self, start: Callable[..., Loop[Any]], exclusive: bool) -> Callable[..., Any]:
        def run(*args: object, **kwargs: object) -> object:
            if not exclusive:
                return self._run(start(self._engine, *args, **kwargs))
            with self._reporting:
                return self._run(start(self._engine, *args, **kwargs))

        return run

    def _bind_listing(self, start: Callable[..., Listing[Any]]) -> Callable[..., Any]:
        return lambda *args, **kwargs: self._iterate(start(self._engine, *args, **kwargs).loop)

    def _run(self, loop: Loop[T]) -> T:
        """Drive one call to its end: step, perform the effect, feed what happened."""
        try:
            effect = self._step(loop, None)
            while not isinstance(effect, _Finished):
                effect = self._step(loop, self._fed(self._perform(effect)))
            return cast("T", effect.value)
        finally:
            self._abandon(loop)

    def _iterate(self, loop: Loop[None]) -> Iterator[Any]:
        try:
            effect = self._step(loop, None)
            while not isinstance(effect, _Finished):
                if isinstance(effect, Deliver):
                    yield effect.item
                    effect = self._step(loop, self._fed(None))
                else:
                    effect = self._step(loop, self._fed(self._perform(effect)))
        finally:
            self._abandon(loop)

    def _step(self, loop: Loop[Any], fed: Fed | None) -> Effect | _Finished:
        seen = self._engine.resolutions
        try:
            return next(loop) if fed is None else loop.send(fed)
        except StopIteration as stop:
            return _Finished(stop.value)
        finally:
            self._woken(seen)

    def _abandon(self, loop: Loop[Any]) -> None:
        """Close a call that ended or was abandoned (an error, an interrupt): it lets go of what it holds."""
        seen = self._engine.resolutions
        loop.close()
        self._woken(seen)

    def _woken(self, seen: int) -> None:
        if self._engine.resolutions != seen:  # a resolution ended in this step: the calls waiting for it go on
            with self._resolved:
                self._resolved.notify_all()

    def _fed(self, value: object) -> Fed:
        return Fed(value, self._clock.monotonic(), self._clock.now())

    def _perform(self, effect: Effect) -> object:
        if isinstance(effect, Send):
            return self._transport.send(effect.request, effect.origin, effect.address)
        if isinstance(effect, GetToken):
            return self._tokens.token(effect.credentials, self._fetch_token)
        if isinstance(effect, Sleep):
            self._clock.sleep(self._retrying(effect))
            return None
        if isinstance(effect, Resolve):
            return self._resolver.resolve(effect.name, effect.port)
        if isinstance(effect, AwaitResolution):
            with self._resolved:
                self._resolved.wait_for(lambda: self._engine.resolutions != effect.seen)
            return None
        if isinstance(effect, AskReports):
            return getattr(self._reports, effect.method)(*effect.args)
        return self._perform_now(effect)

    def _fetch_token(self) -> AccessToken:
        token: AccessToken = self._run(self._engine.fetch_token())
        return token


class _Finished(NamedTuple):
    value: Any
