"""The async transport: anyio streams (under asyncio or trio), keep-alive per IP address, optional HTTP/1.1
pipelining; the requests queued on a connection written together, answers read by a lean parser (h11 for any
answer that is not simple, ``_answers``).

Pipelining submits is safe here because of how failures are classified, not because submits are idempotent:
every request written on a connection that then breaks is reported ``Ambiguous`` (the shell reconciles it by its
client reference before any resend) and every request not yet written in full is ``NotSent``. No request is ever
silently resent, so depth 3 (what Flowmailer's own Magento connector used) costs no duplicates.
"""

from __future__ import annotations

import math
import select
import socket
import ssl
from collections import deque
from collections.abc import Iterator, Mapping
from types import TracebackType

import anyio
import attrs
import h11
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream

from flowmailer.adapters._answers import AnswerReader
from flowmailer.adapters._answers import BrokenError as _BrokenError
from flowmailer.adapters._answers import UnreadableError as _UnreadableError
from flowmailer.adapters._http1 import ONE_WRITE_LIMIT, limit_text, render_request
from flowmailer.adapters._tls import (
    MAX_CONNECTIONS,
    InFlight,
    check_connection_limit,
    check_pool_settings,
    require_verifying,
    untrusted,
    verifying_context,
)
from flowmailer.core import Ambiguous, ConfigurationError, NotSent, Origin, TransportResult, WireRequest, WireResponse

__all__ = ["MAX_PIPELINE_DEPTH", "AnyioPoolStats", "AnyioTransport"]

#: A deeper pipeline only grows what one broken connection makes ambiguous.
MAX_PIPELINE_DEPTH = 16

#: What anyio, the ssl module, h11 and the socket layer raise for network trouble; anything else is a bug.
#: A deadline (``anyio.fail_after``) raises TimeoutError, an OSError.
_NETWORK_ERRORS = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, h11.ProtocolError)

_Key = tuple[str, int, str]

#: The in-flight figure's unit per connection: divisible by 1 to 10, so the figure per connection is exact.
_SHARES = 2520


@attrs.frozen
class AnyioPoolStats:
    """Connections open now and ever opened (each a TLS handshake), and the most requests one carried at once."""

    open: int
    opened: int
    max_in_flight: int


class _Lot:
    """Tasks waiting in line until woken (trio's ParkingLot, which anyio lacks, on anyio events).

    A task woken but cancelled before it ran passes its wake-up to the next in line, so none is lost.
    """

    def __init__(self) -> None:
        self._waiters: deque[anyio.Event] = deque()

    def __bool__(self) -> bool:
        return bool(self._waiters)

    async def park(self) -> None:
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.unpark(1)
            else:
                self._waiters.remove(event)
            raise

    def unpark(self, count: int = 1) -> int:
        """Wake up to ``count`` tasks, first come first; how many were."""
        woken = 0
        while self._waiters and woken < count:
            self._waiters.popleft().set()
            woken += 1
        return woken

    def unpark_all(self) -> int:
        return self.unpark(len(self._waiters))


@attrs.define(eq=False)
class _Out:
    """A request's bytes on a connection's outbox, from their turn to be written until the write carrying them
    ended; ``state`` says where they are, ``woken`` is set when it changes for the request's task (written by
    another's write, at its turn to read its answer: one wake-up, not one for the write and one for the turn)."""

    pieces: tuple[bytes, ...]
    #: What reading its answer needs: the method (HEAD has no body) and the most body bytes taken.
    method: str
    cap: int
    state: int = 0  # _QUEUED, _PROMOTED, _TAKEN, _WRITTEN or _FAILED
    #: Its answer's number on the connection, given when a write takes it.
    seq: int = -1
    #: Why the write carrying it failed, and whether it may have been written in full all the same.
    failed: str = ""
    whole: bool = False
    woken: anyio.Event = attrs.Factory(anyio.Event)
    #: Its answer, when the task reading an earlier one found it complete behind its own and read it too.
    response: WireResponse | None = None


#: Waiting behind a write in progress; told to write (the write before it ended with the outbox not empty);
#: in a write in progress; written; its write failed (``failed``, ``whole``).
_QUEUED, _PROMOTED, _TAKEN, _WRITTEN, _FAILED = range(5)


