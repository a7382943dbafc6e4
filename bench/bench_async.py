"""AsyncClient at pipeline depth 1 and 3 over 10 connections, beside the sync Client with 10 threads.

Against FakeFlowmailer in a child process, directly and through bench/delay_proxy.py adding DELAY_MS of latency
each way (another child). Latency is where pipelining pays: at depth 1, 10 connections carry at most 10 requests
per round trip; at depth 3, 30. Run: .venv/bin/python bench/bench_async.py (BENCH_ASYNC_MESSAGES, _DELAY_MS).
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import trio

from flowmailer.adapters import Urllib3Transport
from flowmailer.adapters.trio_token_store import TrioTokenStore
from flowmailer.adapters.trio_transport import TrioTransport
from flowmailer.app import Client
from flowmailer.app.async_client import AsyncClient
from flowmailer.core import Credentials
from flowmailer.testing import StaticResolver

sys.path.insert(0, str(Path(__file__).parent))  # bench_client: the fake in a child process, the threaded measure
from bench_client import API_HOST, LOGIN_HOST, THREADS, Target, fake_server, load, measure, message

HERE = Path(__file__).parent
MESSAGES = int(os.environ.get("BENCH_ASYNC_MESSAGES", "2000"))
DELAY_MS = float(os.environ.get("BENCH_ASYNC_DELAY_MS", "20"))
ROUNDS = int(os.environ.get("BENCH_ASYNC_ROUNDS", "2"))
#: Tasks submitting at once: enough to fill 10 connections at depth 3.
TASKS = 30
PROXY_ADDRESSES = ("127.0.1.2", "127.0.1.3", "127.0.1.4")


@attrs.frozen
class Result:
    network: str
    client: str
    messages: int
    seconds: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_us(self) -> float:
        return 1e6 * self.cpu / self.messages


def _resolver(addresses: tuple[str, ...]) -> StaticResolver:
    return StaticResolver({API_HOST: addresses, LOGIN_HOST: addresses})


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_async(target: Target, addresses: tuple[str, ...], depth: int, messages: int) -> tuple[float, float]:
    """Seconds and this process's CPU seconds for ``messages`` submits from TASKS trio tasks over one AsyncClient."""
    credentials = Credentials(target.account_id, target.client_id, target.client_secret)
    bodies = [message(i) for i in range(messages)]

    async def main() -> tuple[float, float]:
        transport = TrioTransport(ca_bundle=target.ca_bundle, pipeline_depth=depth)
        async with AsyncClient(
            credentials,
            transport=transport,
            token_store=TrioTokenStore(),
            api_url=target.url(API_HOST),
            login_url=target.url(LOGIN_HOST),
            resolver=_resolver(addresses),
        ) as client:
            await client.submit(message(-1))  # warm: the token and a first connection
            work = iter(bodies)

            async def worker() -> None:
                for body in work:
                    await client.submit(body)

            started, cpu0 = time.perf_counter(), cpu()
            async with trio.open_nursery() as nursery:
                for _ in range(TASKS):
                    nursery.start_soon(worker)
            return time.perf_counter() - started, cpu() - cpu0

    return trio.run(main)


def run_sync(target: Target, addresses: tuple[str, ...], messages: int) -> tuple[float, float]:
    credentials = Credentials(target.account_id, target.client_id, target.client_secret)
    with Client(
        credentials,
        api_url=target.url(API_HOST),
        login_url=target.url(LOGIN_HOST),
        transport=Urllib3Transport(ca_bundle=target.ca_bundle),
        resolver=_resolver(addresses),
    ) as client:
        client.submit(message(-1))
        bodies = [message(i) for i in range(messages)]

        def submit(i: int) -> None:
            client.submit(bodies[i])

        row = measure(target.name, "Client", messages, submit)
        return row.seconds, row.cpu


@contextlib.contextmanager
def delay_proxy(target: Target, delay: float) -> Iterator[tuple[str, ...]]:
    """The proxy's addresses, each forwarding to one of the fake's at the same port."""
    routes = [f"{p}:{target.port}={a}:{target.port}" for p, a in zip(PROXY_ADDRESSES, target.addresses, strict=True)]
    child = subprocess.Popen(
        [sys.executable, str(HERE / "delay_proxy.py"), str(delay), *routes],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the delay proxy did not start")
        yield PROXY_ADDRESSES
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)


def run_all(target: Target, network: str, addresses: tuple[str, ...], messages: int) -> list[Result]:
    """Each client ROUNDS times, alternating (the machine is shared); each keeps its fastest round."""
    runs: dict[str, list[Result]] = {}
    for _ in range(ROUNDS):
        for depth in (1, 3):
            name = f"AsyncClient depth {depth}"
            seconds, cpu_seconds = run_async(target, addresses, depth, messages)
            runs.setdefault(name, []).append(Result(network, name, messages, seconds, cpu_seconds))
        name = f"Client {THREADS} threads"
        runs.setdefault(name, []).append(Result(network, name, messages, *run_sync(target, addresses, messages)))
    return [min(rounds, key=lambda r: r.seconds) for rounds in runs.values()]


def main() -> int:
    before = load()
    with fake_server() as target:
        results = run_all(target, "loopback", target.addresses, MESSAGES)
        with delay_proxy(target, DELAY_MS / 1000) as proxied:
            results += run_all(target, f"+{DELAY_MS:g} ms each way", proxied, max(TASKS, MESSAGES // 4))
    print(
        f"{MESSAGES} messages direct, {max(TASKS, MESSAGES // 4)} through the delay proxy; {TASKS} trio tasks; "
        f"best of {ROUNDS} alternating rounds; client CPU is this process's (getrusage), the fake runs in another"
    )
    print(f"before: {before}; after: {load()}")
    print(f"{'network':<22}{'client':<24}{'submits/s':>10}{'vs depth 1':>12}{'client CPU us/submit':>22}")
    for network in dict.fromkeys(r.network for r in results):
        rows = [r for r in results if r.network == network]
        base = rows[0].rate
        for r in rows:
            print(f"{r.network:<22}{r.client:<24}{r.rate:>10.0f}{r.rate / base:>11.2f}x{r.cpu_us:>22.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
