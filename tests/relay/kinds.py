"""Both relays behind one API, so that one suite runs against each: the threaded ``Relay``, and ``AsyncRelay`` run
to its end by ``anyio.run`` on asyncio or on trio."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import anyio
import anyio.to_thread
import pytest

from flowmailer.app import Relay, RelayStats
from flowmailer.app.async_relay import AsyncRelay
from flowmailer.core import Message, SubmitMessage
from flowmailer.ports import Outbox, Reconciler, Submitter

#: Which relay ``make_relay`` builds: "threaded", or AsyncRelay on "asyncio" or "trio".
KINDS = ("threaded", "asyncio", "trio")
_kind: contextvars.ContextVar[str] = contextvars.ContextVar("relay_kind", default="threaded")


class AnyRelay(Protocol):
    """What the shared tests ask of a relay."""

    @property
    def owner(self) -> str: ...

    def run(self, *, until_empty: bool = False) -> RelayStats: ...

    def drain(self) -> RelayStats: ...

    def stop(self) -> None: ...

    def stats(self) -> RelayStats: ...

    def install_signal_handlers(self) -> None: ...


class InThreads:
    """A blocking client (a test's scripted fake, or ``Client``) as an async one: each call in a worker thread, so
    a fake holding a send on a gate blocks no task; a cancelled send is abandoned, as an async client's is."""

    def __init__(self, client: Submitter | Reconciler) -> None:
        self.client = client

    async def check_credentials(self) -> float:
        return await anyio.to_thread.run_sync(self.client.check_credentials)

    async def submit(self, message: SubmitMessage) -> str:
        submit = self.client.submit  # type: ignore[union-attr]
        return await anyio.to_thread.run_sync(submit, message, abandon_on_cancel=True)

    async def messages_by_tag(self, tag: str) -> AsyncIterator[Message]:
        for found in await anyio.to_thread.run_sync(lambda: list(self.client.messages_by_tag(tag))):
            yield found


class Blocking:
    """An ``AsyncRelay`` with ``Relay``'s blocking API: ``run`` is ``anyio.run`` of its ``run`` on ``backend``."""

    def __init__(self, relay: AsyncRelay, backend: str) -> None:
        self.relay, self.backend = relay, backend

    @property
    def owner(self) -> str:
        return self.relay.owner

    def run(self, *, until_empty: bool = False) -> RelayStats:
        return anyio.run(functools.partial(self.relay.run, until_empty=until_empty), backend=self.backend)

    def drain(self) -> RelayStats:
        return self.run(until_empty=True)

    def stop(self) -> None:
        self.relay.stop()

    def stats(self) -> RelayStats:
        return self.relay.stats()

    def install_signal_handlers(self) -> None:
        self.relay.install_signal_handlers()


def make_relay(outbox: Outbox, client: Submitter, **options: Any) -> AnyRelay:
    """The relay of the running test's kind over ``client`` (a blocking one; the async relay gets it in threads)."""
    kind = _kind.get()
    if kind == "threaded":
        return Relay(outbox, client, **options)
    if options.get("reconciler") is not None:
        options["reconciler"] = InThreads(options["reconciler"])
    return Blocking(AsyncRelay(outbox, InThreads(client), **options), kind)


@pytest.fixture(params=KINDS)
def relay_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test runs once per relay kind, and ``make_relay`` builds that kind."""
    token = _kind.set(request.param)
    try:
        yield request.param
    finally:
        _kind.reset(token)
