"""A small threaded HTTPS/1.1 server with a trustme CA, for transport tests that must not wait for FakeFlowmailer."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme

from flowmailer.core import Origin
from flowmailer.testing import ReceivedRequest

HOST = "api.flowmailer.test"
#: What an unscripted request gets: the usual 201.
_USUAL = (b"", False)


class TlsServer:
    """Answers 201 with a Location on every address in ``addresses``; implements TransportTestServer."""

    def __init__(
        self, tmp: Path, addresses: tuple[str, ...] = ("127.0.0.2", "127.0.0.3"), *, expired: bool = False
    ) -> None:
        self.ca = trustme.CA()
        self.ca_bundle = str(tmp / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_bundle)
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if expired:
            now = datetime.now(UTC)
            cert = self.ca.issue_cert(HOST, not_before=now - timedelta(days=2), not_after=now - timedelta(days=1))
        else:
            cert = self.ca.issue_cert(HOST)
        cert.configure_cert(self._context)
        self._lock = threading.Lock()
        self._received: list[ReceivedRequest] = []
        self._handshakes = 0
        self._open = 0
        self._peak = 0
        self._reset_next = False
        #: Answers to give instead of the usual 201, in order: (bytes, then close), None to never answer, or a
        #: function that writes the answer itself (a misbehaving server) before the connection is closed.
        self._scripted: list[tuple[bytes, bool] | Callable[[ssl.SSLSocket], None] | None] = []
        self._stopped = threading.Event()
        self._idle: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listeners: list[socket.socket] = []
        self._stopping = False
        self._port, self._listeners = _bind_all(addresses)
        self._addresses = addresses
        self._blackhole = _blackhole("127.0.0.9", self._port)
        for listener in self._listeners:
            self._start(self._accept_loop, listener)

    # TransportTestServer
    @property
    def origin(self) -> Origin:
        return Origin(HOST, self._port)

    @property
    def addresses(self) -> tuple[str, ...]:
        return self._addresses

    @property
    def refusing_address(self) -> str:
        return "127.0.0.8"

    @property
    def blackhole_address(self) -> str:
        return "127.0.0.9"

    def handshakes(self) -> int:
        with self._lock:
            return self._handshakes

    def received(self) -> tuple[ReceivedRequest, ...]:
        with self._lock:
            return tuple(self._received)

    def open_connections(self) -> int:
        with self._lock:
            return self._open

    def max_open_connections(self) -> int:
        with self._lock:
            peak, self._peak = self._peak, self._open
            return peak

    def reset_next_request(self) -> None:
        with self._lock:
            self._reset_next = True

    def close_idle_connections(self) -> None:
        with self._lock:
            idle = list(self._idle)
        for sock in idle:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def answer_next(self, raw: bytes | None, *, then_close: bool = False) -> None:
        """Give the next request ``raw`` as its whole answer (closing the connection after it if ``then_close``),
        or no answer at all when ``raw`` is None: the connection stays open and silent until the server stops."""
        with self._lock:
            self._scripted.append(None if raw is None else (raw, then_close))

    def answer_next_with(self, write: Callable[[ssl.SSLSocket], None]) -> None:
        """Let ``write`` give the next request its answer, as slowly, as long or as strange as it likes; the
        connection is closed when it returns (it returns once the client hung up, when writing fails)."""
        with self._lock:
            self._scripted.append(write)

    def close(self) -> None:
        self._stopping = True
        self._stopped.set()
        for listener in self._listeners:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self.close_idle_connections()
        for t in self._threads:
            t.join(timeout=10)
        for s in self._blackhole:
            s.close()

    # the server
    def _start(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(t)
        t.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            self._start(self._serve, raw)

    def _serve(self, raw: socket.socket) -> None:
        try:
            sock = self._context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with self._lock:
            self._handshakes += 1
            self._open += 1
            self._peak = max(self._peak, self._open)
        try:
            self._serve_requests(sock)
        finally:
            with self._lock:
                self._open -= 1
                self._idle.discard(sock)
            sock.close()

    def _serve_requests(self, sock: ssl.SSLSocket) -> None:
        buffer = b""
        while True:
            with self._lock:
                self._idle.add(sock)
            while b"\r\n\r\n" not in buffer:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                with self._lock:
                    self._idle.discard(sock)
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = tuple((k, v.strip()) for k, v in (line.split(":", 1) for line in lines[1:]))
            length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
            while len(buffer) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            body, buffer = buffer[:length], buffer[length:]
            with self._lock:
                self._received.append(ReceivedRequest(method, target, headers, body))
                n = len(self._received)
                scripted = self._scripted.pop(0) if self._scripted else _USUAL
                reset = self._reset_next and scripted is _USUAL  # a scripted answer leaves a pending reset pending
                self._reset_next = self._reset_next and not reset
            if scripted is None:
                self._stopped.wait()
                return
            if callable(scripted):
                scripted(sock)
                return
            if scripted is not _USUAL:
                try:
                    sock.sendall(scripted[0])
                except OSError:
                    return  # the client hung up before the whole answer was written
                if scripted[1]:
                    return
                continue
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            answer = (
                f"HTTP/1.1 201 Created\r\nLocation: https://{HOST}/acct/messages/{n:032d}\r\nContent-Length: 0\r\n\r\n"
            )
            sock.sendall(answer.encode())


def _bind_all(addresses: tuple[str, ...]) -> tuple[int, list[socket.socket]]:
    """Listen on the same free port at every address (retrying when another process holds it somewhere)."""
    for _ in range(50):
        first = socket.create_server((addresses[0], 0))
        port = first.getsockname()[1]
        listeners = [first]
        try:
            listeners.extend(socket.create_server((a, port)) for a in addresses[1:])
            with contextlib.suppress(OSError):  # the blackhole address must be free at this port too
                probe = socket.create_server(("127.0.0.9", port))
                probe.close()
                return port, listeners
        except OSError:
            pass
        for s in listeners:
            s.close()
    raise RuntimeError("no common free port")


def _blackhole(address: str, port: int) -> list[socket.socket]:
    """A listener that never accepts, its one-slot backlog already full: further SYNs are dropped."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(0)
    fillers = []
    for _ in range(2):
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect((address, port))
        fillers.append(filler)
    return [listener, *fillers]


@contextlib.contextmanager
def tls_server(tmp: Path, *, expired: bool = False) -> Iterator[TlsServer]:
    server = TlsServer(tmp, expired=expired)
    try:
        yield server
    finally:
        server.close()
