"""bench/bench_latency.py in --quick mode: every row runs (or says why it cannot), and the tables print.

A smoke test of the benchmark's code, not of its figures: nothing here looks at a rate or a CPU time, which on a
shared machine mean nothing in a run this short.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench" / "bench_latency.py"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

pytestmark = [
    pytest.mark.skipif(NGINX is None, reason="needs nginx (Debian: apt-get install nginx)"),
    pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (Debian: apt-get install wrk)"),
]

#: Each row through the proxy, and its limit: 10 connections x depth / 20 ms.
PROXIED_ROWS = {
    "wrk, 10 connections, depth 1": 500,
    "wrk, 10 connections, depth 8": 4000,
    "aiohttp, 10 connections": 500,
    "Client, 10 threads": 500,
    "asyncio: AsyncClient depth 1": 500,
    "asyncio: AsyncClient depth 8": 4000,
    "trio: AsyncClient depth 1": 500,
    "trio: AsyncClient depth 8": 4000,
    "threaded Relay, SQLite outbox": 500,
    "asyncio: async Relay, SQLite outbox, depth 1": 500,
    "asyncio: async Relay, SQLite outbox, depth 8": 4000,
    "trio: async Relay, SQLite outbox, depth 1": 500,
    "trio: async Relay, SQLite outbox, depth 8": 4000,
}
CPU_ROWS = [
    f"{backend}: {client}"
    for backend in ("asyncio", "trio")
    for client in ("bare h11 loop depth 1", "bare h11 loop depth 8", "AsyncClient depth 1", "AsyncClient depth 8")
]


def test_the_quick_run_prints_every_row_beside_its_limit_and_the_load_average() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum("load average" in line for line in lines) == 2  # one line for each table
    proxied, _, cpu = done.stdout.partition("without the proxy")
    for name, limit in PROXIED_ROWS.items():
        row = next(line for line in proxied.splitlines() if line.startswith(name + " "))
        figures = row[len(name) :].split()
        assert figures[1] == str(limit), row
        # A figure beside its limit and as a fraction of it, or a dash and the reason it has none.
        assert re.fullmatch(r"\d+ \d+ \d+\.\d\d \d+", " ".join(figures[:4])) or (
            figures[0] == "-" and "not available:" in row
        ), row
    for name in CPU_ROWS:
        row = next(line for line in cpu.splitlines() if line.startswith(name + " "))
        assert re.fullmatch(r"\d+ \d+ \d+\.\d\dx", " ".join(row[len(name) :].split())), row
    assert "target <= 1.25x" in cpu
    assert "target <= 0.1 ms" in cpu
