"""``flowmailer simulate`` prints what a client needs, serves it with the faults asked for, and stops on Ctrl-C."""

from __future__ import annotations

import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from flowmailer.testing import API_HOST
from tests.fake.raw import request_bytes

FLOWMAILER = [sys.executable, "-c", "import sys; from flowmailer.cli import main; sys.exit(main())"]


class Output:
    """The lines a process prints, read by a thread, so a test can wait for one with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        self._thread.start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def until(self, prefix: str, timeout: float = 30.0) -> list[str]:
        """Lines up to one starting with ``prefix``; fails the test at the deadline instead of hanging."""
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while not (lines and lines[-1].startswith(prefix)):
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line starting {prefix!r} within {timeout} s; got {lines}")
            if line is None:
                pytest.fail(f"the process exited before printing {prefix!r}; got {lines}")
            lines.append(line)
        return lines

    def join(self) -> None:
        self._thread.join(30)


@pytest.fixture
def simulate() -> Iterator[tuple[subprocess.Popen[str], Output]]:
    command = [*FLOWMAILER, "simulate", "--address", "127.0.0.8", "--fault", "503:at=0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    output = Output(proc)
    try:
        yield proc, output
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        output.join()
        assert proc.stderr is not None
        proc.stderr.close()
        assert proc.stdout is not None
        proc.stdout.close()


def test_simulate_serves_with_faults_and_stops_cleanly_on_ctrl_c(
    simulate: tuple[subprocess.Popen[str], Output],
) -> None:
    proc, output = simulate
    lines = output.until("export ")
    info = dict(line.split(": ", 1) for line in lines if ": " in line)
    assert info["addresses"].strip() == "127.0.0.8"
    assert "credential: fake-admin fake-admin-secret (ADMIN)" in lines
    context = ssl.create_default_context(cafile=info["CA bundle"].strip())
    raw = socket.create_connection(("127.0.0.8", int(info["port"])), timeout=10)
    with context.wrap_socket(raw, server_hostname=API_HOST) as sock:
        sock.sendall(request_bytes("GET", "/10001/messages", headers={"Connection": "close"}))
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 503 ")
    proc.send_signal(signal.SIGINT)
    summary = output.until("stopped:")[-1]
    assert proc.wait(timeout=30) == 0
    assert "statuses {503: 1}" in summary


def test_simulate_refuses_a_bad_fault_naming_the_fix() -> None:
    command = [*FLOWMAILER, "simulate", "--fault", "teapot"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "fault" in done.stderr
    assert "503:p=0.1:path=submit" in done.stderr
