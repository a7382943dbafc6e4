"""What keeping settled report answers saves: a dashboard showing the last 30 days, refreshed every hour for a day.

Against FakeFlowmailer (in this process, over TLS on loopback) with a fake clock, the same refreshes run twice, side
by side: as a client that keeps nothing asks (the whole range every time: `ReportPolicy(settle=...)` so large that
nothing is ever settled), and as `message_stats` asks by default. Printed: report requests, the intervals they ask
Flowmailer to count, and the wall time. Also a year of hourly counts asked for twice.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from flowmailer.app import Client
from flowmailer.core import DateRange, ReportPolicy, SubmitMessage
from flowmailer.testing import API_HOST, LOGIN_HOST, FakeClock, FakeFlowmailer, StaticResolver

DAY, HOUR = 86400, 3600
DATES = re.compile(r"daterange=([^,;?]+),([^;?]+)")


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _asked(targets: tuple[str, ...], interval: int) -> int:
    """The intervals the report requests asked Flowmailer to count."""
    total = 0
    for target in targets:
        start, end = (datetime.fromisoformat(d.replace("Z", "+00:00")) for d in DATES.findall(target)[0])
        total += int((end - start).total_seconds()) // interval
    return total


def run(keep: bool, refreshes: Callable[[Client, FakeClock], None], interval: int) -> tuple[int, int, float]:
    clock = FakeClock()
    with FakeFlowmailer(clock=clock.now, token_lifetime=10**9).running() as fake:
        client = Client(
            fake.client_credentials("ADMIN"),
            api_url=fake.api_url,
            login_url=fake.login_url,
            ca_bundle=str(fake.ca_bundle),
            resolver=StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses}),
            clock=clock,
            report_policy=None if keep else ReportPolicy(settle=1e12),  # nothing ever settles: nothing is kept
        )
        with client:
            for n in range(50):
                client.submit(SubmitMessage(sender_address="s@example.com", recipient_address=f"r{n}@example.com"))
            t0 = time.perf_counter()
            refreshes(client, clock)
            elapsed = time.perf_counter() - t0
        reports = fake.records().reports
    return len(reports), _asked(reports, interval), elapsed


def dashboard(client: Client, clock: FakeClock) -> None:
    for _ in range(24):
        today = clock.now() - clock.now() % DAY
        client.message_stats(DateRange(_at(today - 29 * DAY), _at(today + DAY)), interval=DAY)
        clock.advance(HOUR)


def hourly_year(client: Client, clock: FakeClock) -> None:
    now = clock.now() - clock.now() % HOUR
    for _ in range(2):
        client.message_stats(DateRange(_at(now - 365 * DAY), _at(now + HOUR)), interval=HOUR)


def main() -> int:
    one, five, _ = os.getloadavg()
    print(f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs")
    print(f"{'scenario':<40}{'client':<14}{'requests':>9}{'intervals asked':>18}{'seconds':>9}")
    for name, scenario, interval, unit in (
        ("last 30 days, hourly for a day", dashboard, DAY, "days"),
        ("a year of hourly counts, twice", hourly_year, HOUR, "hours"),
    ):
        rows = {
            label: run(keep, scenario, interval) for label, keep in (("keeps nothing", False), ("message_stats", True))
        }
        for label, (requests, asked, seconds) in rows.items():
            print(f"{name:<40}{label:<14}{requests:>9}{asked:>12} {unit:<5}{seconds:>9.2f}")
        naive, kept = rows["keeps nothing"], rows["message_stats"]
        print(
            f"  message_stats asks for {naive[1] / kept[1]:.1f}x fewer {unit}, in {kept[0]} requests against {naive[0]}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
