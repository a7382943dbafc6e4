"""The relay end to end beside the direct Client: the same 2 KB messages, submitted by 10 threads or drained.

FakeFlowmailer runs in a child process, so the CPU time measured here is the client side's alone. The relay is
measured from a full outbox to a drained one (enqueueing is bench_outbox's business), over the in-memory outbox
(the relay's own overhead) and over SQLite (what a deployment runs). Target: relay >= 0.8x the direct rate.
Runnable as ``.venv/bin/python bench/bench_relay.py`` (``BENCH_RELAY_MESSAGES``, ``BENCH_RELAY_ROUNDS``).
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs

from flowmailer.adapters import SystemClock, Urllib3Transport
from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.app import Client, Relay
from flowmailer.core import Credentials, SubmissionState
from flowmailer.ports import Outbox
from flowmailer.testing import MemoryOutbox, StaticResolver

sys.path.insert(0, str(Path(__file__).parent))  # bench_client: the fake in a child process, the 2 KB message
from bench_client import API_HOST, LOGIN_HOST, THREADS, fake_server, message

MESSAGES = int(os.environ.get("BENCH_RELAY_MESSAGES", "3000"))
#: Each way runs this many times, alternating; each keeps its best round (the machine is shared).
ROUNDS = int(os.environ.get("BENCH_RELAY_ROUNDS", "3"))


@attrs.frozen
class Row:
    way: str
    messages: int
    seconds: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def timed(way: str, run: Callable[[], object]) -> Row:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, t0 = usage.ru_utime + usage.ru_stime, time.perf_counter()
    run()
    elapsed = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return Row(way, MESSAGES, elapsed, usage.ru_utime + usage.ru_stime - cpu0)


def direct(client: Client) -> Row:
    counter = iter(range(MESSAGES))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            client.submit(message(i))

    def run() -> None:
        threads = [threading.Thread(target=work) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return timed("Client.submit, 10 threads", run)


def relayed(way: str, client: Client, outbox: Outbox) -> Row:
    outbox.enqueue_many(message(i) for i in range(MESSAGES))
    relay = Relay(outbox, client, clock=SystemClock(), concurrency=THREADS, batch_size=50, idle_wait=0.05)
    row = timed(way, relay.drain)
    counts = outbox.counts()
    if counts[SubmissionState.ACCEPTED] != MESSAGES:
        raise RuntimeError(f"{way}: the relay left {counts}")
    return row


@contextlib.contextmanager
def client_of_fake() -> Iterator[Client]:
    with (
        fake_server() as target,
        Client(
            Credentials(target.account_id, target.client_id, target.client_secret),
            api_url=target.url(API_HOST),
            login_url=target.url(LOGIN_HOST),
            transport=Urllib3Transport(ca_bundle=target.ca_bundle),
            resolver=StaticResolver({API_HOST: target.addresses, LOGIN_HOST: target.addresses}),
        ) as client,
    ):
        client.submit(message(-1))  # warm: the token and a first connection
        yield client


def main() -> int:
    rows: dict[str, list[Row]] = {}
    with client_of_fake() as client, tempfile.TemporaryDirectory() as tmp:
        for n in range(ROUNDS):
            for row in (
                direct(client),
                relayed("Relay over MemoryOutbox", client, MemoryOutbox(SystemClock())),
                relayed("Relay over SQLiteOutbox", client, SQLiteOutbox(Path(tmp) / f"outbox-{n}.db")),
            ):
                rows.setdefault(row.way, []).append(row)
    best = {way: max(found, key=lambda r: r.rate) for way, found in rows.items()}
    base = best["Client.submit, 10 threads"].rate
    print(f"{MESSAGES} messages of about 2 KB against FakeFlowmailer (another process), best of {ROUNDS} rounds")
    print(f"{'way':<28} {'messages/s':>11} {'CPU ms/msg':>11} {'vs direct':>10}")
    for row in best.values():
        print(f"{row.way:<28} {row.rate:>11.0f} {1000 * row.cpu / row.messages:>11.2f} {row.rate / base:>9.2f}x")
    print("target: relay >= 0.80x the direct Client's rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
