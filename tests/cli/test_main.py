"""What every sub-command shares: exit codes, the program name in errors, a reader that goes away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.core import SubmitMessage


def run_into_a_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """The command with stdout a pipe nobody reads any more, as `flowmailer status | head -0` leaves it."""
    read, write = os.pipe()
    os.close(read)
    try:
        command = [sys.executable, "-m", "flowmailer.cli", *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMAILER_")}
        return subprocess.run(
            command, stdout=write, stderr=subprocess.PIPE, text=True, timeout=60, env=env, check=False
        )
    finally:
        os.close(write)


@pytest.fixture
def outbox_url(tmp_path: Path) -> str:
    outbox = SQLiteOutbox(tmp_path / "outbox.db")
    outbox.enqueue(SubmitMessage(sender_address="s@example.com", recipient_address="b@example.com", text="x"))
    [claim] = outbox.claim("test", 1, 30)
    outbox.mark_dead(claim, "HTTP 422")
    outbox.close()
    return f"sqlite://{tmp_path / 'outbox.db'}"


@pytest.mark.parametrize(
    "command",
    [["status"], ["dead", "list"], ["doctor", "--api-url", "https://localhost", "--login-url", "https://localhost"]],
)
def test_output_into_a_closed_pipe_exits_141_without_a_traceback(outbox_url: str, command: list[str]) -> None:
    done = run_into_a_closed_pipe(*command, "--outbox", outbox_url)
    assert (done.returncode, done.stderr) == (141, "")
