"""A server of one's own that misbehaves on purpose, and both clients pointed at it.

Time is fake everywhere: a trickling answer moves the clock one second per byte it writes, and waits for the move
before its next byte, so "one byte per second" holds exactly, whatever the machine's speed.
"""

from __future__ import annotations

import json
import queue
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import trio
import trio.testing

from flowmailer.adapters import Urllib3Transport
from flowmailer.adapters.anyio_transport import AnyioTransport
from flowmailer.app import Client
from flowmailer.app.async_client import AsyncClient
from flowmailer.core import Credentials, RetryPolicy
from flowmailer.testing import FakeClock, StaticResolver
from tests.adapters.tls_server import HOST, TlsServer

ACCOUNT = "acct"
MESSAGE_ID = "20211230130407e3b36e2e92fdbefc86"
CREDENTIALS = Credentials(ACCOUNT, "client", "secret")


def answer(status: str, *headers: tuple[str, str], body: bytes = b"") -> bytes:
    """A raw HTTP/1.1 answer with a Content-Length."""
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def token_answer(expires_in: int = 3600) -> bytes:
    body = json.dumps({"access_token": "tok", "expires_in": expires_in, "token_type": "bearer"}).encode()
    return answer("200 OK", ("Content-Type", "application/json"), body=body)


def created(server: TlsServer, location: str | None = None, *, padding: int = 0) -> bytes:
    """201 Created with a Location (by default the right one), padded to make a long head."""
    where = location if location is not None else f"{server.origin.url()}/{ACCOUNT}/messages/{MESSAGE_ID}"
    pad = (("X-Padding", "x" * padding),) if padding else ()
    return answer("201 Created", ("Location", where), *pad)


class Writer:
    """Writes an answer the way a hostile server does, counting the bytes the client let through."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, sock: ssl.SSLSocket, data: bytes) -> bool:
        try:
            sock.sendall(data)
        except OSError:
            return False
        self.sent += len(data)
        return True


class Trickle(Writer):
    """``data`` one byte at a time, ``tick()`` after each: the clock moves one second per byte."""

    def __init__(self, data: bytes, tick: Callable[[], None]) -> None:
        super().__init__()
        self.data = data
        self.tick = tick

    def __call__(self, sock: ssl.SSLSocket) -> None:
        for i in range(len(self.data)):
            if not self.send(sock, self.data[i : i + 1]):
                return
            self.tick()


class Flood(Writer):
    """A head, then ``body`` repeated until ``total`` bytes went (None: for ever) or the client hung up."""

    def __init__(self, head: bytes, body: bytes, total: int | None = None) -> None:
        super().__init__()
        self.head, self.body, self.total = head, body, total

    def __call__(self, sock: ssl.SSLSocket) -> None:
        if not self.send(sock, self.head):
            return
        body_sent = 0
        while self.total is None or body_sent < self.total:
            if not self.send(sock, self.body):
                return
            body_sent += len(self.body)


class TrioTicks:
    """One second of trio's MockClock per byte a Trickle writes: the server thread waits until trio jumped."""

    def __init__(self, clock: trio.testing.MockClock) -> None:
        self.clock = clock
        self._ticks: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._moved = threading.Semaphore(0)

    def tick(self) -> None:
        self._ticks.put(True)
        self._moved.acquire(timeout=30)

    async def run(self) -> None:
        while await trio.to_thread.run_sync(self._ticks.get, abandon_on_cancel=True):
            self.clock.jump(1)
            self._moved.release()

    def stop(self) -> None:
        self._ticks.put(False)


def sync_client(
    server: TlsServer, clock: FakeClock, *, read_timeout: float = 30.0, policy: RetryPolicy | None = None
) -> Client:
    transport = Urllib3Transport(ca_bundle=server.ca_bundle, read_timeout=read_timeout, clock=clock)
    return Client(
        CREDENTIALS,
        api_url=server.origin.url(),
        login_url=server.origin.url(),
        policy=policy,
        transport=transport,
        resolver=StaticResolver({HOST: server.addresses}),
        clock=clock,
    )


def async_client(
    server: TlsServer, *, read_timeout: float = 30.0, policy: RetryPolicy | None = None, **kwargs: Any
) -> AsyncClient:
    # A connect timeout that trio's MockClock never reaches (these tests stay on trio for its MockClock): only the
    # answer's time is under test.
    transport = AnyioTransport(ca_bundle=server.ca_bundle, read_timeout=read_timeout, connect_timeout=1e6)
    return AsyncClient(
        CREDENTIALS,
        api_url=server.origin.url(),
        login_url=server.origin.url(),
        policy=policy,
        transport=transport,
        resolver=StaticResolver({HOST: server.addresses}),
        **kwargs,
    )


def run_trio(main: Callable[[trio.testing.MockClock], Any]) -> None:
    """Run ``main(clock)`` under a MockClock that moves only when jumped."""
    clock = trio.testing.MockClock()
    trio.run(main, clock, clock=clock)


def messages(count: int, start: int = 0) -> Iterator[dict[str, object]]:
    for i in range(start, start + count):
        yield {"id": f"{MESSAGE_ID[:-4]}{i:04d}", "submitted": "2024-01-01T00:00:00.000Z"}
