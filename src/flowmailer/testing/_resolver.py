"""A resolver whose records a test changes while the client runs."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from flowmailer.core import NotSent, Resolution

__all__ = ["StaticResolver"]


class StaticResolver:
    """A :class:`flowmailer.ports.Resolver` answering from records the test sets; ``set`` is thread-safe.

    Records are per host; a host without records does not resolve (``NotSent``). ``calls`` counts lookups.
    """

    def __init__(self, records: dict[str, Iterable[str]] | None = None, *, ttl: float = 60.0) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, tuple[str, ...]] = {h: tuple(a) for h, a in (records or {}).items()}
        self._ttl = ttl
        self.calls = 0

    def set(self, host: str, addresses: Iterable[str], *, ttl: float | None = None) -> None:
        """Replace the records of ``host`` (an empty list makes it stop resolving)."""
        with self._lock:
            self._records[host] = tuple(addresses)
            if ttl is not None:
                self._ttl = ttl

    def resolve(self, host: str, port: int) -> Resolution | NotSent:
        with self._lock:
            self.calls += 1
            addresses = self._records.get(host, ())
            ttl = self._ttl
        if not addresses:
            return NotSent(f"{host!r} has no records in this StaticResolver")
        return Resolution(addresses, ttl)
