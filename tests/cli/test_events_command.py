"""``flowmailer events follow`` as a subprocess against FakeFlowmailer: JSON lines from the stored cursor, Ctrl-C."""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowmailer.app import Client
from flowmailer.cli import main
from flowmailer.core import SubmitMessage
from flowmailer.testing import FakeFlowmailer

N = 4


@pytest.fixture
def fake() -> Iterator[FakeFlowmailer]:
    # The command resolves names with the system resolver: "localhost" is the fake's one name that resolves.
    with FakeFlowmailer(addresses=("127.0.0.1",)).running() as fake:
        yield fake


def submit(fake: FakeFlowmailer, first: int) -> list[str]:
    url = f"https://localhost:{fake.port}"
    credentials = fake.client_credentials("ADMIN")
    with Client(credentials, api_url=url, login_url=url, ca_bundle=str(fake.ca_bundle)) as client:
        return [
            client.submit(SubmitMessage(sender_address="s@example.com", recipient_address=f"r{n}@example.com"))
            for n in range(first, first + N)
        ]


def start(fake: FakeFlowmailer, tmp_path: Path) -> subprocess.Popen[str]:
    credential = fake.credential("ADMIN")
    url = f"https://localhost:{fake.port}"
    env = {**os.environ, "FLOWMAILER_CLIENT_SECRET": credential.client_secret}
    command = [
        sys.executable, "-m", "flowmailer.cli", "events", "follow", "--cursors", str(tmp_path / "cursors.db"),
        "--idle-wait", "3600", "--account-id", fake.account_id, "--client-id", credential.client_id,
        "--api-url", url, "--login-url", url, "--ca-bundle", str(fake.ca_bundle),
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_lines(process: subprocess.Popen[str], count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """``count`` lines of the command's output, each within ``timeout`` seconds (a reader thread does the waiting)."""
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in iter(stdout.readline, ""):
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return [json.loads(lines.get(timeout=timeout)) for _ in range(count)]


def run_until(fake: FakeFlowmailer, tmp_path: Path, count: int) -> list[dict[str, Any]]:
    """Start the command, read ``count`` events, then Ctrl-C it while it waits an hour for more: it exits 0 now."""
    process = start(fake, tmp_path)
    try:
        events = read_lines(process, count)
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return events


def test_follow_prints_each_event_once_across_runs_and_stops_on_ctrl_c(fake: FakeFlowmailer, tmp_path: Path) -> None:
    ids = submit(fake, 0)
    events = run_until(fake, tmp_path, 2 * N)
    ids += submit(fake, N)
    events += run_until(fake, tmp_path, 2 * N)
    seen = collections.Counter((e["messageId"], e["type"]) for e in events)
    assert seen == {(m, t): 1 for m in ids for t in ("SUBMITTED", "DELIVERED")}


def test_a_page_size_of_0_is_refused_while_parsing(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["events", "follow", "--page-size", "0"])
    assert (e.value.code, "not a whole number from 1 to 999999999" in capsys.readouterr().err) == (2, True)


def test_the_cursors_go_to_the_configured_outbox_and_a_bad_place_is_named_as_the_cursors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", "s")
    (tmp_path / "file").write_text("a file where a folder should be")
    monkeypatch.setenv("FLOWMAILER_OUTBOX", f"sqlite://{tmp_path / 'file' / 'outbox.db'}")
    assert main(["events", "follow", "--account-id", "a", "--client-id", "c"]) == 2
    err = capsys.readouterr().err
    assert "--cursors: cannot create or open" in err
    assert str(tmp_path / "file" / "outbox.db") in err
    assert "for event cursors" in err
    assert not (tmp_path / "data").exists()  # before: the default outbox file, whatever FLOWMAILER_OUTBOX said
    monkeypatch.setenv("FLOWMAILER_OUTBOX", "postgresql://relay@db.example/mail")
    assert main(["events", "follow", "--account-id", "a", "--client-id", "c"]) == 2
    assert "name a SQLite file with --cursors FILE" in capsys.readouterr().err
