"""An idle relay waits for work on the outbox's clock: these run on a fake clock, so nothing really sleeps.

(The PostgreSQL outbox waits on its connection in real time; its wake-up by NOTIFY is tested in test_postgres.py.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.core import Settlement, SubmitMessage
from flowmailer.ports import Outbox
from flowmailer.testing import FakeClock, MemoryOutbox

Factory = Callable[[FakeClock], Outbox]


@pytest.fixture(params=["memory", "sqlite"])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    if request.param == "memory":
        return MemoryOutbox
    return lambda clock: SQLiteOutbox(tmp_path / "o.db", clock=clock)


def test_waiting_with_nothing_queued_times_out_on_the_clock(factory: Factory) -> None:
    clock = FakeClock()
    outbox = factory(clock)
    start = clock.now()
    assert outbox.wait_for_work(30) is False
    assert clock.now() - start == pytest.approx(30)
    outbox.close()


def test_waiting_wakes_when_a_retry_comes_due(factory: Factory) -> None:
    clock = FakeClock()
    outbox = factory(clock)
    outbox.enqueue(SubmitMessage(sender_address="s@example.com", recipient_address="r@example.com", text="x"))
    [claim] = outbox.claim("a", 1, 60)
    assert outbox.settle([Settlement.retry(claim, clock.now() + 7.5, "HTTP 503")]) == []
    start = clock.now()
    assert outbox.wait_for_work(3600) is True
    assert clock.now() - start == pytest.approx(7.5)
    outbox.close()


@pytest.mark.parametrize("timeout", [0.3, 3.3])
def test_waiting_ends_when_the_remainder_is_below_the_clocks_resolution(factory: Factory, timeout: float) -> None:
    # At the default start of 1.7e9 these timeouts leave a last remainder of about 5e-8 s, which does not move
    # the clock: the wait must still end, after sleeping the whole timeout.
    clock = FakeClock()
    outbox = factory(clock)
    returned: list[bool] = []
    waiter = threading.Thread(target=lambda: returned.append(outbox.wait_for_work(timeout)), daemon=True)
    waiter.start()
    waiter.join(10.0)
    assert not waiter.is_alive()
    assert returned == [False]
    assert clock.monotonic() == pytest.approx(timeout)
    outbox.close()
