"""A clock that only moves when told to, or when someone sleeps on it."""

from __future__ import annotations

import math
import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A :class:`flowmailer.ports.Clock` for tests: ``sleep`` advances time at once instead of waiting.

    Thread-safe. ``slept`` records every sleep, so a test can assert that a Retry-After of 2 s was waited out
    without waiting.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._lock = threading.Lock()
        self._now = start
        self._start = start
        self.slept: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._now - self._start

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            if seconds > 0:
                # At least one representable step: a sleep too short to move 1.7e9 must still move time, or a
                # loop waiting for a deadline would spin for ever.
                self._now = max(self._now + seconds, math.nextafter(self._now, math.inf))

    def advance(self, seconds: float) -> None:
        """Move time forward without recording a sleep."""
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        with self._lock:
            self._now += seconds
