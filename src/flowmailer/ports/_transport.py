"""How a request reaches one IP address of an HTTPS origin."""

from __future__ import annotations

from typing import Protocol

from flowmailer.core import Origin, TransportResult, WireRequest

__all__ = ["AsyncTransport", "Transport"]


class Transport(Protocol):
    """Sends one request to ``address`` (an IP literal) while TLS verifies ``origin.host``.

    Returns the response, or ``NotSent`` when nothing reached the server, or ``Ambiguous`` when the request
    was written and no answer came. Never raises for network trouble; never follows redirects.
    """

    def send(self, request: WireRequest, origin: Origin, address: str) -> TransportResult: ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    """The async-coloured twin of :class:`Transport` (asyncio or trio)."""

    async def send(self, request: WireRequest, origin: Origin, address: str) -> TransportResult: ...

    async def aclose(self) -> None: ...