@attrs.define(eq=False)
class _Conn:
    key: _Key
    stream: TLSStream
    born: float
    #: The raw socket, for the idle-close poll (looked up once: anyio builds its typed attributes on every call).
    sock: socket.socket
    answers: AnswerReader = attrs.Factory(lambda self: AnswerReader(self.key[0]), takes_self=True)
    #: Requests holding a place on this connection (waiting to write, written, or reading their answer).
    in_flight: int = 0
    #: Requests taken by a write (each one's answer number is the count before it).
    written: int = 0
    answered: int = 0
    used: bool = False
    #: Takes no new request (too old, or the transport is closing); the ones on it are still answered.
    retired: bool = False
    broken: str | None = None
    #: Requests waiting for the write in progress to end: the next write takes them all, in this order (the
    #: order of their answers), in one TLS write. At most one task writes at a time (``writing``).
    outbox: deque[_Out] = attrs.Factory(deque)
    writing: bool = False
    #: Written and not yet answered, in order: the task reading an answer reads those already here behind it.
    unanswered: deque[_Out] = attrs.Factory(deque)
    #: By the number of the answer each waits for: the task whose answer is next (woken alone, not every reader on
    #: the connection for every answer).
    turns: dict[int, anyio.Event] = attrs.Factory(dict)

    def wake_all(self) -> None:
        for turn in self.turns.values():
            turn.set()
        self.turns.clear()
        while self.outbox:  # not taken by any write: not sent
            out = self.outbox.popleft()
            out.state, out.failed = _FAILED, self.broken or "the connection closed"
            out.woken.set()
        self.writing = False


