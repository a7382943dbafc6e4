"""What the fake saw, for a test's assertions: a recorder the server threads write, frozen snapshots to read."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

__all__ = ["AcceptedMessage", "ConnectionRecord", "Records"]


@attrs.frozen
class AcceptedMessage:
    """A message the fake answered (or would have answered) 201 for."""

    message_id: str
    body: Mapping[str, Any]
    tags: tuple[str, ...]
    client_id: str
    address: str
    submitted: float


@attrs.frozen
class ConnectionRecord:
    """One TCP connection a client opened to one of the fake's addresses."""

    address: str
    handshaken: bool
    requests: int
    pipelined: int


@attrs.frozen
class Records:
    """A consistent snapshot of everything the fake counted; safe to read from any thread."""

    accepted: tuple[AcceptedMessage, ...]
    connections: tuple[ConnectionRecord, ...]
    max_open_connections: int
    token_requests: Mapping[str, int]
    statuses: Mapping[int, int]
    faults: Mapping[str, int]
    reference_prefix: str
    #: Connections open now (as far as the fake has noticed a client closing its end).
    open_connections: int = 0
    #: The target (path, matrix and query) of every report request (``messagestats``), in arrival order.
    reports: tuple[str, ...] = ()
    #: The most report requests the fake was ever answering at once: more than 1 means they overlapped.
    max_concurrent_reports: int = 0
    #: (time.monotonic(), connections open) at every connection opened or closed, in order: what
    #: ``max_open_connections`` is the peak of. No entry counts connections the client already closed.
    open_timeline: tuple[tuple[float, int], ...] = ()

    @property
    def copies_by_reference(self) -> Mapping[str, int]:
        """Accepted copies per client reference tag (``ref:...``): exactly one each means no duplicates."""
        counts: collections.Counter[str] = collections.Counter()
        for m in self.accepted:
            counts.update({t for t in m.tags if t.startswith(self.reference_prefix)})
        return dict(counts)

    @property
    def duplicates(self) -> Mapping[str, int]:
        """The client references accepted more than once, with their copy counts."""
        return {ref: n for ref, n in self.copies_by_reference.items() if n > 1}

    @property
    def connections_by_address(self) -> Mapping[str, int]:
        return dict(collections.Counter(c.address for c in self.connections))

    @property
    def handshakes_by_address(self) -> Mapping[str, int]:
        return dict(collections.Counter(c.address for c in self.connections if c.handshaken))

    @property
    def requests_per_connection(self) -> tuple[int, ...]:
        return tuple(c.requests for c in self.connections)

    @property
    def pipelined_requests(self) -> int:
        """Requests whose bytes had arrived before the previous response on their connection was sent."""
        return sum(c.pipelined for c in self.connections)

    @property
    def requests(self) -> int:
        return sum(c.requests for c in self.connections)


class Recorder:
    """The server threads' side of :class:`Records`; every change wakes :meth:`wait_until`."""

    def __init__(self, reference_prefix: str) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._reference_prefix = reference_prefix
        self._accepted: list[AcceptedMessage] = []
        self._connections: list[list[Any]] = []  # [address, handshaken, requests, pipelined]
        self._open = 0
        self._max_open = 0
        self._timeline: list[tuple[float, int]] = []
        self._tokens: collections.Counter[str] = collections.Counter()
        self._statuses: collections.Counter[int] = collections.Counter()
        self._faults: collections.Counter[str] = collections.Counter()
        self._reports: list[str] = []
        self._reports_open = 0
        self._max_reports_open = 0
        self._waiting = 0

    def _notify(self) -> None:
        if self._waiting:
            self._changed.notify_all()

    def connection_opened(self, address: str, *, closing: int = 0) -> int:
        """A connection was accepted while ``closing`` of the open ones were already closed by the client."""
        with self._changed:
            self._connections.append([address, False, 0, 0])
            self._open += 1
            self._max_open = max(self._max_open, self._open - closing)
            self._timeline.append((time.monotonic(), self._open - closing))
            self._notify()
            return len(self._connections) - 1

    def connection_closed(self, conn: int, *, closing: int = 0) -> None:
        """A connection was closed while ``closing`` of the other open ones were already closed by the client."""
        with self._changed:
            self._open -= 1
            self._timeline.append((time.monotonic(), self._open - closing))
            self._notify()

    def handshaken(self, conn: int) -> None:
        with self._changed:
            self._connections[conn][1] = True
            self._notify()

    def request(self, conn: int, *, pipelined: bool, fault: str | None) -> None:
        with self._changed:
            record = self._connections[conn]
            record[2] += 1
            record[3] += pipelined
            if fault is not None:
                self._faults[fault] += 1
            self._notify()

    def answered(self, status: int) -> None:
        with self._changed:
            self._statuses[status] += 1
            self._notify()

    def token_requested(self, client_id: str) -> None:
        with self._changed:
            self._tokens[client_id] += 1
            self._notify()

    def accepted(self, message: AcceptedMessage) -> None:
        with self._changed:
            self._accepted.append(message)
            self._notify()

    def report_started(self, target: str) -> None:
        with self._changed:
            self._reports.append(target)
            self._reports_open += 1
            self._max_reports_open = max(self._max_reports_open, self._reports_open)
            self._notify()

    def report_finished(self) -> None:
        with self._changed:
            self._reports_open -= 1
            self._notify()

    def snapshot(self) -> Records:
        with self._changed:
            return self._snapshot()

    def _snapshot(self) -> Records:
        return Records(
            accepted=tuple(self._accepted),
            connections=tuple(ConnectionRecord(a, h, r, p) for a, h, r, p in self._connections),
            max_open_connections=self._max_open,
            token_requests=dict(self._tokens),
            statuses=dict(self._statuses),
            faults=dict(self._faults),
            reference_prefix=self._reference_prefix,
            open_connections=self._open,
            reports=tuple(self._reports),
            max_concurrent_reports=self._max_reports_open,
            open_timeline=tuple(self._timeline),
        )

    def wait_until(self, predicate: Callable[[Records], bool], timeout: float) -> Records:
        """Block until ``predicate(records)`` holds; TimeoutError after ``timeout`` seconds of real time."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._waiting += 1
            try:
                while not predicate(records := self._snapshot()):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(f"the fake's records did not reach the condition within {timeout} s")
                    self._changed.wait(remaining)
                return records
            finally:
                self._waiting -= 1
