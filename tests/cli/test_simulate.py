"""``flowmailer simulate`` as a subprocess: what it prints is enough for the command to reach it."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowmailer.cli import main


@pytest.fixture
def simulate() -> Iterator[subprocess.Popen[str]]:
    command = [sys.executable, "-m", "flowmailer.cli", "simulate"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


def exported(process: subprocess.Popen[str]) -> dict[str, str]:
    """The variables of the ``export`` line simulate prints once it is running."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("  export "):
            return dict(word.split("=", 1) for word in shlex.split(line)[1:])
    raise AssertionError(f"simulate printed no export line: {process.communicate(timeout=30)}")


def test_the_environment_simulate_prints_reaches_it_without_touching_etc_hosts(
    simulate: subprocess.Popen[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment = exported(simulate)
    assert environment["FLOWMAILER_RESOLVE"].startswith("api.flowmailer.test=127.0.0.2,")
    for name in os.environ:
        if name.startswith("FLOWMAILER_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert main(["doctor", "--online"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "api_url: https://api.flowmailer.test:" in out
    assert "resolves to 127.0.0.2, 127.0.0.3, 127.0.0.4 (pinned by resolve)" in out
    assert "ok    token: fetched" in out


def test_the_readme_use_snippet_runs_unchanged_against_simulates_printed_environment(
    simulate: subprocess.Popen[str], tmp_path: Path
) -> None:
    from tests.test_docs import ROOT, blocks

    snippet = blocks(ROOT / "README.md")[0]
    assert "Client.from_env()" in snippet
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMAILER_")} | exported(simulate)
    script = snippet + "\nprint('message id:', message_id)\n"
    done = subprocess.run(
        [sys.executable, "-c", script], env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )  # before: from_env ignored FLOWMAILER_RESOLVE, and api.flowmailer.test did not resolve
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("message id: ")


def test_simulate_takes_your_own_account_and_credential_and_never_prints_the_secret(tmp_path: Path) -> None:
    secret = "my-own-secret-never-printed"
    env = {**os.environ, "FLOWMAILER_CLIENT_SECRET": secret}
    command = [sys.executable, "-m", "flowmailer.cli", "simulate", "--account-id", "4242", "--client-id", "mine"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        environment = exported(process)  # before: --account-id and --client-id were unknown flags
        assert (environment["FLOWMAILER_ACCOUNT_ID"], environment["FLOWMAILER_CLIENT_ID"]) == ("4242", "mine")
        assert "FLOWMAILER_CLIENT_SECRET" not in environment
        client_env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMAILER_")}
        client_env |= environment | {"FLOWMAILER_CLIENT_SECRET": secret}
        script = "from flowmailer import Client\nwith Client.from_env() as c: print(c.check_credentials() > 0)"
        done = subprocess.run(
            [sys.executable, "-c", script], env=client_env, capture_output=True, text=True, timeout=60
        )
        assert done.stdout.strip() == "True", done.stderr
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert secret not in out + err
