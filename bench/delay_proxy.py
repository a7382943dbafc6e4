"""A TCP proxy that delays every byte by a fixed time each way: network latency on loopback, without netem.

It forwards TLS opaquely, so SNI and the certificate check still reach the server behind it. Each chunk read on
one side is written to the other ``delay`` seconds after it arrived, in order: latency, not a bandwidth limit.
A new connection's first bytes from the client wait one more round trip (``2 * delay``): the TCP handshake a real
network charges before anything can be sent, which loopback does not. An end of stream or a reset reaches the
other side ``delay`` late too, after the bytes before it.

It is a measuring instrument, so it must add nothing of its own beyond ``delay``:
- asyncio's default selector (epoll) rounds every timeout *up* to a whole millisecond, which made each hop up to
  1 ms late (2.3 ms over 20 ms per round trip on one idle connection, 4.2 ms at 10 connections: wrk reached
  only 0.82 of 10/RTT through it). ``select()`` takes a timeout in microseconds; with a few dozen sockets it
  costs no more than epoll.
- Protocols and one timer per direction, not streams and a task per chunk: a chunk costs a few microseconds
  of the proxy's CPU, which shares the machine's 2 cores with the server and the client under test.
Run: python bench/delay_proxy.py DELAY LISTEN_IP:PORT=TARGET_IP:PORT ...  (prints "ready" once listening).
"""

from __future__ import annotations

import asyncio
import collections
import selectors
import sys

_EOF = b""  # queued like data, so the end of stream keeps its place after the bytes before it
_CONNECTING: set[asyncio.Task[None]] = set()  # the loop holds tasks weakly


class _Delayed:
    """One direction of a connection: what arrived, each chunk with the time it is due on the other side."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, first_extra: float) -> None:
        self._loop = loop
        self._delay = delay
        self._extra = first_extra
        self._due: collections.deque[tuple[float, bytes]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._out: asyncio.Transport | None = None  # None until the far side is connected
        self._reset = False

    def attach(self, out: asyncio.Transport) -> None:
        self._out = out
        self._arm()

    def push(self, data: bytes) -> None:
        self._due.append((self._loop.time() + self._delay + self._extra, data))
        self._extra = 0.0
        self._arm()

    def reset(self) -> None:
        """The near side failed: the far side is aborted ``delay`` later, after what was due before it."""
        self._reset = True
        self.push(_EOF)

    def _arm(self) -> None:
        if self._timer is None and self._due and self._out is not None:
            self._timer = self._loop.call_at(self._due[0][0], self._flush)

    def _flush(self) -> None:
        self._timer = None
        out = self._out
        assert out is not None
        now = self._loop.time()
        while self._due and self._due[0][0] <= now:
            _, data = self._due.popleft()
            if out.is_closing():
                self._due.clear()
                return
            if data:
                out.write(data)
            elif self._reset or not out.can_write_eof():
                out.abort()
            else:
                try:
                    out.write_eof()
                except OSError:  # the far side is gone already: nothing left to tell it
                    out.abort()
        self._arm()


class _Side(asyncio.Protocol):
    """One socket of a proxied connection; what it reads goes to ``forward``, delayed."""

    def __init__(self, forward: _Delayed, on_lost: _Delayed | None = None) -> None:
        self.forward = forward
        self.transport: asyncio.Transport | None = None
        self._on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.forward.push(data)

    def eof_received(self) -> bool:
        self.forward.push(_EOF)
        return True  # keep our writing half open: the other direction may still have bytes to deliver

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.forward.reset()


async def _serve(listen: tuple[str, int], target: tuple[str, int], delay: float) -> asyncio.Server:
    loop = asyncio.get_running_loop()

    def client_side() -> _Side:
        upstream = _Delayed(loop, delay, first_extra=2 * delay)
        downstream = _Delayed(loop, delay, first_extra=0.0)
        side = _Side(upstream)

        async def connect() -> None:
            try:
                server_transport, _ = await loop.create_connection(lambda: _Side(downstream), *target)
            except OSError:
                if side.transport is not None:
                    side.transport.abort()
                return
            assert isinstance(server_transport, asyncio.Transport)
            assert side.transport is not None
            upstream.attach(server_transport)
            downstream.attach(side.transport)

        task = loop.create_task(connect())
        _CONNECTING.add(task)
        task.add_done_callback(_CONNECTING.discard)
        return side

    return await loop.create_server(client_side, *listen)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main(delay: float, routes: list[str]) -> None:
    servers = []
    for route in routes:
        listen, _, target = route.partition("=")
        servers.append(await _serve(_address(listen), _address(target), delay))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    for server in servers:
        server.close()


if __name__ == "__main__":
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())  # timeouts in microseconds: see the docstring
    try:
        loop.run_until_complete(main(float(sys.argv[1]), sys.argv[2:]))
    finally:
        loop.close()
