"""Tests of the async client and its adapters."""

from __future__ import annotations

from collections.abc import Callable

import attrs


@attrs.frozen
class WallClock:
    """A clock for the async client from a wall-time function: the async client reads only ``now()`` (its
    durations and waits are the event loop's, which trio's MockClock controls)."""

    wall: Callable[[], float]

    def now(self) -> float:
        return self.wall()

    def monotonic(self) -> float:
        raise AssertionError("the async client measures durations on the event loop's clock")

    def sleep(self, seconds: float) -> None:
        raise AssertionError("the async client sleeps on the event loop")
