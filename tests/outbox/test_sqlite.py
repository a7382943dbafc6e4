"""What only the SQLite outbox promises: its file, its durability settings, and safety across threads and processes."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowmailer.adapters.sqlite_outbox import SQLiteOutbox, default_outbox_path
from flowmailer.core import ConfigurationError, OutboxError, SubmissionState, SubmitMessage
from flowmailer.testing import FakeClock

LEASE = 300.0


def _message(n: int) -> SubmitMessage:
    return SubmitMessage(sender_address="s@example.com", recipient_address=f"r{n}@example.com", text=str(n))


@pytest.fixture
def umask_022() -> Iterator[None]:
    """A permissive umask, as most shells have: the outbox must not rely on the caller's."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.usefixtures("umask_022")
def test_new_file_its_wal_and_folder_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "outbox.db"
    outbox = SQLiteOutbox(path)
    outbox.enqueue(_message(1))
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    outbox.close()
    assert modes == {"outbox.db": 0o600, "outbox.db-wal": 0o600, "outbox.db-shm": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_connection_uses_wal_and_synchronous_full(tmp_path: Path) -> None:
    outbox = SQLiteOutbox(tmp_path / "o.db")
    conn = outbox._conn  # the adapter's own connection: synchronous is a per-connection setting
    assert conn is not None
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    outbox.close()


def test_default_path_is_under_the_users_data_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_outbox_path({"XDG_DATA_HOME": "/data"}) == Path("/data/flowmailer/outbox.db")
    assert default_outbox_path({"HOME": "/home/u"}) == Path("/home/u/.local/share/flowmailer/outbox.db")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    outbox = SQLiteOutbox()
    outbox.close()
    assert outbox.path == tmp_path / "flowmailer" / "outbox.db"
    assert outbox.path.exists()


@pytest.mark.parametrize("kind", ["a folder", "under a file", "not a database"])
def test_unusable_path_is_a_configuration_error(tmp_path: Path, kind: str) -> None:
    (tmp_path / "file").write_bytes(b"this is not an SQLite database, it is just some text " * 100)
    path = {"a folder": tmp_path, "under a file": tmp_path / "file" / "o.db", "not a database": tmp_path / "file"}
    with pytest.raises(ConfigurationError) as caught:
        SQLiteOutbox(path[kind])
    assert caught.value.field == "path"


def test_messages_survive_closing_and_reopening(tmp_path: Path) -> None:
    clock = FakeClock()
    outbox = SQLiteOutbox(tmp_path / "o.db", clock=clock)
    first = outbox.enqueue(_message(1), dedupe_key="k")
    outbox.close()
    reopened = SQLiteOutbox(tmp_path / "o.db", clock=clock)
    assert reopened.enqueue(_message(2), dedupe_key="k") == first
    [claim] = reopened.claim("a", 10, LEASE)
    assert claim.id == first
    assert claim.message.recipient_address == "r1@example.com"
    reopened.close()


def test_closed_outbox_refuses_work(tmp_path: Path) -> None:
    outbox = SQLiteOutbox(tmp_path / "o.db")
    outbox.close()
    outbox.close()
    with pytest.raises(ConfigurationError, match="closed"):
        outbox.enqueue(_message(1))


def test_a_locked_database_is_an_outbox_error_and_changes_nothing(tmp_path: Path) -> None:
    outbox = SQLiteOutbox(tmp_path / "o.db", busy_timeout=0.05)
    other = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(OutboxError, match="locked"):
        outbox.enqueue(_message(1))
    other.execute("ROLLBACK")
    other.close()
    assert sum(outbox.counts().values()) == 0
    outbox.close()


_CLAIMER = """
import json, sys
from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
outbox = SQLiteOutbox(sys.argv[1])
ids = []
while batch := outbox.claim(sys.argv[2], int(sys.argv[3]), 300.0):
    ids += [c.id for c in batch]
print(json.dumps(ids))
"""


def _claim_in_subprocess(path: Path, owner: str, limit: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CLAIMER, str(path), owner, str(limit)], stdout=subprocess.PIPE, text=True
    )


def _ids(process: subprocess.Popen[str]) -> list[int]:
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0
    ids: list[int] = json.loads(out)
    return ids


def test_a_second_process_gets_nothing_already_leased(tmp_path: Path) -> None:
    outbox = SQLiteOutbox(tmp_path / "o.db")
    ids = outbox.enqueue_many([_message(i) for i in range(10)])
    mine = [c.id for c in outbox.claim("here", 5, LEASE)]
    theirs = _ids(_claim_in_subprocess(tmp_path / "o.db", "there", 100))
    outbox.close()
    assert mine == ids[:5]
    assert theirs == ids[5:]


def test_two_processes_racing_never_claim_the_same_row(tmp_path: Path) -> None:
    outbox = SQLiteOutbox(tmp_path / "o.db")
    ids = outbox.enqueue_many([_message(i) for i in range(300)])
    outbox.close()
    first, second = (_claim_in_subprocess(tmp_path / "o.db", owner, 7) for owner in ("p1", "p2"))
    a, b = _ids(first), _ids(second)
    assert not set(a) & set(b)
    assert sorted(a + b) == ids


def test_threads_sharing_one_outbox_never_claim_the_same_row(tmp_path: Path) -> None:
    outbox = SQLiteOutbox(tmp_path / "o.db")
    ids = outbox.enqueue_many([_message(i) for i in range(200)])
    claimed: list[list[int]] = [[] for _ in range(4)]

    def drain(mine: list[int]) -> None:
        while batch := outbox.claim(threading.current_thread().name, 3, LEASE):
            mine += [c.id for c in batch]

    threads = [threading.Thread(target=drain, args=(c,), name=f"t{i}") for i, c in enumerate(claimed)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10.0)
        assert not t.is_alive()
    outbox.close()
    everything = [i for c in claimed for i in c]
    assert sorted(everything) == ids


def test_an_unreadable_row_is_dead_and_does_not_block_the_queue(tmp_path: Path) -> None:
    outbox = SQLiteOutbox(tmp_path / "o.db")
    bad, good = outbox.enqueue(_message(1)), outbox.enqueue(_message(2))
    with sqlite3.connect(tmp_path / "o.db") as raw:
        raw.execute("UPDATE outbox SET message = ? WHERE id = ?", (b"not json", bad))
    raw.close()
    assert [c.id for c in outbox.claim("a", 10, LEASE)] == [good]
    status = outbox.status(bad)
    outbox.close()
    assert status is not None
    assert (status.state, status.attempts, status.due_at) == (SubmissionState.DEAD, 1, None)
    assert "cannot be read" in (status.last_reason or "")
