"""``flowmailer relay --metrics-addr`` and systemd's notify protocol, the relay running as a subprocess.

The metrics test runs the demo's faults (503s, 429s with Retry-After, accepts whose connection is then reset, one
address of three blackholed) and scrapes /metrics each time the relay prints a progress line: no test sleeps.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.cli._service import READY_FOR, STUCK_AFTER, Health, notify, watchdog_interval
from flowmailer.core import AuthenticationError, FlowmailerError, SubmitMessage
from flowmailer.testing import API_HOST, LOGIN_HOST, FakeClock, FakeFlowmailer, Fault, MemoryOutbox, Mode

if TYPE_CHECKING:
    from flowmailer.app import Relay

SUBMIT = "messages/submit"
MESSAGES = 300
DEADLINE = 120.0  # seconds before the test fails; never waited for


def fill(path: Path, count: int) -> None:
    outbox = SQLiteOutbox(path)
    outbox.enqueue_many(
        SubmitMessage(sender_address="shop@example.com", recipient_address=f"c{i}@example.com", text="hi")
        for i in range(count)
    )
    outbox.close()


def start(
    fake: FakeFlowmailer, tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    credential = fake.credential("ADMIN")
    addresses = ",".join(fake.addresses)
    command = [
        sys.executable, "-m", "flowmailer.cli", "relay", "--no-progress", "--interval", "0.2",
        "--outbox", f"sqlite://{tmp_path / 'outbox.db'}", "--account-id", fake.account_id,
        "--client-id", credential.client_id, "--api-url", fake.api_url, "--login-url", fake.login_url,
        "--ca-bundle", str(fake.ca_bundle), *extra,
    ]  # fmt: skip
    environ = {
        **os.environ,
        "FLOWMAILER_CLIENT_SECRET": credential.client_secret,
        "FLOWMAILER_RESOLVE": f"{API_HOST}={addresses} {LOGIN_HOST}={addresses}",
        **(env or {}),
    }
    return subprocess.Popen(command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lines(relay: subprocess.Popen[str], deadline: float) -> Iterator[str]:
    """The relay's standard output line by line, as it prints them; fails the test at the deadline."""
    assert relay.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(relay.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "the relay did not get there before the deadline"
            assert selector.select(left), "the relay printed nothing before the deadline"
            line = relay.stdout.readline()
            assert line, f"the relay exited: {relay.stderr.read() if relay.stderr else ''}"
            yield line


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = requests.get(url, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def demo_fake() -> Iterator[FakeFlowmailer]:
    faults = [
        Fault.status(503, path=SUBMIT, probability=0.05),
        Fault.status(429, retry_after=1, path=SUBMIT, probability=0.02),
        Fault.accept_then_reset(path=SUBMIT, probability=0.02),
    ]
    with FakeFlowmailer(("127.0.0.2", "127.0.0.3", "127.0.0.4"), faults=faults, seed=11).running() as fake:
        fake.set_mode("127.0.0.4", Mode.BLACKHOLE)
        yield fake


def test_metrics_during_the_demos_faults_agree_with_the_fakes_records(
    demo_fake: FakeFlowmailer, tmp_path: Path
) -> None:
    fill(tmp_path / "outbox.db", MESSAGES)
    relay = start(demo_fake, tmp_path, "--metrics-addr", "127.0.0.1:0")
    deadline = time.monotonic() + DEADLINE
    try:
        out = lines(relay, deadline)
        base = next(line for line in out if line.startswith("metrics: ")).split()[1].removesuffix("/metrics,")
        # Scrape at each progress line until every message is accepted or waits to be reconciled: the 201s
        # lost to a reset connection are reconciled only after the relay's reconcile delay (a minute).
        for _ in out:
            samples = scrape(f"{base}/metrics")
            rows = {
                s: value(samples, "flowmailer_outbox_rows", state=s) for s in ("queued", "in_flight", "retry_scheduled")
            }
            ambiguous = value(samples, "flowmailer_ambiguous_total")
            if not any(rows.values()) and value(samples, "flowmailer_outbox_rows", state="reconciling") == ambiguous:
                break
        records = demo_fake.records()
        health, ready, missing = (requests.get(f"{base}{p}", timeout=10) for p in ("/healthz", "/readyz", "/nope"))
    finally:
        relay.send_signal(signal.SIGTERM)
        _, err = relay.communicate(timeout=60)
    assert relay.returncode == 0, err

    accepted = value(samples, "flowmailer_submits_accepted_total")
    reset = records.faults.get("accept-then-reset", 0)
    assert reset > 0  # the faults did happen
    assert records.faults.get("status", 0) > 0
    # Every copy the fake accepted is either a 201 the relay read, or one whose answer was lost to a reset.
    assert accepted + reset == len(records.accepted) == MESSAGES
    assert records.duplicates == {}
    assert ambiguous == reset == value(samples, "flowmailer_retries_total", cause="ambiguous")
    assert value(samples, "flowmailer_outbox_rows", state="accepted") == accepted
    assert value(samples, "flowmailer_attempts_total", operation="submit", outcome="accepted") == accepted
    # Each 503 and 429 the fake answered was one transient attempt.
    assert value(samples, "flowmailer_attempts_total", operation="submit", outcome="transient") == sum(
        n for status, n in records.statuses.items() if status in (429, 503)
    )
    assert value(samples, "flowmailer_tokens_fetched_total") == sum(records.token_requests.values())
    assert 1 <= value(samples, "flowmailer_connections_open") <= 10
    assert value(samples, "flowmailer_outbox_oldest_pending_age_seconds") > 0  # the reconciling ones wait
    assert (health.status_code, health.text) == (200, "ok\n")
    assert (ready.status_code, ready.text) == (200, "ok\n")
    assert missing.status_code == 404
    assert demo_fake.credential().client_secret not in err


def test_systemd_hears_ready_then_watchdog_pings_then_stopping(demo_fake: FakeFlowmailer, tmp_path: Path) -> None:
    demo_fake.set_faults([])
    fill(tmp_path / "outbox.db", 5)
    name = f"@flowmailer-test-{uuid.uuid4().hex}"  # the abstract namespace: no path length limit
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name[1:])
        sock.settimeout(DEADLINE)  # a bound on the wait, never a wait
        relay = start(demo_fake, tmp_path, env={"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "200000"})
        try:
            heard = [sock.recv(100).decode() for _ in range(3)]
        finally:
            relay.send_signal(signal.SIGTERM)
            _, err = relay.communicate(timeout=60)
        heard.append(sock.recv(100).decode())
        while True:  # pings that came between the third and the stop, then STOPPING=1
            if heard[-1] == "STOPPING=1":
                break
            heard.append(sock.recv(100).decode())
    assert relay.returncode == 0, err
    assert heard[:3] == ["READY=1", "WATCHDOG=1", "WATCHDOG=1"]
    assert set(heard[3:-1]) <= {"WATCHDOG=1"}


def test_notify_does_nothing_without_a_socket_and_the_watchdog_only_for_its_process() -> None:
    assert notify("READY=1", {}) is False
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({}) is None


def test_metrics_addr_that_is_not_host_port_is_refused_naming_the_flag(
    demo_fake: FakeFlowmailer, tmp_path: Path
) -> None:
    fill(tmp_path / "outbox.db", 1)
    relay = start(demo_fake, tmp_path, "--metrics-addr", "9100")
    _, err = relay.communicate(timeout=60)
    assert relay.returncode == 2
    assert "--metrics-addr" in err
    assert "127.0.0.1:9100" in err


class Loop:
    """Stands in for a Relay: only its last turn matters to Health."""

    def __init__(self) -> None:
        self.turned: float | None = None

    def last_turn(self) -> float | None:
        return self.turned


class Credential:
    def __init__(self) -> None:
        self.checks = 0
        self.refused: FlowmailerError | None = None

    def check_credentials(self) -> float:
        self.checks += 1
        if self.refused is not None:
            raise self.refused
        return 60.0


def test_health_is_the_loop_turning_and_readiness_the_outbox_and_a_token_reused_for_a_while() -> None:
    clock = FakeClock()
    loop, credential = Loop(), Credential()
    health = Health(cast("Relay", loop), MemoryOutbox(clock), credential.check_credentials, clock)
    assert health.alive() == "the relay loop is not running"
    assert health.ready() == "the relay loop is not running"
    loop.turned = clock.monotonic()
    clock.advance(READY_FOR)
    assert health.alive() is None
    assert health.ready() is None
    assert health.ready() is None
    assert credential.checks == 1  # the answer is reused: a probe a second is not a token request a second
    credential.refused = AuthenticationError("c", "invalid_client")
    clock.advance(READY_FOR)
    assert health.ready() == "no token: " + str(credential.refused)
    clock.advance(STUCK_AFTER)
    assert health.alive() == f"the relay loop has not turned for {STUCK_AFTER + 2 * READY_FOR:.0f} s"
