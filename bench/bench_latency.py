"""Throughput at a real network's latency, each client beside its limit: nginx behind bench/delay_proxy.py.

nginx (the Debian package; a generated config in a temp dir, bench/nginx-bench.conf) answers a token and
``201`` with a ``Location`` to every submit, over TLS as Flowmailer does (the proxy forwards TLS opaquely, so
every client verifies the certificate against the DNS name). The proxy adds DELAY each way (20 ms round trip)
and holds a new connection's first bytes one more round trip, as a TCP handshake costs. At depth d over 10
connections no client can pass d x 10 / RTT requests/s, whatever its CPU: each row is printed beside that limit
and as a fraction of it. wrk (C, pipelining through bench/submit.lua) measures what this machine can reach.

Then, without the proxy, the async client's CPU per request beside a bare h11 loop's on the same backend and at
the same depth (at depth 8 the bare loop writes each connection's 8 prebuilt requests in one write: the floor).

Rows: wrk at depth 1 and 8; aiohttp with 10 connections (a child process of bench/.venv-aiohttp's Python, made
by ``just bench latency``); the sync Client with 10 threads; AsyncClient at depth 1 and 8 on trio and on
asyncio; the threaded Relay over SQLite (depth 1); the async relay over SQLite at depth 1 and 8 when
flowmailer has one (found by import). Run: ``.venv/bin/python bench/bench_latency.py [--quick]`` (``--quick``:
a smoke test of every row in a few seconds, its figures meaningless). The machine is shared: the load average
is printed with each table; compare only figures from one run.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import attrs

from flowmailer.adapters import SystemClock, Urllib3Transport
from flowmailer.adapters.anyio_token_store import AnyioTokenStore
from flowmailer.adapters.anyio_transport import AnyioTransport
from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.app import Client, Relay
from flowmailer.app.async_client import AsyncClient
from flowmailer.app.async_relay import AsyncRelay
from flowmailer.core import Credentials, SubmissionState, message_to_json

sys.path.insert(0, str(Path(__file__).parent))  # the other benches' servers, proxy and measures
from bench_async import BACKENDS, _resolver, cpu, delay_proxy, run_async, run_bare, run_sync
from bench_client import API_HOST, LOGIN_HOST, MEDIA_TYPE, THREADS, Target, _session, fetch_token, load, message
from bench_client import nginx_server as _nginx_server
from bench_fake import submit_body

HERE = Path(__file__).parent
QUICK = "--quick" in sys.argv[1:]
DELAY = 0.010  # each way
RTT = 2 * DELAY
#: Messages per row through the proxy, at depth 1 and at depth 8 (about 4 s and 1.5-4 s).
MESSAGES_1 = 100 if QUICK else int(os.environ.get("BENCH_LATENCY_MESSAGES", "2000"))
MESSAGES_8 = 4 * MESSAGES_1
WRK_SECONDS = 1 if QUICK else 4
#: Without the proxy: messages per run, and runs of each client alternating (each keeps its lowest CPU).
CPU_MESSAGES = 100 if QUICK else 3000
CPU_ROUNDS = 1 if QUICK else 2
AIOHTTP_PYTHON = HERE / ".venv-aiohttp" / "bin" / "python"


@attrs.frozen
class Row:
    client: str
    depth: int
    messages: int = 0
    seconds: float = 0.0
    cpu: float = 0.0  # the client's CPU seconds (its process's, or the child's for wrk and aiohttp)
    missing: str | None = None  # why the row has no figure

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def limit(self) -> float:
        """What 10 connections at this depth can carry at RTT, whatever the CPU."""
        return self.depth * THREADS / RTT

    @property
    def cpu_us(self) -> float:
        return 1e6 * self.cpu / self.messages


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- peers -----------------------------------------------------------------------------------------------------


def run_wrk(target: Target, addresses: tuple[str, ...], depth: int) -> Row:
    """wrk, 1 thread, 10 connections, ``depth`` requests per write (bench/submit.lua) for WRK_SECONDS."""
    name = f"wrk, 10 connections, depth {depth}"
    wrk = shutil.which("wrk")
    if wrk is None:
        return Row(name, depth, missing="not available: wrk is not installed (apt-get install wrk)")
    with _session(target, LOGIN_HOST) as login:
        token = fetch_token(target, login)
    env = dict(
        os.environ,
        FLOWMAILER_TOKEN=token,
        FLOWMAILER_PATH=f"/{target.account_id}/messages/submit",
        FLOWMAILER_BODY=submit_body(),
        FLOWMAILER_DEPTH=str(depth),
    )
    url = f"https://{addresses[0]}:{target.port}/"
    command = [wrk, "-t1", f"-c{THREADS}", f"-d{WRK_SECONDS}s", "-s", str(HERE / "submit.lua"), url]
    cpu0 = children_cpu()
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    cpu_seconds = children_cpu() - cpu0
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if total is None or non_2xx is not None:
        raise RuntimeError(f"wrk: cannot read its output, or some answers were not 201:\n{out}")
    seconds = float(total[2]) / (1000 if total[3] == "ms" else 1)
    return Row(name, depth, int(total[1]), seconds, cpu_seconds)


def run_aiohttp(target: Target, addresses: tuple[str, ...], messages: int) -> Row:
    name = f"aiohttp, {THREADS} connections"
    if not AIOHTTP_PYTHON.exists():
        return Row(name, 1, missing="not available: no bench/.venv-aiohttp (`just bench latency` makes it)")
    with _session(target, LOGIN_HOST) as login:
        token = fetch_token(target, login)
    job = {
        "addresses": list(addresses),
        "port": target.port,
        "host": API_HOST,
        "path": f"/{target.account_id}/messages/submit",
        "token": token,
        "media_type": MEDIA_TYPE,
        "body": message_to_json(message(0).with_client_reference("aiohttp")).decode(),
        "ca_bundle": target.ca_bundle,
        "messages": messages,
        "connections": THREADS,
    }
    done = subprocess.run(
        [str(AIOHTTP_PYTHON), str(HERE / "aiohttp_peer.py")],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(done.stdout)
    return Row(name, 1, messages, figures["seconds"], figures["cpu"])


# --- relays ----------------------------------------------------------------------------------------------------


def run_relay(target: Target, addresses: tuple[str, ...], messages: int, tmp: str) -> Row:
    """The threaded Relay (10 workers, depth 1) from a full SQLite outbox to a drained one."""
    outbox = SQLiteOutbox(Path(tmp) / "threaded.db")
    outbox.enqueue_many(message(i) for i in range(messages))
    with Client(
        Credentials(target.account_id, target.client_id, target.client_secret),
        api_url=target.url(API_HOST),
        login_url=target.url(LOGIN_HOST),
        transport=Urllib3Transport(ca_bundle=target.ca_bundle),
        resolver=_resolver(addresses),
    ) as client:
        client.submit(message(-1))  # warm: the token and a first connection
        relay = Relay(outbox, client, clock=SystemClock(), concurrency=THREADS, batch_size=50, idle_wait=0.05)
        started, cpu0 = time.perf_counter(), cpu()
        relay.drain()
        row = Row("threaded Relay, SQLite outbox", 1, messages, time.perf_counter() - started, cpu() - cpu0)
    _check_drained(outbox, messages, row.client)
    return row


def run_async_relay(
    target: Target, addresses: tuple[str, ...], depth: int, messages: int, backend: str, tmp: str
) -> Row:
    """The async relay over ``AsyncClient`` at ``depth``, from a full SQLite outbox to a drained one."""
    name = f"{backend}: async Relay, SQLite outbox, depth {depth}"
    outbox = SQLiteOutbox(Path(tmp) / f"async-{backend}-{depth}.db")
    outbox.enqueue_many(message(i) for i in range(messages))

    async def main() -> tuple[float, float]:
        async with AsyncClient(
            Credentials(target.account_id, target.client_id, target.client_secret),
            transport=AnyioTransport(ca_bundle=target.ca_bundle, pipeline_depth=depth),
            token_store=AnyioTokenStore(),
            api_url=target.url(API_HOST),
            login_url=target.url(LOGIN_HOST),
            resolver=_resolver(addresses),
        ) as client:
            await client.submit(message(-1))
            relay = AsyncRelay(outbox, client, pipeline_depth=depth)
            started, cpu0 = time.perf_counter(), cpu()
            await relay.drain()
            return time.perf_counter() - started, cpu() - cpu0

    seconds, cpu_seconds = anyio.run(main, backend=backend)
    _check_drained(outbox, messages, name)
    return Row(name, depth, messages, seconds, cpu_seconds)


def _check_drained(outbox: SQLiteOutbox, messages: int, name: str) -> None:
    counts = outbox.counts()
    if counts[SubmissionState.ACCEPTED] != messages:
        raise RuntimeError(f"{name}: the relay left {counts}")


# --- the run ---------------------------------------------------------------------------------------------------


def through_proxy(target: Target, addresses: tuple[str, ...]) -> list[Row]:
    rows = [run_wrk(target, addresses, 1), run_wrk(target, addresses, 8)]
    rows.append(run_aiohttp(target, addresses, MESSAGES_1))
    rows.append(Row(f"Client, {THREADS} threads", 1, MESSAGES_1, *run_sync(target, addresses, MESSAGES_1)))
    for backend in BACKENDS:
        for depth, messages in ((1, MESSAGES_1), (8, MESSAGES_8)):
            figures = run_async(target, addresses, depth, messages, backend, tasks=THREADS * depth)
            rows.append(Row(f"{backend}: AsyncClient depth {depth}", depth, messages, *figures))
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(run_relay(target, addresses, MESSAGES_1, tmp))
        for backend in BACKENDS:
            for depth, messages in ((1, MESSAGES_1), (8, MESSAGES_8)):
                rows.append(run_async_relay(target, addresses, depth, messages, backend, tmp))
    return rows


def without_proxy(target: Target) -> list[Row]:
    """Each backend's bare h11 loop and AsyncClient at depth 1 and 8, CPU_ROUNDS times alternating; each keeps
    the round with the least CPU per request."""
    runs: dict[str, list[Row]] = {}
    for _ in range(CPU_ROUNDS):
        for backend in BACKENDS:
            for depth in (1, 8):
                name = f"{backend}: bare h11 loop depth {depth}"
                figures = run_bare(target, target.addresses, CPU_MESSAGES, backend, depth)
                runs.setdefault(name, []).append(Row(name, depth, CPU_MESSAGES, *figures))
            for depth in (1, 8):
                name = f"{backend}: AsyncClient depth {depth}"
                figures = run_async(target, target.addresses, depth, CPU_MESSAGES, backend, THREADS * depth)
                runs.setdefault(name, []).append(Row(name, depth, CPU_MESSAGES, *figures))
    return [min(rounds, key=lambda r: r.cpu_us) for rounds in runs.values()]


def print_proxied(rows: list[Row], before: str) -> None:
    print(
        f"through bench/delay_proxy.py: +{DELAY * 1000:g} ms each way ({RTT * 1000:g} ms round trip, a new "
        f"connection's first bytes one more); nginx over TLS; {MESSAGES_1} messages a depth-1 row, {MESSAGES_8} "
        f"a depth-8 row, wrk {WRK_SECONDS} s a row{'; --quick: figures meaningless' if QUICK else ''}"
    )
    print(f"before: {before}; after: {load()}")
    print(f"{'client':<46}{'requests/s':>11}{'limit':>8}{'of limit':>10}{'client CPU us/req':>19}")
    for r in rows:
        if r.missing is not None:
            print(f"{r.client:<46}{'-':>11}{r.limit:>8.0f}{'-':>10}{'-':>19}  {r.missing}")
        else:
            print(f"{r.client:<46}{r.rate:>11.0f}{r.limit:>8.0f}{r.rate / r.limit:>10.2f}{r.cpu_us:>19.0f}")
    by = {r.client: r for r in rows if r.missing is None}
    cap = by.get("wrk, 10 connections, depth 8")
    for backend in BACKENDS:
        d1, d8 = by[f"{backend}: AsyncClient depth 1"], by[f"{backend}: AsyncClient depth 8"]
        ceiling = min(d8.limit, cap.rate) if cap is not None else d8.limit
        print(
            f"{backend}: AsyncClient depth 1 at {d1.rate / d1.limit:.2f} of 10/RTT (target >= 0.85); depth 8 at "
            f"{d8.rate / ceiling:.2f} of min(80/RTT, wrk's depth 8) = {ceiling:.0f}/s (target >= 0.7)"
        )
        relay = by.get(f"{backend}: async Relay, SQLite outbox, depth 8")
        peer = by.get(f"aiohttp, {THREADS} connections")
        if relay is not None:
            versus = f", {relay.rate / peer.rate:.1f}x aiohttp's (target >= 3)" if peer is not None else ""
            print(
                f"{backend}: async Relay depth 8 at {relay.rate / d8.rate:.2f}x AsyncClient depth 8 (target >= 0.8)"
                f"{versus}"
            )


def print_cpu(rows: list[Row], before: str) -> None:
    print(
        f"\nwithout the proxy: nginx over TLS on loopback, {CPU_MESSAGES} messages a run, the least CPU of "
        f"{CPU_ROUNDS} alternating runs; client CPU is this process's (getrusage), nginx runs in another"
    )
    print(f"before: {before}; after: {load()}")
    print(f"{'client':<46}{'requests/s':>11}{'client CPU us/req':>19}{'vs bare loop':>14}")
    bare = {(r.client.split(":")[0], r.depth): r for r in rows if "bare h11 loop" in r.client}
    for r in rows:
        base = bare[r.client.split(":")[0], r.depth]
        print(f"{r.client:<46}{r.rate:>11.0f}{r.cpu_us:>19.0f}{r.cpu_us / base.cpu_us:>13.2f}x")
    for backend in BACKENDS:
        by = {r.client: r for r in rows if r.client.startswith(backend)}
        d1, d8 = by[f"{backend}: AsyncClient depth 1"], by[f"{backend}: AsyncClient depth 8"]
        floor = bare[backend, 8].cpu_us
        print(
            f"{backend}: depth 1 at {d1.cpu_us / bare[backend, 1].cpu_us:.2f}x the bare loop's CPU per request "
            f"(target <= 1.25x); depth 8 at {d8.cpu_us / 1000:.3f} ms per request (target <= 0.1 ms; the bare "
            f"loop pipelining at depth 8 takes {floor / 1000:.3f} ms)"
        )


def main() -> int:
    with _nginx_server() as target:
        if target is None:
            return 0  # nginx_server said how to install it
        before = load()
        with delay_proxy(target, DELAY) as proxied:
            rows = through_proxy(target, proxied)
        print_proxied(rows, before)
        before = load()
        print_cpu(without_proxy(target), before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
