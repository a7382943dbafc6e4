"""FakeFlowmailer: real HTTPS on several loopback addresses, one thread per connection.

Threads with blocking stdlib TLS sockets and a hand-written HTTP/1.1 framer, because that is what sustains
thousands of TLS submits per second on one core (trio + h11 reached about 3,100/s with no API logic at all).
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import queue
import select
import selectors
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path

from flowmailer.core import ConfigurationError, Credentials, Origin
from flowmailer.testing._fake._api import API_HOST, LOGIN_HOST, SUBMIT_ROLE, Credential, FlowmailerState
from flowmailer.testing._fake._certs import Certificates
from flowmailer.testing._fake._faults import Fault, FaultInjector, FaultKind, FaultPlan, plan_of
from flowmailer.testing._fake._records import Recorder, Records
from flowmailer.testing._fake._wire import HttpError, Request, RequestReader, Response, json_response

__all__ = ["DEFAULT_ADDRESSES", "DEFAULT_CREDENTIALS", "FakeFlowmailer", "Mode"]

DEFAULT_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
DEFAULT_CREDENTIALS = (
    Credential("fake-admin", "fake-admin-secret", "ADMIN"),
    Credential("fake-submitter", "fake-submitter-secret", SUBMIT_ROLE),
)
#: Bodies beyond this are not even read (Flowmailer's own limit, 10 MiB, is answered 413 by the API).
_MAX_BODY = 64 * 1024 * 1024
#: The client closed its side (Linux's POLLRDHUP), or the connection is gone altogether.
_PEER_CLOSED = select.POLLRDHUP | select.POLLHUP
_STOP_TIMEOUT = 10.0


class Mode(enum.Enum):
    """How one address of the fake behaves; changeable while it runs."""

    HEALTHY = "healthy"
    #: Not listening: connects get ECONNREFUSED, and open connections to it are closed.
    REFUSE = "refuse"
    #: Accepts TCP and never answers, not even the TLS handshake; open connections stop answering.
    BLACKHOLE = "blackhole"
    #: Serves a certificate for another name, signed by the same CA: a verifying client must refuse it.
    WRONG_CERTIFICATE = "wrong-certificate"


class FakeFlowmailer:
    """A fake Flowmailer over real HTTPS that fails on purpose and counts everything; see docs/testing.md."""

    def __init__(
        self,
        addresses: Sequence[str] = DEFAULT_ADDRESSES,
        port: int = 0,
        *,
        account_id: str = "10001",
        credentials: Sequence[Credential] = DEFAULT_CREDENTIALS,
        token_lifetime: int = 60,
        lockout_seconds: float = 600.0,
        faults: FaultPlan | Iterable[Fault] | None = (),
        bounce_recipients: Iterable[str] = (),
        reference_prefix: str = "ref:",
        clock: Callable[[], float] = time.time,
        seed: int = 0,
    ) -> None:
        self._addresses = tuple(_check_addresses(addresses))
        if not 0 <= port <= 65535:
            raise ConfigurationError("port", f"{port} is not a port", "use 1 to 65535, or 0 for a free one")
        if not credentials or len({c.client_id for c in credentials}) != len(credentials):
            raise ConfigurationError("credentials", "empty or with a repeated client id", "give distinct client ids")
        if token_lifetime < 1:
            raise ConfigurationError("token_lifetime", f"{token_lifetime} s is too short", "use 1 s or more")
        if lockout_seconds < 0:
            raise ConfigurationError("lockout_seconds", "is negative", "use 0 (no lockout) or more")
        self._port = port
        self._credentials = tuple(credentials)
        self._recorder = Recorder(reference_prefix)
        self._state = FlowmailerState(
            account_id=account_id,
            credentials=self._credentials,
            token_lifetime=token_lifetime,
            lockout_seconds=lockout_seconds,
            bounce_recipients=bounce_recipients,
            clock=clock,
            seed=seed,
            recorder=self._recorder,
        )
        self._faults = FaultInjector(plan_of(faults))
        self._modes = dict.fromkeys(self._addresses, Mode.HEALTHY)
        self._certificates = Certificates()
        self._lock = threading.Lock()
        self._run: _Run | None = None

    # -- what clients need -------------------------------------------------------------------------------
    @property
    def addresses(self) -> tuple[str, ...]:
        """The IP addresses the fake's DNS names stand for (give them to a static resolver)."""
        return self._addresses

    @property
    def port(self) -> int:
        return self._running().port

    @property
    def api_origin(self) -> Origin:
        return Origin(API_HOST, self.port)

    @property
    def login_origin(self) -> Origin:
        return Origin(LOGIN_HOST, self.port)

    @property
    def api_url(self) -> str:
        return self.api_origin.url()

    @property
    def login_url(self) -> str:
        return self.login_origin.url()

    @property
    def ca_bundle(self) -> Path:
        """A PEM file with the fake's CA, valid while the fake runs."""
        return self._running().ca_bundle

    @property
    def ca_pem(self) -> bytes:
        return self._certificates.ca_pem

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the fake's CA (and nothing else) and verifies host names."""
        return self._certificates.client_context()

    @property
    def account_id(self) -> str:
        return self._state.account_id

    @property
    def credentials(self) -> tuple[Credential, ...]:
        return self._credentials

    def credential(self, role: str = "ADMIN") -> Credential:
        """The first credential with ``role``."""
        for c in self._credentials:
            if c.role == role:
                return c
        raise ConfigurationError("role", f"no credential has role {role!r}", "pass credentials=... with one")

    def client_credentials(self, role: str = "ADMIN") -> Credentials:
        """The first credential with ``role``, as flowmailer's clients take it (account id included)."""
        credential = self.credential(role)
        return Credentials(self.account_id, credential.client_id, credential.client_secret)

    def __repr__(self) -> str:
        state = f"port={self._port}, running" if self._run is not None else "stopped"
        return f"<FakeFlowmailer addresses={self._addresses} {state}>"

    # -- running -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def running(self) -> Iterator[FakeFlowmailer]:
        """Serve from background threads for the duration of the block (for synchronous tests)."""
        self._start()
        try:
            yield self
        finally:
            self._stop()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[FakeFlowmailer]:
        """The same for async code (asyncio or trio, through anyio): starting and stopping happen off the event
        loop, which never blocks."""
        import anyio

        await anyio.to_thread.run_sync(self._start)
        try:
            yield self
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._stop)

    def _start(self) -> None:
        with self._lock:
            if self._run is not None:
                raise ConfigurationError("FakeFlowmailer", "is already running", "start it once at a time")
            self._run = _Run(self)
        try:
            self._run.start()
            self._port = self._run.port
        except BaseException:
            self._stop()
            raise

    def _stop(self) -> None:
        with self._lock:
            run, self._run = self._run, None
        if run is not None:
            run.stop()

    def _running(self) -> _Run:
        run = self._run
        if run is None:
            raise ConfigurationError("FakeFlowmailer", "is not running", "use it inside `with fake.running():`")
        return run

    # -- controls ------------------------------------------------------------------------------------------
    def mode(self, address: str) -> Mode:
        return self._modes[address]

    def set_mode(self, address: str, mode: Mode | str) -> None:
        """Make ``address`` healthy, refuse, blackhole or serve a wrong certificate, from now on."""
        if address not in self._modes:
            raise ConfigurationError("address", f"{address} is not one of {self._addresses}", "use one of those")
        mode = Mode(mode)
        with self._lock:
            old, self._modes[address] = self._modes[address], mode
            run = self._run
        if run is not None and (old is Mode.REFUSE) != (mode is Mode.REFUSE):
            try:
                run.set_listening(address, mode is not Mode.REFUSE)
            except BaseException:
                with self._lock:
                    self._modes[address] = old
                raise

    def set_faults(self, faults: FaultPlan | Iterable[Fault] | None) -> None:
        """Replace the fault plan (its counters and random draws start afresh); None clears it."""
        self._faults = FaultInjector(plan_of(faults))

    def close_idle_connections(self) -> int:
        """Close every connection waiting for its next request, as a server's idle timeout does; how many.

        A request that arrives on such a connection at that moment is dropped unread: the keep-alive race.
        """
        run = self._run
        return 0 if run is None else run.close_idle_connections()

    def records(self) -> Records:
        """A consistent snapshot of everything counted so far; safe from any thread."""
        return self._recorder.snapshot()

    def issued_tokens(self) -> frozenset[str]:
        """Every access token the fake has handed out, expired ones too: for tests that no log shows one."""
        return self._state.issued_tokens()

    def wait_until(self, predicate: Callable[[Records], bool], timeout: float = 10.0) -> Records:
        """Block until the records satisfy ``predicate`` (TimeoutError after ``timeout`` s): no sleeping in tests."""
        return self._recorder.wait_until(predicate, timeout)