class AnyioTransport:
    """A :class:`flowmailer.ports.AsyncTransport`: keep-alive connections per (origin, IP address), at most
    ``max_connections`` open in all, up to ``pipeline_depth`` requests written on one before their answers come;
    the same code under ``asyncio.run`` and ``trio.run`` (anyio picks the running loop's backend).

    The socket goes to the IP address; SNI and the certificate check use the DNS name, against the operating
    system's trust store (truststore) unless ``ca_bundle`` or ``ssl_context`` is given. A context that does not
    verify is refused. ``connect_timeout`` covers TCP and the TLS handshake; ``read_timeout`` covers writing a
    request and reading its whole answer. A request's own ``timeout`` (what the retry deadline leaves) shortens
    every limit, and its ``answer_limit`` caps the body read. Connections older than ``max_connection_age`` take
    no new request.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_connections: int = MAX_CONNECTIONS,
        pipeline_depth: int = 1,
        max_connection_age: float = 300.0,
        checkout_timeout: float = 30.0,
        ca_bundle: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = "flowmailer-python",
    ) -> None:
        check_pool_settings(
            max_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            checkout_timeout=checkout_timeout,
            max_connection_age=max_connection_age,
        )
        if not 1 <= pipeline_depth <= MAX_PIPELINE_DEPTH:
            raise ConfigurationError(
                "pipeline_depth",
                f"{pipeline_depth!r} is outside 1..{MAX_PIPELINE_DEPTH}",
                "use 1 (no pipelining) or a small depth such as 3",
            )
        self._ssl_context = verifying_context(ca_bundle, ssl_context)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max = max_connections  # lowered (and raised back, never past the built one) by limit_connections
        self._built_max = max_connections
        self._depth = pipeline_depth
        self._max_age = max_connection_age
        self._checkout_timeout = checkout_timeout
        self._user_agent = user_agent
        self._conns: dict[_Key, list[_Conn]] = {}
        self._open = 0  # connections in self._conns plus those still connecting
        self._opened = 0
        self._max_in_flight = 0
        #: Tasks waiting at the cap, by the key they wait for: a place that opens wakes one task that can use it.
        self._waiting: dict[_Key, _Lot] = {}
        self._closed = False
        self._in_flight = InFlight()

    def stats(self) -> AnyioPoolStats:
        return AnyioPoolStats(self._open, self._opened, self._max_in_flight)

    async def limit_connections(self, limit: int) -> int:
        """A :class:`flowmailer.ports.AsyncConnectionCap`: at most ``limit`` connections from now on (never more
        than ``max_connections``). Idle ones over it close now, since an idle keep-alive connection still counts at
        Flowmailer; busy ones over it take no new request and close once their pipelines drain. How many are open
        once the idle ones closed."""
        before, self._max = self._max, min(check_connection_limit(limit), self._built_max)
        await self._shed()
        if self._max > before:  # a raised cap lets waiting tasks connect (the rest wait again)
            for lot in self._waiting.values():
                lot.unpark_all()
        return self._open

    def in_flight(self, origin: Origin) -> Mapping[str, int]:
        """The load on each address of ``origin`` (none: left out), for the core's choice of the least loaded: its
        requests taken and not yet answered per open connection to it (in 2520ths, exact for 1 to 10
        connections; an address with none counts as one). Per connection, since each pipelines on its own: an
        address with four connections has room for more than one with three."""
        counts = self._in_flight.of(origin)
        if not counts:
            return counts  # an idle origin reads as no load: the core's rotation needs no search
        host, port = origin.host, origin.port
        return {a: n * _SHARES // max(1, len(self._conns.get((host, port, a), ()))) for a, n in counts.items()}

    async def send(self, request: WireRequest, origin: Origin, address: str) -> TransportResult:
        pieces = render_request(request, origin, self._user_agent)
        now = anyio.current_time()
        ends = now + (math.inf if request.timeout is None else request.timeout)
        key = (origin.host, origin.port, address)
        self._in_flight.add(origin, address, 1)
        try:
            conn = self._ready(key, now) if now < ends else None
            if conn is not None:  # the usual case: no cancel scope, nothing awaited, so ``now`` is still now
                conn.in_flight += 1
                self._max_in_flight = max(self._max_in_flight, conn.in_flight)
            else:
                got = await self._checkout(key, origin, ends, now)
                if not isinstance(got, _Conn):
                    return got
                conn, now = got, anyio.current_time()
            try:
                return await self._exchange(conn, request, origin, pieces, ends, now)
            finally:
                conn.in_flight -= 1
                await self._checkin(conn)
        finally:
            self._in_flight.add(origin, address, -1)

    async def aclose(self) -> None:
        """Close every connection now; requests still on them end ``Ambiguous`` or ``NotSent``."""
        self._closed = True
        for conn in [c for conns in self._conns.values() for c in conns]:
            await self._drop(conn, "the transport was closed")
        for lot in self._waiting.values():
            lot.unpark_all()

    # --- the pool --------------------------------------------------------------------------------------------

    async def _checkout(
        self, key: _Key, origin: Origin, ends: float = math.inf, now: float | None = None
    ) -> _Conn | NotSent:
        """A place on a live connection to ``key``: an idle one, else a new one under the cap, else a pipeline;
        waiting no later than ``ends`` (the request's own timeout).

        At the cap, a key with no connection of its own takes the slot of the oldest idle connection elsewhere.
        ``checkout_timeout`` bounds the wait for a place only: a connection it finds room to open has
        ``connect_timeout`` (and ``ends``) for its handshake, as if no wait had come before.
        """
        if now is None:
            now = anyio.current_time()
        waited = max(0.0, min(self._checkout_timeout, ends - now))
        room = False
        with anyio.CancelScope(deadline=now + waited):
            while True:
                if self._closed:
                    return NotSent("the transport is closed", local=True)
                conn = await self._usable(key, now)
                if conn is None and self._open >= self._max and not self._conns.get(key):
                    victim = self._oldest_idle()
                    if victim is not None:
                        await self._drop(victim, "its slot went to another address")
                if conn is None and self._open < self._max:
                    room = True  # to connect, out of the scope: nothing is awaited before _connect counts it open
                    break
                if conn is None:
                    conn = self._least_loaded(key, now)
                if conn is not None:
                    conn.in_flight += 1
                    self._max_in_flight = max(self._max_in_flight, conn.in_flight)
                    return conn
                await self._waiting.setdefault(key, _Lot()).park()
                now = anyio.current_time()
        if room:
            return await self._connect(key, origin, ends)
        if not self._max:
            return NotSent(f"no connection may be open (the cap is 0) for {waited:g} s", local=True)
        return NotSent(f"all {self._max} connections stayed busy for {waited:g} s", local=True)

    def _ready(self, key: _Key, now: float) -> _Conn | None:
        """What the first turn of :meth:`_checkout`'s loop would take without awaiting anything (and so without
        its cancel scope, which :meth:`send` spares the usual request), or None: an idle
        connection (the first one :meth:`_usable` would keep, when there is no stale one before it to close), or
        else, at the cap, a place on a pipeline."""
        if self._closed:
            return None
        for conn in self._conns.get(key, ()):
            if conn.in_flight or conn.retired or conn.broken is not None:
                continue
            if now - conn.born >= self._max_age or (conn.used and _closed_by_peer(conn)):
                return None  # to be closed first: the scoped loop does that
            return conn
        if self._open < self._max or not self._conns.get(key):
            return None  # a connection to open, or a slot to take from another address: the loop's work
        return self._least_loaded(key, now)

    async def _usable(self, key: _Key, now: float) -> _Conn | None:
        """An idle connection to ``key`` that is young (at ``now``) and still open; stale ones found on the way are
        closed."""
        for conn in list(self._conns.get(key, ())):
            if conn.in_flight or conn.retired or conn.broken is not None:
                continue
            if now - conn.born >= self._max_age:
                await self._drop(conn, "it reached max_connection_age")
            elif conn.used and _closed_by_peer(conn):
                await self._drop(conn, "the server closed it while it was idle")
            else:
                return conn
        return None

    def _least_loaded(self, key: _Key, now: float) -> _Conn | None:
        open_ = [
            c
            for c in self._conns.get(key, ())
            if c.broken is None and not c.retired and c.in_flight < self._depth and now - c.born < self._max_age
        ]
        return min(open_, key=lambda c: c.in_flight, default=None)

    def _oldest_idle(self) -> _Conn | None:
        idle = [c for conns in self._conns.values() for c in conns if not c.in_flight]
        return min(idle, key=lambda c: c.born, default=None)

    async def _connect(self, key: _Key, origin: Origin, ends: float) -> _Conn | NotSent:
        # Before every handshake, not every request: one on an open connection goes over a verified handshake.
        require_verifying(self._ssl_context)
        host, port, address = key
        self._open += 1
        self._opened += 1
        try:
            with _fail_at(min(anyio.current_time() + self._connect_timeout, ends)):
                # The socket goes to the IP address; SNI and the certificate check use the DNS name. Not
                # "standard compatible": HTTP frames its own answers, so an EOF without close_notify is an EOF.
                # connect_tcp closes the TCP stream itself when the handshake fails.
                stream = await anyio.connect_tcp(
                    address,
                    port,
                    tls=True,
                    ssl_context=self._ssl_context,
                    tls_hostname=host,
                    tls_standard_compatible=False,
                )
        except (*_NETWORK_ERRORS, ssl.SSLError, ssl.CertificateError) as e:
            self._open -= 1
            self._wake_any()
            why = "timed out" if isinstance(e, TimeoutError) else _describe(e)
            return NotSent(f"could not connect to {origin.host} at {address}:{port}: {why}", untrusted=untrusted(e))
        except BaseException:
            self._open -= 1
            self._wake_any()
            raise
        sock = stream.extra(SocketAttribute.raw_socket)  # noqa: S610 - anyio's typed attributes, not Django
        conn = _Conn(key, stream, anyio.current_time(), sock, in_flight=1)
        self._conns.setdefault(key, []).append(conn)
        self._max_in_flight = max(self._max_in_flight, 1)
        self._wake(key, self._depth - 1)  # tasks waiting at the cap may pipeline onto it
        return conn

    async def _checkin(self, conn: _Conn) -> None:
        if self._closed or anyio.current_time() - conn.born >= self._max_age:
            conn.retired = True
        if self._open > self._max:  # the cap was lowered: this one may be the connection to close, or to retire
            await self._shed()
        if conn.broken is not None or conn.retired:
            if not conn.in_flight:
                await self._drop(conn, conn.broken or "it was retired")
        elif not self._wake(conn.key, 1) and not conn.in_flight:
            self._wake_evictor()

    async def _shed(self) -> None:
        """Bring the open connections down to the cap: close idle ones, oldest first, then retire the least loaded
        busy ones (they take no new request and close once drained). One still connecting is shed at its checkin."""
        while True:
            conns = [c for cs in self._conns.values() for c in cs]
            live = [c for c in conns if not c.retired and c.broken is None]
            if self._open - (len(conns) - len(live)) <= self._max:
                return
            idle = [c for c in live if not c.in_flight]
            if idle:
                await self._drop(min(idle, key=lambda c: c.born), "the connection cap was lowered")
            elif live:
                min(live, key=lambda c: c.in_flight).retired = True
            else:
                return

    async def _drop(self, conn: _Conn, reason: str) -> None:
        """Forget ``conn`` and close it; requests still on it wake up and see ``reason``."""
        if conn.broken is None:
            conn.broken = reason
        conns = self._conns.get(conn.key)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._conns[conn.key]
            self._open -= 1
            self._wake_any()
        conn.wake_all()
        await anyio.aclose_forcefully(conn.stream)

    def _wake(self, key: _Key, count: int) -> bool:
        """Room on a connection to ``key``: wake up to ``count`` tasks waiting for that key; whether any was."""
        lot = self._waiting.get(key)
        return bool(lot and count > 0 and lot.unpark(count=count))

    def _wake_evictor(self) -> None:
        """An idle connection: a task waiting for an address with no connection may close it and take its slot."""
        for key, lot in self._waiting.items():
            if lot and not self._conns.get(key):
                lot.unpark(count=1)
                return

    def _wake_any(self) -> None:
        """A slot under the cap came free: any waiting task may open a connection with it."""
        for lot in self._waiting.values():
            if lot:
                lot.unpark(count=1)
                return

    # --- one exchange ----------------------------------------------------------------------------------------

    async def _exchange(
        self, conn: _Conn, request: WireRequest, origin: Origin, pieces: tuple[bytes, ...], ends: float, now: float
    ) -> TransportResult:
        address = conn.key[2]
        limit = min(self._read_timeout, ends - now)
        if conn.broken is not None:
            return NotSent(f"connection to {address} broke before the request was written: {conn.broken}")
        out = _Out(pieces, request.method, request.answer_limit)
        conn.outbox.append(out)  # FIFO: answers come back in the order requests were written
        # One deadline (one cancel scope) for writing and the whole answer; what failed is told by ``out.state``.
        try:
            with _fail_at(now + limit):
                if conn.writing:
                    await out.woken.wait()  # the write in progress, or the one after it, takes it along
                if out.state <= _PROMOTED:
                    await self._write(conn, out)
                if out.state == _FAILED:
                    raise _BrokenError(out.failed)
                while out.response is None and conn.answered != out.seq and conn.broken is None:
                    turn = conn.turns[out.seq] = anyio.Event()
                    await turn.wait()
                if out.response is not None:
                    return out.response  # read with an earlier answer; the turns are already passed on
                if conn.broken is not None:
                    raise _BrokenError(conn.broken)
                response = await self._read(conn, out)
        except _UnreadableError as e:
            await self._drop(conn, f"an answer was not read: {e}")
            return Ambiguous(f"request written to {address}, then {e}", unreadable=True)
        except (*_NETWORK_ERRORS, _BrokenError) as e:
            if out.response is not None:  # its answer came with an earlier one (the connection is whole)
                return out.response
            timed_out = isinstance(e, TimeoutError)
            if out.state <= _PROMOTED:  # timed out waiting for its turn to be written: nothing of it was sent
                self._unqueue(conn, out)
                return NotSent(f"timed out before the request was written to {address}", local=True)
            if out.state == _FAILED and not out.whole:
                # A request not written in full cannot be acted on: its framing (Content-Length) is incomplete.
                reason = "timed out writing" if timed_out else _describe(e)
                await self._drop(conn, f"writing failed: {reason}")
                return NotSent(f"connection to {address} closed before the request was written: {reason}")
            if out.state != _WRITTEN:  # in a write that failed or did not end: it may have been written in full
                reason = "timed out writing" if timed_out else _describe(e)
                await self._drop(conn, f"writing failed: {reason}")
                return Ambiguous(f"request may have been written in full to {address}, then the write failed: {reason}")
            reason = limit_text(max(0.0, limit)) if timed_out else _describe(e)
            await self._drop(conn, f"the answer to an earlier request failed: {reason}")
            return Ambiguous(f"request written to {address}, then no complete answer: {reason}")
        except BaseException:
            # Cancelled before any of it was sent, or with its answer read: the connection is as it was.
            if out.state <= _PROMOTED or out.response is not None:
                self._unqueue(conn, out)
                raise
            why = "while it was written" if out.state != _WRITTEN else "while it waited for its answer"
            await self._drop(conn, f"a request was cancelled {why}")
            raise
        conn.answered += 1
        conn.unanswered.popleft()
        self._read_ahead(conn)
        following = conn.turns.pop(conn.answered, None)
        if following is not None:
            following.set()
        return response

    def _read_ahead(self, conn: _Conn) -> None:
        """Give the requests behind on the pipeline their answers already here (simple and complete), so their
        tasks run together rather than each woken by the one before; any other answer its own task reads."""
        while conn.unanswered and conn.broken is None:
            out = conn.unanswered[0]
            out.response = conn.answers.ahead(out.method, out.cap)
            if out.response is None:
                return
            conn.unanswered.popleft()
            turn = conn.turns.pop(conn.answered, None)
            conn.answered += 1
            if turn is not None:
                turn.set()

    async def _write(self, conn: _Conn, own: _Out) -> None:
        """Write every request on ``conn``'s outbox (the caller's own among them) in order, in one TLS write (a
        large body apart), then let the first request queued meanwhile write the next batch.

        If a write fails, each request it took is ``_FAILED``: those before the last one in the failed piece may
        have been written in full (``whole``), those after it were not. The last one (its end was in the piece) was
        not, unless the write was cancelled (its deadline) when every byte of the piece may have reached the kernel
        all the same (:func:`_may_have_sent_all`).
        """
        conn.writing = True
        if conn.written > conn.answered:
            # Answers are due on this connection, so the tasks they wake are about to send again: one turn of the
            # loop lets those that pick this connection join this write. (Cancelled here, it hands the write on.)
            own.state = _PROMOTED
            await anyio.lowlevel.checkpoint()
        batch = list(conn.outbox)
        conn.outbox.clear()
        for out in batch:
            out.state, out.seq = _TAKEN, conn.written
            conn.written += 1
        conn.unanswered.extend(batch)
        ending: list[_Out] = []
        try:
            for data, ending in _blobs(batch):
                await conn.stream.send(data)
                for out in ending:
                    out.state = _WRITTEN
        except BaseException as e:
            # Cancelled (its deadline) while it waited for the buffer to drain, the write may have gone out whole;
            # a connection found broken failed before, or lost with, what was still buffered.
            cancelled = isinstance(e, anyio.get_cancelled_exc_class())
            last = ending[-1] if ending and cancelled and _may_have_sent_all(conn.stream) else None
            for out in batch:
                if out.state == _TAKEN:
                    out.state, out.failed = _FAILED, "the write that carried it failed"
                    out.whole = out in ending[:-1] or out is last
                out.woken.set()
            raise  # the writer drops the connection, which fails what is still queued; no write follows
        conn.used = True
        for out in batch:
            if out is own:
                continue
            if conn.answered == out.seq or conn.broken is not None:
                out.woken.set()
            else:  # written, its answer not next: woken once, at its turn, rather than now and again then
                conn.turns[out.seq] = out.woken
        self._hand_on(conn)

    def _hand_on(self, conn: _Conn) -> None:
        """The write ended: the first request queued meanwhile writes the next batch (the task writing is still
        ``writing``, so no request that arrives now writes before the queued ones)."""
        conn.writing = False
        if conn.outbox and conn.broken is None:
            first = conn.outbox[0]
            first.state = _PROMOTED
            conn.writing = True
            first.woken.set()

    def _unqueue(self, conn: _Conn, out: _Out) -> None:
        """A request leaves the outbox before any write took it (cancelled, or timed out waiting)."""
        if out in conn.outbox:
            conn.outbox.remove(out)
        if out.state == _PROMOTED:  # it was to write the next batch: the next in line does
            out.state = _QUEUED
            self._hand_on(conn)

    async def _read(self, conn: _Conn, out: _Out) -> WireResponse:
        answers = conn.answers
        while (response := answers.next_answer(out.method, out.cap)) is None:
            try:
                data = await conn.stream.receive(65536)
            except anyio.EndOfStream:
                data = b""  # the end of the stream, which h11 is told of
            answers.feed(data)
        if answers.closing:
            conn.broken = "the server ends the connection after this answer"
        return response


def _may_have_sent_all(stream: TLSStream) -> bool:
    """After a send on ``stream`` was cancelled (a timeout): may the last byte it was given have reached the kernel?

    On trio, no: anyio hands trio's socket the bytes a piece at a time and returns once the last is taken, with no
    checkpoint after it, so a send that did not return did not hand it on. On asyncio, anyio gives every byte to
    the transport, then waits for its buffer to drain: cancelled in that wait (a timeout), what is still in the
    buffer is dropped with the connection (anyio 4.16 and later abort the transport; earlier ones flushed it), but
    an empty buffer means all of it went to the kernel, and the request may arrive whole. Told by the transport's
    buffer (anyio keeps the transport as ``_transport``); a stream whose buffer cannot be read is assumed to have
    sent it all, which costs a search, never a duplicate.
    """
    inner = getattr(stream, "transport_stream", None)
    if hasattr(inner, "_trio_socket"):
        return False
    size = getattr(getattr(inner, "_transport", None), "get_write_buffer_size", None)
    return not callable(size) or size() == 0


def _blobs(batch: list[_Out]) -> list[tuple[bytes, list[_Out]]]:
    """The batch's bytes as the writes to make, each with the requests whose last byte it carries: the small
    pieces of consecutive requests joined, a large body (over ONE_WRITE_LIMIT) written alone rather than copied."""
    blobs: list[tuple[bytes, list[_Out]]] = []
    small: list[bytes] = []
    ending: list[_Out] = []
    for out in batch:
        for piece in out.pieces:
            if len(piece) > ONE_WRITE_LIMIT:
                if small:
                    blobs.append((b"".join(small), ending))
                    small, ending = [], []
                blobs.append((piece, []))
            else:
                small.append(piece)
        if small:
            ending.append(out)
        else:
            blobs[-1][1].append(out)
    if small:
        blobs.append((b"".join(small), ending))
    return blobs


def _closed_by_peer(conn: _Conn) -> bool:
    """An idle keep-alive connection is unusable once the server closed it (it became readable: EOF or junk)."""
    fd = conn.sock.fileno()
    if fd < 0:
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)  # Windows has no poll
    return bool(readable)


class _fail_at:  # noqa: N801 - used like a function, as anyio.fail_at is
    """``trio.fail_at`` in anyio terms: TimeoutError once ``deadline`` (on the loop's clock) has passed.

    A cancel scope with the deadline, as anyio's ``fail_after`` is, without its two generator context managers and
    three clock reads: one is entered for every request (writing and reading its answer).
    """

    __slots__ = ("_scope",)

    def __init__(self, deadline: float) -> None:
        self._scope = anyio.CancelScope(deadline=deadline)

    def __enter__(self) -> anyio.CancelScope:
        return self._scope.__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        suppressed = self._scope.__exit__(exc_type, exc, tb)
        if self._scope.cancelled_caught and anyio.current_time() >= self._scope.deadline:
            raise TimeoutError
        return bool(suppressed)


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    parts = [f"{type(e).__name__}: {text}" if type(e).__name__ not in text else text]
    parts.extend(_describe_causes(e))
    return " <- ".join(parts)


def _describe_causes(e: BaseException) -> Iterator[str]:
    """anyio wraps ssl and socket errors (BrokenResourceError from SSLError): keep the cause in the reason."""
    seen = {id(e)}
    cause = e.__cause__ or e.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield f"{type(cause).__name__}: {cause}"
        cause = cause.__cause__ or cause.__context__
