from __future__ import annotations

import pytest

from flowmailer.adapters import SystemClock
from flowmailer.ports import Clock
from flowmailer.testing import FakeClock


def test_fake_clock_sleep_advances_and_records() -> None:
    clock = FakeClock(start=100.0)
    assert clock.monotonic() == 0.0
    clock.sleep(2.0)
    clock.sleep(0)
    clock.advance(1.5)
    assert clock.now() == 103.5
    assert clock.monotonic() == 3.5
    assert clock.slept == [2.0, 0]


def test_fake_clock_refuses_to_run_backwards() -> None:
    with pytest.raises(ValueError, match="backwards"):
        FakeClock().advance(-1)


def test_both_clocks_satisfy_the_port() -> None:
    clocks: list[Clock] = [SystemClock(), FakeClock()]
    for clock in clocks:
        before = clock.monotonic()
        clock.sleep(0)
        assert clock.monotonic() >= before
        assert clock.now() > 0


def test_a_sleep_too_short_to_register_still_moves_time() -> None:
    clock = FakeClock()
    before = clock.now()
    clock.sleep(5e-8)  # below the float's step at 1.7e9
    assert clock.now() > before
