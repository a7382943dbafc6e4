"""The synchronous transport: urllib3 connections to chosen IP addresses, TLS verified against the DNS name."""

from __future__ import annotations

import http.client
import ssl
import threading
from collections import deque

import attrs
import urllib3.exceptions
from urllib3.connection import HTTPSConnection
from urllib3.util.wait import wait_for_read

from flowmailer.adapters._clock import SystemClock
from flowmailer.adapters._http1 import decode_body, render_request
from flowmailer.adapters._tls import (
    MAX_CONNECTIONS,
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
        self._max = max_connections
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

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(self._open, sum(len(q) for q in self._idle.values()), self._opened, self._waiting)

    def send(self, request: WireRequest, origin: Origin, address: str) -> TransportResult:
        require_verifying(self._ssl_context)
        pieces = render_request(request, origin, self._user_agent)  # refused before a connection is taken
        key = (origin.host, origin.port, address)
        got = self._checkout(key)
        if isinstance(got, NotSent):
            return got
        conn, is_new = got
        if is_new:
            failed = self._connect(conn, origin, address)
            if failed is not None:
                self._checkin(conn, reusable=False)
                return failed
        reusable = False
        try:
            result, reusable = self._exchange(conn.conn, request.method, pieces, address)
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

    def _checkout(self, key: _Key) -> tuple[_Conn, bool] | NotSent:
        """An idle live connection for ``key``, or a new unconnected one (``True``) within the cap.

        At the cap, a key that already has connections waits for one of them (a handshake costs more than a
        wait); a key with none takes the slot of the oldest idle connection to another address. A connection
        leaves the count only after its socket is closed, so no more than the cap are ever open at once.
        """
        deadline = self._clock.monotonic() + self._checkout_timeout
        while True:
            to_close: list[_Conn] = []
            with self._lock:
                got = self._checkout_locked(key, deadline, to_close)
            if to_close:
                self._close_and_forget(to_close)
            if got is None:
                continue  # slots were freed by closing: try again
            if isinstance(got, NotSent) or got[1] or _still_open(got[0].conn):
                return got
            self._close_and_forget([got[0]])  # the server closed it while it was idle: forget it and try again

    def _checkout_locked(
        self, key: _Key, deadline: float, to_close: list[_Conn]
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
                return NotSent(f"all {self._max} connections stayed busy for {self._checkout_timeout} s", local=True)
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

    def _connect(self, c: _Conn, origin: Origin, address: str) -> NotSent | None:
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
        self, conn: HTTPSConnection, method: str, pieces: tuple[bytes, ...], address: str
    ) -> tuple[TransportResult, bool]:
        """Write the request (in one piece unless its body is large), read the whole answer; and whether the
        connection can serve another.

        urllib3 made the connection (TLS to the IP, verified against the DNS name); the exchange itself is one
        write and http.client's parser, without urllib3's request and response wrappers.
        """
        sock = conn.sock
        assert sock is not None
        try:
            for piece in pieces:
                sock.sendall(piece)
        except _NETWORK_ERRORS as e:
            # A request not written in full cannot be acted on: its framing (Content-Length) is incomplete.
            conn.close()
            return NotSent(f"connection to {address} closed before the request was written: {_describe(e)}"), False
        response = http.client.HTTPResponse(sock, method=method)
        try:
            response.begin()  # skips 100 Continue
            if response.status < 200:
                # http.client stops at any other interim answer and the final one would stay unread on the socket.
                conn.close()
                return Ambiguous(f"request written to {address}, then only an interim {response.status}"), False
            body = response.read()
        except _NETWORK_ERRORS as e:
            conn.close()
            return Ambiguous(f"request written to {address}, then no complete answer: {_describe(e)}"), False
        finally:
            response.close()
        headers = tuple(response.getheaders())
        return WireResponse(response.status, headers, decode_body(headers, body)), not response.will_close

    def _checkin(self, c: _Conn, reusable: bool) -> None:
        with self._lock:
            if reusable and not self._closed and self._clock.monotonic() - c.born < self._max_age:
                self._idle.setdefault(c.key, deque()).append(c)
                self._wake()
                return
        self._close_and_forget([c])

    def _wake(self) -> None:
        """A connection came back or a slot came free: wake one waiting thread per key, and each sees whether it
        can use what changed. Waking by key and count missed wake-ups (a woken thread is counted until it runs)."""
        for wakeup in self._wakeups.values():
            wakeup.notify()


def _still_open(conn: HTTPSConnection) -> bool:
    """An idle keep-alive connection is unusable if the server closed it (it became readable: EOF or junk)."""
    sock = conn.sock
    return sock is not None and not wait_for_read(sock, timeout=0.0)


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return f"{type(e).__name__}: {text}" if type(e).__name__ not in text else text
