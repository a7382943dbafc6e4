"""AsyncClient on asyncio and on trio, side by side: each at pipeline depth 1 and 3 over 10 connections, beside a
bare h11 loop on the same backend, and the sync Client with 10 threads beside them all.

Against FakeFlowmailer in a child process, directly and through bench/delay_proxy.py adding DELAY_MS of latency
each way (another child). Latency is where pipelining pays: at depth 1, 10 connections carry at most 10 requests
per round trip; at depth 3, 30. The bare loop is the floor on each backend: 10 anyio TLS connections, one token,
one prebuilt body, h11 framing, no retries, no pipelining. Run: .venv/bin/python bench/bench_async.py
(BENCH_ASYNC_MESSAGES, _DELAY_MS, _ROUNDS).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import attrs
import h11

from flowmailer.adapters import Urllib3Transport
from flowmailer.adapters.anyio_token_store import AnyioTokenStore
from flowmailer.adapters.anyio_transport import AnyioTransport
from flowmailer.app import Client
from flowmailer.app.async_client import AsyncClient
from flowmailer.core import Credentials, message_to_json
from flowmailer.testing import StaticResolver

sys.path.insert(0, str(Path(__file__).parent))  # bench_client: the fake in a child process, the threaded measure
from bench_client import (
    API_HOST,
    LOGIN_HOST,
    MEDIA_TYPE,
    THREADS,
    Target,
    _session,
    fake_server,
    fetch_token,
    load,
    measure,
    message,
)

HERE = Path(__file__).parent
MESSAGES = int(os.environ.get("BENCH_ASYNC_MESSAGES", "2000"))
DELAY_MS = float(os.environ.get("BENCH_ASYNC_DELAY_MS", "20"))
ROUNDS = int(os.environ.get("BENCH_ASYNC_ROUNDS", "2"))
#: Tasks submitting at once: enough to fill 10 connections at depth 3.
TASKS = 30
PROXY_ADDRESSES = ("127.0.1.2", "127.0.1.3", "127.0.1.4")
BACKENDS = ("asyncio", "trio")


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


def run_async(
    target: Target, addresses: tuple[str, ...], depth: int, messages: int, backend: str, tasks: int = TASKS
) -> tuple[float, float]:
    """Seconds and this process's CPU seconds for ``messages`` submits from ``tasks`` tasks over one AsyncClient
    (10 connections at depth d need 10 x d tasks to be full)."""
    credentials = Credentials(target.account_id, target.client_id, target.client_secret)
    bodies = [message(i) for i in range(messages)]

    async def main() -> tuple[float, float]:
        transport = AnyioTransport(ca_bundle=target.ca_bundle, pipeline_depth=depth)
        async with AsyncClient(
            credentials,
            transport=transport,
            token_store=AnyioTokenStore(),
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
            async with anyio.create_task_group() as group:
                for _ in range(tasks):
                    group.start_soon(worker)
            return time.perf_counter() - started, cpu() - cpu0

    return anyio.run(main, backend=backend)


def run_bare(
    target: Target, addresses: tuple[str, ...], messages: int, backend: str, depth: int = 1
) -> tuple[float, float]:
    """The floor on ``backend``: 10 keep-alive TLS connections over the addresses, each a loop of ``depth``
    requests written in one write and their answers read by h11; one token, one prebuilt body.

    At depth 1 h11 writes each request. Deeper, the batch's bytes are built once before the run (an h11 client
    sends no request before the previous answer is in), and h11 is told of each request only to frame its answer:
    the floor for pipelining, which the client's CPU per request at depth 8 is to be read against."""
    with _session(target, LOGIN_HOST) as login:
        token = fetch_token(target, login)
    body = message_to_json(message(0).with_client_reference("bare"))
    request = h11.Request(
        method="POST",
        target=f"/{target.account_id}/messages/submit",
        headers=[
            ("Host", API_HOST),
            ("Accept", MEDIA_TYPE),
            ("Content-Type", MEDIA_TYPE),
            ("Authorization", f"Bearer {token}"),
            ("Content-Length", str(len(body))),
        ],
    )
    events = (request, h11.Data(data=body), h11.EndOfMessage())
    framing = h11.Connection(h11.CLIENT)
    batch = b"".join(framing.send(e) or b"" for e in events) * depth
    context = ssl.create_default_context(cafile=target.ca_bundle)

    async def connection(address: str, work: Iterator[int]) -> None:
        stream = await anyio.connect_tcp(
            address, target.port, ssl_context=context, tls_hostname=API_HOST, tls_standard_compatible=False
        )
        async with stream:
            h = h11.Connection(h11.CLIENT)
            while taken := len(list(itertools.islice(work, depth))):
                if depth == 1:
                    await stream.send(b"".join(h.send(e) or b"" for e in events))  # one write, as the transport's
                else:
                    await stream.send(batch if taken == depth else batch[: len(batch) // depth * taken])
                for k in range(taken):
                    if depth > 1:
                        for e in events:
                            h.send(e)  # written above: h11 learns of the request, to frame its answer
                    status = 0
                    while not isinstance(event := h.next_event(), h11.EndOfMessage):
                        if event is h11.NEED_DATA:
                            h.receive_data(await stream.receive(65536))
                        elif isinstance(event, h11.Response):
                            status = event.status_code
                    if status != 201:
                        raise RuntimeError(f"HTTP {status} (answer {k} of a batch of {taken})")
                    h.start_next_cycle()

    async def main() -> tuple[float, float]:
        await connection(addresses[0], iter(range(1)))  # warm, as the client's first submit is
        work = iter(range(messages))
        started, cpu0 = time.perf_counter(), cpu()
        async with anyio.create_task_group() as tasks:
            for k in range(THREADS):
                tasks.start_soon(connection, addresses[k % len(addresses)], work)
        return time.perf_counter() - started, cpu() - cpu0

    return anyio.run(main, backend=backend)


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
        for backend in BACKENDS:
            name = f"{backend}: bare h11 loop"
            seconds, cpu_seconds = run_bare(target, addresses, messages, backend)
            runs.setdefault(name, []).append(Result(network, name, messages, seconds, cpu_seconds))
            for depth in (1, 3):
                name = f"{backend}: AsyncClient depth {depth}"
                seconds, cpu_seconds = run_async(target, addresses, depth, messages, backend)
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
        f"{MESSAGES} messages direct, {max(TASKS, MESSAGES // 4)} through the delay proxy; {TASKS} tasks; "
        f"best of {ROUNDS} alternating rounds; client CPU is this process's (getrusage), the fake runs in another"
    )
    print(f"before: {before}; after: {load()}")
    print(f"{'network':<22}{'client':<32}{'submits/s':>10}{'vs bare loop':>14}{'client CPU us/submit':>22}")
    for network in dict.fromkeys(r.network for r in results):
        rows = [r for r in results if r.network == network]
        bare = {r.client.split(":")[0]: r.rate for r in rows if r.client.endswith("bare h11 loop")}
        for r in rows:
            # Each backend's rows against the bare loop on the same backend; the sync Client against asyncio's.
            base = bare.get(r.client.split(":")[0], bare["asyncio"])
            print(f"{r.network:<22}{r.client:<32}{r.rate:>10.0f}{r.rate / base:>13.2f}x{r.cpu_us:>22.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
