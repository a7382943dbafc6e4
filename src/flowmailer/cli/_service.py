"""The relay as a service: /metrics, /healthz and /readyz over HTTP, and systemd's readiness and watchdog pings.

Standard library only, apart from the Prometheus exposition: ``http.server`` for the endpoints, and systemd's
notify protocol (one datagram per state change on ``$NOTIFY_SOCKET``) written by hand, so a unit with
``Type=notify`` and ``WatchdogSec=`` needs no libsystemd.
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from flowmailer.core import ConfigurationError, Event, FlowmailerError

if TYPE_CHECKING:
    from flowmailer.app._relay import RelayShell
    from flowmailer.ports import Clock, Observer, Outbox

__all__ = ["Health", "Observers", "notify", "serving", "watchdog", "watchdog_interval"]

_log = logging.getLogger(__name__)

#: The claimer loop turns every second or so; this long without a turn, it is stuck (or the outbox hangs).
STUCK_AFTER = 30.0
#: How long a /readyz answer is reused: a probe every second must not become a token request every second.
READY_FOR = 10.0


class Observers:
    """Several observers as one: each event goes to all of them, in order."""

    def __init__(self, *observers: Observer) -> None:
        self._observers = observers

    def on_event(self, event: Event) -> None:
        for observer in self._observers:
            observer.on_event(event)


class Health:
    """Whether the relay loop is alive, and whether it could do its work now."""

    def __init__(self, relay: RelayShell, outbox: Outbox, check: Callable[[], object], clock: Clock) -> None:
        """``check``: the submitting client's ``check_credentials``, called from a server thread."""
        self._relay, self._outbox, self._check_credentials, self._clock = relay, outbox, check, clock
        self._lock = threading.Lock()
        self._ready: tuple[float, str | None] | None = None  # when asked, and what was wrong (None: ready)

    def alive(self) -> str | None:
        """None while the claimer loop turns; else what is wrong."""
        turned = self._relay.last_turn()
        if turned is None:
            return "the relay loop is not running"
        stalled = self._clock.monotonic() - turned
        if stalled > STUCK_AFTER:
            return f"the relay loop has not turned for {stalled:.0f} s"
        return None

    def ready(self) -> str | None:
        """None if the outbox answers and the submitting credential holds a valid token or can get one."""
        with self._lock:  # one check at a time, and its answer reused for a while
            now = self._clock.monotonic()
            if self._ready is None or now - self._ready[0] >= READY_FOR:
                self._ready = (now, self._check())
            return self._ready[1]

    def _check(self) -> str | None:
        if (dead := self.alive()) is not None:
            return dead
        try:
            self._outbox.counts()
        except FlowmailerError as e:
            return f"the outbox cannot be read: {e}"
        try:
            self._check_credentials()  # the cached token, unless it is about to expire
        except FlowmailerError as e:
            return f"no token: {e}"
        return None


@contextlib.contextmanager
def serving(
    address: tuple[str, int], metrics: Callable[[], tuple[bytes, str]], health: Health
) -> Iterator[tuple[str, int]]:
    """Serve /metrics, /healthz and /readyz on ``address`` in a thread while the block runs; yields where."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            if path == "/metrics":
                body, content_type = metrics()
                self._answer(200, body, content_type)
            elif path in ("/healthz", "/readyz"):
                wrong = health.alive() if path == "/healthz" else health.ready()
                self._answer(200 if wrong is None else 503, f"{wrong or 'ok'}\n".encode(), "text/plain")
            else:
                self._answer(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            _log.debug("metrics: %s", format % args)

    try:
        server = http.server.ThreadingHTTPServer(address, Handler)
    except OSError as e:  # in use, not an address of this machine, a privileged port
        raise ConfigurationError(
            "--metrics-addr", f"cannot listen on it: {e.strerror or e}", "give a free port of this machine's address"
        ) from e
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="flowmailer-metrics", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield str(host), int(port)
    finally:
        server.shutdown()
        server.server_close()


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd ``state`` (``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``) if it asked (``$NOTIFY_SOCKET``).

    True if sent. A socket name starting with ``@`` is in the abstract namespace, as sd_notify(3) says.
    """
    path = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    target = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), target)
    except OSError as e:
        _log.warning("systemd notification %s failed: %s", state, e)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Half of systemd's ``WatchdogSec`` (``$WATCHDOG_USEC``), if the watchdog is on for this process."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.001, int(usec) / 2e6)
    except ValueError:
        _log.warning("WATCHDOG_USEC is not a whole number of microseconds; no watchdog pings")
        return None


@contextlib.contextmanager
def watchdog(health: Health, environ: Mapping[str, str] | None = None) -> Iterator[None]:
    """While the block runs: ``READY=1`` once the relay loop turns, then ``WATCHDOG=1`` every half watchdog
    interval while it keeps turning (a stuck loop stops the pings, and systemd restarts the service), and
    ``STOPPING=1`` when the block ends. Does nothing unless systemd gave a ``$NOTIFY_SOCKET``."""
    env = dict(os.environ if environ is None else environ)
    if not env.get("NOTIFY_SOCKET"):
        yield
        return
    interval = watchdog_interval(env)
    done = threading.Event()

    def ping() -> None:
        while health.alive() is not None:  # until the loop first turns, its credentials checked
            if done.wait(0.1):
                return
        notify("READY=1", env)
        while interval is not None and not done.wait(interval):
            if health.alive() is None:  # a stuck loop gets no ping, and systemd restarts the service
                notify("WATCHDOG=1", env)

    thread = threading.Thread(target=ping, name="flowmailer-watchdog", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        notify("STOPPING=1", env)
        thread.join()
