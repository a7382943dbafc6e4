"""The outbox: durable enqueue rate, one message per transaction vs batches of 100, and peak RSS at 1,000,000 queued.

SQLite always; PostgreSQL too when its server binaries are here (a throwaway server, started as the tests start it).
The RSS figure is the peak resident set (``ru_maxrss``) of a fresh process that opens an outbox holding 1,000,000
queued messages, claims 10 batches of 100 from it and counts it; beside it, the same process on an empty outbox.
Run: .venv/bin/python bench/bench_outbox.py (about a minute). BENCH_OUTBOX_ROWS changes the million.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.core import SubmitMessage, message_to_json
from flowmailer.ports import Outbox

ROOT = Path(__file__).resolve().parent.parent
ROWS = int(os.environ.get("BENCH_OUTBOX_ROWS", "1000000"))
SECONDS = 3.0  # per enqueue mode and backend
TARGET_MB = 150


def _message(n: int) -> SubmitMessage:
    return SubmitMessage(
        sender_address="bench@example.test",
        recipient_address=f"someone{n}@example.test",
        subject="Your order",
        text="Thank you for your order. " * 8,
        flow_selector="order",
    )


def enqueue_rates(outbox: Outbox) -> tuple[float, float]:
    """Messages per second made durable: one enqueue per message, then enqueue_many in batches of 100."""
    messages = [_message(i) for i in range(100)]
    single = 0
    start = time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        outbox.enqueue(messages[single % 100])
        single += 1
    single_rate = single / (time.perf_counter() - start)
    batched = 0
    start = time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        outbox.enqueue_many(messages)
        batched += 100
    return single_rate, batched / (time.perf_counter() - start)


def report_rates(name: str, outbox: Outbox) -> None:
    single, batched = enqueue_rates(outbox)
    ratio = batched / single
    print(
        f"{name:<10} durable enqueue: {single:9,.0f}/s one by one, {batched:9,.0f}/s in batches of 100 ({ratio:.1f}x)"
    )


def fill_sqlite(path: Path, rows: int) -> None:
    """Queue ``rows`` messages straight through SQL: the fill is not what is measured, and the adapter's own
    enqueue path would take minutes for a million."""
    SQLiteOutbox(path).close()  # creates the file and its schema
    body = message_to_json(_message(0).with_client_reference("bench"))
    now = time.time()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO outbox (state, due_at, client_reference, message, enqueued_at, updated_at)"
        " SELECT 'QUEUED', ?, lower(hex(randomblob(16))), ?, ?, ? FROM n",
        (rows, now, body, now, now),
    )
    conn.execute("COMMIT")
    conn.close()


# ru_maxrss of a child counts the parent's resident set at fork time, so the child also reports VmHWM, the
# high-water mark of its own address space (reset by exec), where Linux has it.
_HOLDER = """
import json, re, resource, sys
from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
outbox = SQLiteOutbox(sys.argv[1])
claimed = sum(len(outbox.claim("bench", 100, 600.0)) for _ in range(10))
counts = outbox.counts()
outbox.close()
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read())
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"claimed": claimed, "rows": sum(counts.values()), "maxrss_kb": int(hwm[1]) if hwm else maxrss}))
"""


def peak_rss(path: Path) -> dict[str, int]:
    done = subprocess.run([sys.executable, "-c", _HOLDER, str(path)], capture_output=True, text=True, check=True)
    result: dict[str, int] = json.loads(done.stdout)
    return result


@contextlib.contextmanager
def postgres() -> Iterator[str | None]:
    """A throwaway server's conninfo, or None when PostgreSQL is not installed here."""
    sys.path.insert(0, str(ROOT))
    from tests.outbox.postgres_server import PostgresUnavailableError, running_postgres

    try:
        with running_postgres() as server:
            yield server.conninfo
    except PostgresUnavailableError as e:
        print(f"postgres   skipped: {e}")
        yield None


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as folder:
        outbox = SQLiteOutbox(Path(folder) / "rates.db")
        report_rates("sqlite", outbox)
        outbox.close()

        with postgres() as conninfo:
            if conninfo is not None:
                from flowmailer.adapters.postgres_outbox import PostgresOutbox

                pg = PostgresOutbox(conninfo, table=f"bench_{uuid.uuid4().hex}")
                pg.create_schema()
                report_rates("postgres", pg)
                pg.close()

        empty, full = Path(folder) / "empty.db", Path(folder) / "full.db"
        fill_sqlite(empty, 0)
        start = time.perf_counter()
        fill_sqlite(full, ROWS)
        filled = time.perf_counter() - start
        base, held = peak_rss(empty), peak_rss(full)
        size_mb = full.stat().st_size / 2**20
        verdict = "within" if held["maxrss_kb"] / 1024 <= TARGET_MB else "OVER"
        print(
            f"sqlite     peak RSS: {held['maxrss_kb'] / 1024:.1f} MB holding {held['rows']:,} queued"
            f" ({size_mb:,.0f} MB file, filled in {filled:.0f} s) after claiming {held['claimed']};"
            f" {base['maxrss_kb'] / 1024:.1f} MB on an empty outbox; {verdict} the {TARGET_MB} MB target"
        )


if __name__ == "__main__":
    main()
