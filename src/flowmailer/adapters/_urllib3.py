"""The synchronous transport: urllib3 connections to chosen IP addresses, TLS verified against the DNS name."""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import threading
from collections import deque
from collections.abc import Mapping

import attrs
import urllib3.exceptions
from urllib3.connection import HTTPSConnection
from urllib3.util.wait import wait_for_read

from flowmailer.adapters._clock import SystemClock
from flowmailer.adapters._http1 import encoding_refused, limit_text, render_request, too_long
from flowmailer.adapters._tls import (
    MAX_CONNECTIONS,
    InFlight,
    check_connection_limit,
    check_pool_settings,
    require_verifying,
    untrusted,
    verifying_context,
)
from flowmailer.core import Ambiguous, NotSent, Origin, TransportResult, WireRequest, WireResponse
from flowmailer.ports import Clock

__all__ = ["MAX_CONNECTIONS", "PoolStats", "Urllib3Transport"]

#: What urllib3, http.client and the socket layer raise for network trouble (SSLError and CertificateError are
#: OSError and ValueError subclasses); everything else is a bug and propagates.
_NETWORK_ERRORS = (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException, ssl.CertificateError)

_Key = tuple[str, int, str]


@attrs.frozen
class PoolStats:
    """How many connections are open, idle, and were ever opened (each one a TLS handshake), and how many threads
    wait at the cap."""

    open: int
    idle: int
    opened: int
    waiting: int = 0


@attrs.define
class _Conn:
    conn: HTTPSConnection
    key: _Key
    born: float


