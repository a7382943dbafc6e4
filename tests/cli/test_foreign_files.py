"""What the commands do with a file that is not their outbox: another program's database, a damaged outbox, an
empty file, a folder they may not write in. Nothing is written to any of them, and the error says what to do."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from flowmailer.adapters import SQLiteCursorStore, SQLiteReportStore
from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.cli import main
from flowmailer.core import ConfigurationError, OutboxError, SubmitMessage

Capsys = pytest.CaptureFixture[str]
SEND = ["send", "--to", "b@example.com", "--from", "s@example.com", "--text", "x"]
#: The relay builds its clients before it opens the outbox (nothing is sent: it stops at the outbox).
RELAY = ["relay", "--no-progress", "--account-id", "a", "--client-id", "c", "--api-url", "https://127.0.0.1:9"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("FLOWMAILER_CONFIG", "FLOWMAILER_OUTBOX", "FLOWMAILER_CLIENT_SECRET", "FLOWMAILER_CLIENT_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", "not used")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def foreign(tmp_path: Path) -> Path:
    """Another program's SQLite database, in rollback-journal mode."""
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    conn.execute("INSERT INTO users (email) VALUES ('a@example.com')")
    conn.commit()
    conn.close()
    return path


def outbox_with(path: Path, count: int) -> Path:
    outbox = SQLiteOutbox(path)
    outbox.enqueue_many(
        SubmitMessage(sender_address="s@example.com", recipient_address=f"r{i}@example.com", text="x" * 400)
        for i in range(count)
    )
    outbox.close()
    return path


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    """An outbox of a few hundred messages with one of its b-tree pages overwritten."""
    path = outbox_with(tmp_path / "damaged.db", 300)
    data = bytearray(path.read_bytes())
    page = 4096
    data[5 * page : 5 * page + 200] = b"\xff" * 200
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "command",
    [SEND, ["status"], ["status", "1"], ["dead", "list"], ["dead", "requeue", "--all"], RELAY],
)
def test_every_command_refuses_another_programs_database_and_writes_nothing(
    foreign: Path, capsys: Capsys, command: list[str]
) -> None:
    before = digest(foreign)
    assert main([*command, "--outbox", f"sqlite://{foreign}"]) == 2
    err = capsys.readouterr().err
    assert "another program's database" in err
    assert "users" in err
    assert digest(foreign) == before
    conn = sqlite3.connect(foreign)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["users"]
    finally:
        conn.close()


def test_outbox_init_refuses_another_programs_database_too(foreign: Path, capsys: Capsys) -> None:
    before = digest(foreign)
    assert main(["outbox", "init", "--outbox", f"sqlite://{foreign}"]) == 2
    assert "another program's database" in capsys.readouterr().err
    assert digest(foreign) == before


def test_a_table_called_outbox_that_is_not_ours_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, payload TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigurationError, match="not flowmailer's"):
        SQLiteOutbox(path)


@pytest.mark.parametrize("store", [SQLiteCursorStore, SQLiteReportStore])
def test_the_cursor_and_report_stores_refuse_another_programs_database(
    foreign: Path, store: type[SQLiteCursorStore | SQLiteReportStore]
) -> None:
    before = digest(foreign)
    with pytest.raises(ConfigurationError, match="another program's database"):
        store(foreign)
    assert digest(foreign) == before


@pytest.mark.parametrize("command", [SEND, RELAY])
def test_only_outbox_init_makes_an_empty_file_an_outbox(tmp_path: Path, capsys: Capsys, command: list[str]) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    assert main([*command, "--outbox", f"sqlite://{path}"]) == 2
    assert "flowmailer outbox init" in capsys.readouterr().err
    assert path.stat().st_size == 0
    assert main(["outbox", "init", "--outbox", f"sqlite://{path}"]) == 0
    assert main([*SEND, "--outbox", f"sqlite://{path}"]) == 0


@pytest.mark.parametrize("command", [["status"], ["status", "1"], ["dead", "list"]])
def test_status_and_dead_list_write_nothing_to_the_outbox(tmp_path: Path, capsys: Capsys, command: list[str]) -> None:
    path = outbox_with(tmp_path / "outbox.db", 3)
    before = digest(path)
    assert main([*command, "--outbox", f"sqlite://{path}"]) == 0
    assert digest(path) == before
    assert "queued" in capsys.readouterr().out or command == ["dead", "list"]


def test_a_read_only_outbox_refuses_writes_as_an_outbox_error(tmp_path: Path) -> None:
    path = outbox_with(tmp_path / "outbox.db", 1)
    reader = SQLiteOutbox(path, read_only=True)
    try:
        assert reader.status(1) is not None
        with pytest.raises(OutboxError, match="readonly"):
            reader.enqueue(SubmitMessage(sender_address="s@example.com", recipient_address="r@example.com"))
    finally:
        reader.close()


@pytest.mark.parametrize("command", [SEND, ["status"], ["dead", "list"], RELAY])
def test_a_damaged_outbox_is_refused_by_every_command(damaged: Path, capsys: Capsys, command: list[str]) -> None:
    before = digest(damaged)
    assert main([*command, "--outbox", f"sqlite://{damaged}"]) == 2
    err = capsys.readouterr().err
    assert "is damaged" in err
    assert "restore it from a backup" in err
    assert digest(damaged) == before


def test_a_file_that_is_not_sqlite_is_named_as_such(tmp_path: Path, capsys: Capsys) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, " * 100)
    assert main(["status", "--outbox", f"sqlite://{path}"]) == 2
    assert "is not a SQLite database" in capsys.readouterr().err


def test_an_outbox_in_a_folder_that_is_not_writable_is_named_as_such(
    tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root, whom no folder's mode stops, the folder is reported unwritable through os.access (what the check
    asks); as any other user the folder's mode really is 0555."""
    folder = tmp_path / "locked"
    path = outbox_with(folder / "outbox.db", 1)
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == folder else real(p, mode))
    folder.chmod(0o555)
    try:
        assert main([*SEND, "--outbox", f"sqlite://{path}"]) == 2
    finally:
        folder.chmod(0o755)
    err = capsys.readouterr().err
    assert "is not writable" in err
    assert "-wal and -shm" in err
    assert "not a usable SQLite" not in err
