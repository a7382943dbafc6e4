"""Flowmailer down for a long stretch under a large backlog: the relay's load stays bounded by time, not by the
backlog, and the backlog drains promptly when Flowmailer answers again.

Time is a FakeClock. Each request costs ``COST`` seconds of it (as if Flowmailer took that long to answer one
request at a time, about 100 a second), sleeps move it at once, and the outage ends when the clock passes
``OUTAGE``: the fake then answers normally. The outage hits every request (the login host too, so token
refreshes fail and are backed off) or the submits alone. Everything asserted is counted (the fake's records, a
timeline of the requests on the fake clock), nothing is timed.
"""

from __future__ import annotations

import bisect
import random

import pytest

from flowmailer.adapters import Urllib3Transport
from flowmailer.app import Client, Relay
from flowmailer.core import Origin, RetryPolicy, SubmissionState, SubmitMessage, TransportResult, WireRequest
from flowmailer.ports import Transport
from flowmailer.testing import API_HOST, LOGIN_HOST, FakeClock, FakeFlowmailer, Fault, MemoryOutbox, StaticResolver

#: Seconds of the fake clock one request costs.
COST = 0.01
#: Seconds Flowmailer answers 503 to everything, the token endpoint included.
OUTAGE = 100.0
#: Requests in any one second of the outage, whatever the backlog: the sends before the breaker opens (one per
#: worker, and the next of those that fail before the fifth failure in a row opens it), each with the client's
#: two attempts (the policy below), a token request with two, and the relay's search by tag at start.
MOST_PER_SECOND = (10 + 5 - 1) * 2 + 2 + 1
#: Requests in the whole outage: about one a second (a probe per cool-down, its token request backed off alike),
#: and the opening's. Before the circuit breaker, every message of the backlog was sent and failed in turn.
MOST_DURING_OUTAGE = int(OUTAGE) + MOST_PER_SECOND


class OutageClock(FakeClock):
    """A FakeClock that ends the fake's outage when it passes ``end``, and notes how many requests came before."""

    def __init__(self, end: float | None) -> None:
        super().__init__()
        self.fake: FakeFlowmailer | None = None
        self.end = end
        self.requests_during: int | None = None
        self.recovered_at: float | None = None

    def _moved(self) -> None:
        if (
            self.fake is not None
            and self.end is not None
            and self.recovered_at is None
            and self.monotonic() >= self.end
        ):
            self.recovered_at = self.monotonic()
            self.requests_during = self.fake.records().requests
            self.fake.set_faults(None)

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self._moved()

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        self._moved()


class CostlyTransport:
    """A transport whose every request costs ``COST`` seconds of the fake clock; keeps when each one started."""

    def __init__(self, inner: Transport, clock: OutageClock) -> None:
        self.inner = inner
        self.clock = clock
        self.started: list[float] = []

    def send(self, request: WireRequest, origin: Origin, address: str) -> TransportResult:
        self.started.append(self.clock.monotonic())
        result = self.inner.send(request, origin, address)
        self.clock.advance(COST)
        return result

    def close(self) -> None:
        self.inner.close()


def _run(backlog: int, *, down: str | None) -> tuple[OutageClock, CostlyTransport, float]:
    """Relay ``backlog`` messages through a fake whose paths ending in ``down`` answer 503 for OUTAGE s (none if
    None, all if ""): the clock, the transport, and the fake clock's reading when the last one was accepted."""
    clock = OutageClock(None if down is None else OUTAGE)
    fake = FakeFlowmailer(faults=[] if down is None else [Fault.status(503, path=down or None)], clock=clock.now)
    clock.fake = fake
    outbox = MemoryOutbox(clock)
    outbox.enqueue_many(
        SubmitMessage(sender_address="app@example.com", recipient_address=f"u{i}@example.com", subject=f"#{i}")
        for i in range(backlog)
    )
    with fake.running():
        transport = CostlyTransport(Urllib3Transport(ssl_context=fake.client_ssl_context(), clock=clock), clock)
        with Client(
            fake.client_credentials(),
            api_url=fake.api_url,
            login_url=fake.login_url,
            policy=RetryPolicy(max_attempts=2, deadline=10.0, base_delay=0.1, cap=1.0),
            transport=transport,
            resolver=StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses}),
            clock=clock,
            rng=random.Random(1),
        ) as client:
            stats = Relay(outbox, client, clock=clock, rng=random.Random(2), idle_wait=0.05).drain()
        records = fake.records()
    assert outbox.counts()[SubmissionState.ACCEPTED] == backlog
    assert (stats.accepted, stats.dead, stats.duplicates) == (backlog, 0, 0)
    assert len(records.accepted) == backlog
    assert records.requests == len(transport.started)
    return clock, transport, max(m.submitted for m in records.accepted) - (clock.now() - clock.monotonic())


def _peak_per_second(times: list[float], start: float, end: float) -> int:
    """The most requests begun within any one second of [start, end)."""
    inside = sorted(t for t in times if start <= t < end)
    return max((bisect.bisect_left(inside, t + 1.0) - i for i, t in enumerate(inside)), default=0)


@pytest.mark.parametrize(
    ("backlog", "down"),
    [
        pytest.param(2_000, "", id="2000-everything"),
        pytest.param(2_000, "messages/submit", id="2000-submits"),
        pytest.param(8_000, "messages/submit", id="8000-submits", marks=pytest.mark.slow),
    ],
)
def test_outage_load_is_bounded_by_time_and_the_backlog_drains_promptly(backlog: int, down: str) -> None:
    """Requests during the outage are bounded per second and in all, by the same figures for either backlog; the
    last message goes out within 1.5 times what a fresh run of the backlog takes, counted from the recovery."""
    _, _, fresh = _run(backlog, down=None)
    clock, transport, last = _run(backlog, down=down)
    assert clock.recovered_at is not None
    assert clock.requests_during is not None
    assert clock.requests_during <= MOST_DURING_OUTAGE
    assert _peak_per_second(transport.started, 0.0, clock.recovered_at) <= MOST_PER_SECOND
    assert last - clock.recovered_at <= 1.5 * fresh
