"""How a request reaches one IP address of an HTTPS origin."""

from __future__ import annotations

from typing import Protocol

from flowmailer.core import Origin, TransportResult, WireRequest

__all__ = ["AsyncTransport", "Transport"]


class Transport(Protocol):
    """Sends one request to ``address`` (an IP literal) while TLS verifies ``origin.host``.

    Returns the response, or ``NotSent`` when nothing reached the server, or ``Ambiguous`` when the request
    was written and no answer came. Never raises for network trouble; never follows redirects.

    A transport may also offer ``in_flight(origin) -> Mapping[str, int]``: the load on each address of ``origin``,
    its requests taken and not yet answered or a figure that grows with them (an address with none left out). The
    client then sends each attempt to the least loaded healthy address, since each address has its own
    connections; without it, plain rotation. Both bundled transports offer it: the sync one counts requests, the
    async one requests per open connection (a pipelining address with more connections has more room).
    """

    def send(self, request: WireRequest, origin: Origin, address: str) -> TransportResult: ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    """The async-coloured twin of :class:`Transport` (asyncio or trio), ``in_flight`` (sync) optional as there."""

    async def send(self, request: WireRequest, origin: Origin, address: str) -> TransportResult: ...

    async def aclose(self) -> None: ...