class Urllib3Transport:
    """A :class:`flowmailer.ports.Transport`: keep-alive connections per (origin, IP address), at most
    ``max_connections`` open in all; the socket goes to the IP, SNI and the certificate check use the DNS name.

    Trust comes from the operating system's store (truststore) unless ``ca_bundle`` or ``ssl_context`` is given.
    ``read_timeout`` covers writing a request and reading its whole answer, head and body, as in the trio
    transport: a server that answers one byte at a time cannot hold a request longer. A request's own ``timeout``
    (what the retry deadline leaves) shortens every limit, and its ``answer_limit`` caps the body read.
    Connections older than ``max_connection_age`` are closed on return, so traffic follows DNS changes.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_connections: int = MAX_CONNECTIONS,
        checkout_timeout: float = 30.0,
        max_connection_age: float = 300.0,
        ca_bundle: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Clock | None = None,
        user_agent: str = "flowmailer-python",
    ) -> None:
        check_pool_settings(
            max_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            checkout_timeout=checkout_timeout,
            max_connection_age=max_connection_age,
        )
        self._ssl_context = verifying_context(ca_bundle, ssl_context)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max = max_connections  # lowered (and raised back, never past the built one) by limit_connections
        self._built_max = max_connections
        self._checkout_timeout = checkout_timeout
        self._max_age = max_connection_age
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._user_agent = user_agent
        self._lock = threading.Lock()
        #: Threads waiting at the cap, by the key they wait for; each key has its own condition on the one lock,
        #: so a change wakes one thread per key instead of every waiting thread.
        self._wakeups: dict[_Key, threading.Condition] = {}
        self._waiting = 0
        self._idle: dict[_Key, deque[_Conn]] = {}
        self._open = 0
        self._per_key: dict[_Key, int] = {}
        self._opened = 0
        self._closed = False
        self._in_flight = InFlight()

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(self._open, sum(len(q) for q in self._idle.values()), self._opened, self._waiting)

    def limit_connections(self, limit: int) -> int:
        """A :class:`flowmailer.ports.ConnectionCap`: at most ``limit`` connections from now on (never more than
        ``max_connections``); idle ones over it close now, since an idle keep-alive connection still counts at
        Flowmailer, and those in use close when they come back. How many are open once the idle ones closed."""
        with self._lock:
            self._max = min(check_connection_limit(limit), self._built_max)
            surplus: list[_Conn] = []
            while self._open - len(surplus) > self._max and (victim := self._oldest_idle()) is not None:
                surplus.append(victim)
            self._wake()  # a raised cap lets waiting threads connect
        self._close_and_forget(surplus)
        with self._lock:
            return self._open

    def in_flight(self, origin: Origin) -> Mapping[str, int]:
        """Requests taken and not yet answered per address of ``origin`` (none: left out), for the core's choice."""
        return self._in_flight.of(origin)

    def send(self, request: WireRequest, origin: Origin, address: str) -> TransportResult:
        require_verifying(self._ssl_context)
        pieces = render_request(request, origin, self._user_agent)  # refused before a connection is taken
        with self._lock:
            self._in_flight.add(origin, address, 1)
        try:
            return self._send(request, origin, address, pieces)
        finally:
            with self._lock:
                self._in_flight.add(origin, address, -1)

    def _send(self, request: WireRequest, origin: Origin, address: str, pieces: tuple[bytes, ...]) -> TransportResult:
        started = self._clock.monotonic()

        def left(limit: float) -> float:
            """``limit``, or less when the request's own timeout runs out sooner."""
            if request.timeout is None:
                return limit
            return min(limit, request.timeout - (self._clock.monotonic() - started))

        key = (origin.host, origin.port, address)
        got = self._checkout(key, left(self._checkout_timeout))
        if isinstance(got, NotSent):
            return got
        conn, is_new = got
        if is_new:
            failed = self._connect(conn, origin, address, left(self._connect_timeout))
            if failed is not None:
                self._checkin(conn, reusable=False)
                return failed
        reusable = False
        try:
            result, reusable = self._exchange(conn.conn, request, pieces, address, left(self._read_timeout))
        finally:
            self._checkin(conn, reusable)
        return result

    def close(self) -> None:
        """Close every idle connection now; connections in use close when they come back."""
        with self._lock:
            self._closed = True
            idle = [c for q in self._idle.values() for c in q]
            self._idle.clear()
            for wakeup in self._wakeups.values():
                wakeup.notify_all()
        self._close_and_forget(idle)

    def _checkout(self, key: _Key, timeout: float | None = None) -> tuple[_Conn, bool] | NotSent:
        """An idle live connection for ``key``, or a new unconnected one (``True``) within the cap.

        At the cap, a key that already has connections waits for one of them (a handshake costs more than a
        wait); a key with none takes the slot of the oldest idle connection to another address. A connection
        leaves the count only after its socket is closed, so no more than the cap are ever open at once.
        """
        timeout = self._checkout_timeout if timeout is None else timeout
        deadline = self._clock.monotonic() + timeout
        while True:
            to_close: list[_Conn] = []
            with self._lock:
                got = self._checkout_locked(key, deadline, to_close, timeout)
            if to_close:
                self._close_and_forget(to_close)
            if got is None:
                continue  # slots were freed by closing: try again
            if isinstance(got, NotSent) or got[1] or _still_open(got[0].conn):
                return got
            self._close_and_forget([got[0]])  # the server closed it while it was idle: forget it and try again

    def _checkout_locked(
        self, key: _Key, deadline: float, to_close: list[_Conn], timeout: float
    ) -> tuple[_Conn, bool] | NotSent | None:
        """What ``_checkout`` gets under the lock; None when connections in ``to_close`` must be closed first."""
        while True:
            if self._closed:
                return NotSent("the transport is closed", local=True)
            now = self._clock.monotonic()
            queue = self._idle.get(key)
            while queue:
                c = queue.pop()
                if now - c.born < self._max_age:
                    return c, False
                to_close.append(c)
            if to_close:
                return None
            if self._open >= self._max and not self._per_key.get(key):
                victim = self._oldest_idle()
                if victim is not None:
                    to_close.append(victim)
                    return None
            if self._open < self._max:
                self._open += 1
                self._opened += 1
                self._per_key[key] = self._per_key.get(key, 0) + 1
                c = _Conn(self._new_connection(key), key, now)
                return c, True
            remaining = deadline - now
            if remaining <= 0:
                if not self._max:
                    return NotSent(f"no connection may be open (the cap is 0) for {max(0.0, timeout):g} s", local=True)
                return NotSent(f"all {self._max} connections stayed busy for {max(0.0, timeout):g} s", local=True)
            wakeup = self._wakeups.get(key)
            if wakeup is None:
                wakeup = self._wakeups[key] = threading.Condition(self._lock)
            self._waiting += 1
            try:
                wakeup.wait(remaining)
            finally:
                self._waiting -= 1

    def _close_and_forget(self, conns: list[_Conn]) -> None:
        """Close first, then free the slots: a thread woken for a slot never connects before the socket is gone."""
        for c in conns:
            c.conn.close()
        with self._lock:
            for c in conns:
                self._forget(c)
                self._wake()

    def _forget(self, c: _Conn) -> None:
        self._open -= 1
        self._per_key[c.key] -= 1
        if not self._per_key[c.key]:
            del self._per_key[c.key]

    def _oldest_idle(self) -> _Conn | None:
        queues = [q for q in self._idle.values() if q]
        if not queues:
            return None
        return min(queues, key=lambda q: q[0].born).popleft()

    def _new_connection(self, key: _Key) -> HTTPSConnection:
        host, port, address = key
        return HTTPSConnection(
            address,
            port,
            timeout=self._connect_timeout,
            ssl_context=self._ssl_context,
            server_hostname=host,
        )

    def _connect(self, c: _Conn, origin: Origin, address: str, timeout: float) -> NotSent | None:
        if timeout <= 0:
            c.conn.close()
            return NotSent(f"no time left to connect to {address} within the request's timeout", local=True)
        c.conn.timeout = timeout
        try:
            c.conn.connect()
        except _NETWORK_ERRORS as e:
            c.conn.close()
            return NotSent(
                f"could not connect to {origin.host} at {address}:{origin.port}: {_describe(e)}", untrusted=untrusted(e)
            )
        assert c.conn.sock is not None
        c.conn.sock.settimeout(self._read_timeout)
        return None

    def _exchange(
        self, conn: HTTPSConnection, request: WireRequest, pieces: tuple[bytes, ...], address: str, limit: float
    ) -> tuple[TransportResult, bool]:
        """Write the request (in one piece unless its body is large), read the whole answer within ``limit``
        seconds and ``request.answer_limit`` bytes of body; and whether the connection can serve another.

        urllib3 made the connection (TLS to the IP, verified against the DNS name); the exchange itself is one
        write and http.client's parser, without urllib3's request and response wrappers.
        """
        sock = conn.sock
        assert sock is not None
        if limit <= 0:
            return NotSent(f"no time left to send to {address} within the request's timeout", local=True), True
        deadline = self._clock.monotonic() + limit
        try:
            sock.settimeout(min(self._read_timeout, limit))
            for piece in pieces:
                sock.sendall(piece)
        except _NETWORK_ERRORS as e:
            # A request not written in full cannot be acted on: its framing (Content-Length) is incomplete.
            conn.close()
            return NotSent(f"connection to {address} closed before the request was written: {_describe(e)}"), False
        reader = _DeadlineReader(sock, self._clock, deadline, limit_text(limit))
        response = http.client.HTTPResponse(_Buffered(reader), method=request.method)  # type: ignore[arg-type]
        cap = request.answer_limit
        try:
            response.begin()  # skips 100 Continue
            if response.status < 200:
                # http.client stops at any other interim answer and the final one would stay unread on the socket.
                conn.close()
                return Ambiguous(f"request written to {address}, then only an interim {response.status}"), False
            if response.length is not None and response.length > cap:
                conn.close()
                return Ambiguous(f"request written to {address}, then {too_long(cap)}", unreadable=True), False
            # Chunked or read to the close: never more than one byte past the cap. A known length is read whole, so
            # that a short body raises IncompleteRead.
            body = response.read() if response.length is not None else response.read(cap + 1)
            if len(body) > cap:
                conn.close()
                return Ambiguous(f"request written to {address}, then {too_long(cap)}", unreadable=True), False
        except _NETWORK_ERRORS as e:
            conn.close()
            return Ambiguous(f"request written to {address}, then no complete answer: {_describe(e)}"), False
        finally:
            response.close()
        headers = tuple(response.getheaders())
        refused = encoding_refused(headers, body)
        if refused is not None:
            conn.close()
            return Ambiguous(f"request written to {address}, then {refused}", unreadable=True), False
        return WireResponse(response.status, headers, body), not response.will_close

    def _checkin(self, c: _Conn, reusable: bool) -> None:
        with self._lock:
            if (
                reusable
                and not self._closed
                and self._open <= self._max
                and self._clock.monotonic() - c.born < self._max_age
            ):
                self._idle.setdefault(c.key, deque()).append(c)
                self._wake()
                return
        self._close_and_forget([c])

    def _wake(self) -> None:
        """A connection came back or a slot came free: wake one waiting thread per key, and each sees whether it
        can use what changed. Waking by key and count missed wake-ups (a woken thread is counted until it runs)."""
        for wakeup in self._wakeups.values():
            wakeup.notify()


class _DeadlineReader(io.RawIOBase):
    """The socket as http.client reads it, every read bounded by what is left of the exchange's deadline: the
    socket's own timeout bounds one read, so a server trickling bytes would otherwise hold the answer for ever."""

    def __init__(self, sock: socket.socket, clock: Clock, deadline: float, why: str) -> None:
        self._sock = sock
        self._clock = clock
        self._deadline = deadline
        self._why = why

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        left = self._deadline - self._clock.monotonic()
        if left <= 0:
            raise TimeoutError(self._why)
        self._sock.settimeout(left)
        try:
            return self._sock.recv_into(buffer)
        except TimeoutError:
            raise TimeoutError(self._why) from None


class _Buffered:
    """What http.client.HTTPResponse takes for a socket: something with ``makefile``."""

    def __init__(self, reader: _DeadlineReader) -> None:
        self._reader = reader

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(self._reader)


def _still_open(conn: HTTPSConnection) -> bool:
    """An idle keep-alive connection is unusable if the server closed it (it became readable: EOF or junk)."""
    sock = conn.sock
    return sock is not None and not wait_for_read(sock, timeout=0.0)


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return f"{type(e).__name__}: {text}" if type(e).__name__ not in text else text