def _check_addresses(addresses: Sequence[str]) -> list[str]:
    if isinstance(addresses, str) or not addresses:
        raise ConfigurationError("addresses", f"{addresses!r} is not a list of addresses", "give e.g. ['127.0.0.2']")
    checked = []
    for a in addresses:
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            raise ConfigurationError("addresses", f"{a!r} is not an IP address", "use loopback IPs") from None
        if not ip.is_loopback:
            raise ConfigurationError("addresses", f"{a} is not a loopback address", "use 127.0.0.0/8 or ::1")
        checked.append(str(ip))
    if len(set(checked)) != len(checked):
        raise ConfigurationError("addresses", "an address is repeated", "list each address once")
    return checked


def _listen(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _shutdown(sock: socket.socket) -> None:
    """Wake a thread blocked on ``sock`` (plain or TLS) without touching its TLS state."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Run:
    """One start-to-stop of the fake: its sockets and threads, none of which outlives :meth:`stop`."""

    def __init__(self, fake: FakeFlowmailer) -> None:
        self.fake = fake
        self.port = 0
        self.ca_bundle = Path()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listeners: dict[str, socket.socket] = {}
        self._commands: queue.SimpleQueue[tuple[str, bool, threading.Event, list[BaseException]]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self._acceptor: threading.Thread | None = None
        self._sockets: dict[int, tuple[str, socket.socket]] = {}
        self._fds: dict[int, int] = {}  # each connection's descriptor, the same through its TLS wrapping
        self._idle: set[int] = set()  # connections waiting for a request's first byte
        self._dropped: set[int] = set()  # connections closed by close_idle_connections
        self._threads: dict[int, threading.Thread] = {}
        self._tmp: str | None = None

    def start(self) -> None:
        self._tmp = tempfile.mkdtemp(prefix="flowmailer-fake-")
        self.ca_bundle = Path(self._tmp) / "ca.pem"
        self.ca_bundle.write_bytes(self.fake.ca_pem)
        self._bind_all(self.fake._port)
        for address, mode in self.fake._modes.items():
            if mode is Mode.REFUSE:
                self._listeners.pop(address).close()
        self._acceptor = threading.Thread(target=self._accept_loop, name="fake-flowmailer-acceptor", daemon=True)
        self._acceptor.start()

    def _bind_all(self, port: int) -> None:
        addresses = self.fake.addresses
        for _ in range(20 if port == 0 else 1):
            try:
                first = _listen(addresses[0], port)
                self._listeners[addresses[0]] = first
                chosen = first.getsockname()[1]
                for address in addresses[1:]:
                    self._listeners[address] = _listen(address, chosen)
            except OSError as e:
                for sock in self._listeners.values():
                    sock.close()
                self._listeners.clear()
                error = e
                continue
            self.port = chosen
            return
        raise ConfigurationError(
            "port", f"cannot listen on {addresses} port {port}: {error}", "choose another port, or 0 for a free one"
        )

    def set_listening(self, address: str, listening: bool) -> None:
        """Open or close ``address``'s listener from the acceptor thread, which owns the selector."""
        done = threading.Event()
        errors: list[BaseException] = []
        self._commands.put((address, listening, done, errors))
        self._wake()
        if not done.wait(_STOP_TIMEOUT):
            raise RuntimeError("the fake's acceptor thread did not answer")
        if errors:
            raise ConfigurationError(
                "address", f"cannot listen on {address} port {self.port} again: {errors[0]}", "free that port"
            ) from errors[0]
        if not listening:
            with self._lock:
                doomed = [s for a, s in self._sockets.values() if a == address]
            for sock in doomed:
                _shutdown(sock)

    def close_idle_connections(self) -> int:
        with self._lock:
            doomed = [self._sockets[conn][1] for conn in self._idle - self._dropped]
            self._dropped |= self._idle
        for sock in doomed:
            _shutdown(sock)
        return len(doomed)

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
        if self._acceptor is not None:
            self._wake()
            self._acceptor.join(_STOP_TIMEOUT)
        for sock in self._listeners.values():
            sock.close()
        with self._lock:
            sockets = [s for _, s in self._sockets.values()]
            threads = list(self._threads.values())
        for sock in sockets:
            _shutdown(sock)
        deadline = time.monotonic() + _STOP_TIMEOUT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._wake_r.close()
        self._wake_w.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        if any(t.is_alive() for t in (*threads, *([self._acceptor] if self._acceptor else []))):
            raise RuntimeError("the fake's threads did not stop within 10 s")

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # -- acceptor thread ---------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            for address, sock in self._listeners.items():
                selector.register(sock, selectors.EVENT_READ, address)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        self._wake_r.recv(4096)
                        if self._stopping.is_set():
                            return
                        self._run_commands(selector)
                    else:
                        assert isinstance(key.fileobj, socket.socket)
                        self._accept(key.fileobj, key.data)

    def _run_commands(self, selector: selectors.BaseSelector) -> None:
        while not self._commands.empty():
            address, listening, done, errors = self._commands.get()
            try:
                if listening and address not in self._listeners:
                    self._listeners[address] = _listen(address, self.port)
                    selector.register(self._listeners[address], selectors.EVENT_READ, address)
                elif not listening and address in self._listeners:
                    sock = self._listeners.pop(address)
                    selector.unregister(sock)
                    sock.close()
            except OSError as e:
                errors.append(e)
            done.set()

    def _accept(self, listener: socket.socket, address: str) -> None:
        try:
            sock, peer = listener.accept()
        except OSError:
            return
        sock.setblocking(True)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:  # a serving thread forgets its connection and has it counted closed under this lock too
            fd = sock.fileno()
            conn = self.fake._recorder.connection_opened(address, closing=self._closed_by_peer(fd))
            thread = threading.Thread(
                target=self._serve, args=(conn, sock, address, peer[0]), name=f"fake-flowmailer-{conn}", daemon=True
            )
            self._sockets[conn] = (address, sock)
            self._fds[conn] = fd
            self._threads[conn] = thread
        thread.start()

    def _closed_by_peer(self, *new: int) -> int:
        """How many of the connections counted open, one just accepted (descriptor ``new``) included, the client
        has already closed (its FIN arrived, the serving thread has not read it yet): a client's cap is on the
        connections it holds, and the one it closed to open this one must not count against it. Asked of the
        kernel (POLLRDHUP), not of the threads. Called under ``_lock``, so every descriptor in ``_fds`` is open:
        a serving thread closes its socket only after it has left ``_fds`` and been counted closed."""
        poll = select.poll()
        for fd in (*self._fds.values(), *new):
            poll.register(fd, _PEER_CLOSED)
        return sum(1 for _, events in poll.poll(0) if events & _PEER_CLOSED)

    # -- connection threads --------------------------------------------------------------------------------
    def _serve(self, conn: int, sock: socket.socket, address: str, peer: str) -> None:
        fake = self.fake
        try:
            mode = fake.mode(address)
            if mode is Mode.BLACKHOLE:
                _drain(sock)
                return
            certs = fake._certificates
            context = certs.wrong if mode is Mode.WRONG_CERTIFICATE else certs.server
            sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            with self._lock:
                self._sockets[conn] = (address, sock)
                if self._stopping.is_set():
                    return
            sock.do_handshake()
            fake._recorder.handshaken(conn)
            assert isinstance(sock, ssl.SSLSocket)
            self._converse(conn, sock, address, peer)
        except OSError:
            pass
        finally:
            with self._lock:  # counted closed before its descriptor is: never open and uncounted by a poll
                del self._sockets[conn]
                del self._fds[conn]
                del self._threads[conn]
                self._idle.discard(conn)
                self._dropped.discard(conn)
                fake._recorder.connection_closed(conn, closing=self._closed_by_peer())
            sock.close()

    def _converse(self, conn: int, sock: ssl.SSLSocket, address: str, peer: str) -> None:
        fake = self.fake
        recorder = fake._recorder
        reader = RequestReader(_MAX_BODY)
        unread = select.poll()  # holds no descriptor of its own, unlike epoll
        unread.register(sock, select.POLLIN)
        pipelined = False
        while True:
            try:
                request = reader.next_request()
            except HttpError as e:
                refusal = json_response(e.status, {"error": "bad_request", "error_description": e.detail})
                recorder.answered(e.status)
                sock.sendall(refusal.render(close=True))
                return
            if request is None:
                if reader.continue_due:
                    reader.continue_due = False
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                idle = not reader.buffered
                if idle:
                    self._idle.add(conn)
                data = sock.recv(16384)
                if idle:
                    with self._lock:
                        self._idle.discard(conn)
                        if conn in self._dropped:
                            return  # closed for idleness: what arrived meanwhile is never acted on
                if not data:
                    return
                reader.feed(data)
                continue
            if fake.mode(address) is Mode.BLACKHOLE:
                _drain(sock)
                return
            fault = fake._faults.pick(request.path)
            recorder.request(conn, pipelined=pipelined, fault=None if fault is None else fault.kind.value)
            report = _is_report(request.path)
            if report:
                recorder.report_started(request.target)
            try:
                response = self._respond(request, fault, address, peer)
            finally:
                if report:  # before the answer goes out: once it has, the client may rightly send the next one
                    recorder.report_finished()
            if response is None:
                if fault is not None and fault.kind is FaultKind.ACCEPT_THEN_RESET:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            # Bytes already here, read or not, are the next request arriving before this answer: pipelining.
            pipelined = reader.buffered or bool(unread.poll(0))
            recorder.answered(response.status)
            sock.sendall(response.render(close=not request.keep_alive))
            if not request.keep_alive:
                return

    def _respond(self, request: Request, fault: Fault | None, address: str, peer: str) -> Response | None:
        """The answer to send, or None to hang up instead."""
        kind = fault.kind if fault is not None else None
        if fault is not None and kind is FaultKind.STATUS:
            assert fault.code is not None
            headers = () if fault.retry_after is None else (("Retry-After", str(fault.retry_after)),)
            return json_response(fault.code, {"error": "injected", "error_description": f"fault {fault}"}, headers)
        if kind is FaultKind.CLOSE_BEFORE_READ:
            return None
        if fault is not None and kind is FaultKind.DELAY and self._stopping.wait(fault.seconds):
            return None
        if kind is FaultKind.EXPIRE_TOKEN:
            self.fake._state.expire_token(request)
        response = self.fake._state.handle(request, client_address=peer, server_address=address)
        return None if kind is FaultKind.ACCEPT_THEN_RESET else response


def _is_report(path: str) -> bool:
    """A statistics report: what Flowmailer's guidelines ask never to request twice or in overlapping ranges."""
    return path.partition(";")[0].rsplit("/", 1)[-1] in ("messagestats", "stats")


def _drain(sock: socket.socket) -> None:
    """Read and ignore everything until the peer or :meth:`_Run.stop` closes the connection."""
    while sock.recv(65536):
        pass
