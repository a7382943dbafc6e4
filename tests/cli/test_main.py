"""What every sub-command shares: exit codes, the program name in errors, a reader that goes away."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.cli import main
from flowmailer.core import SubmitMessage

Capsys = pytest.CaptureFixture[str]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("FLOWMAILER_"):
            monkeypatch.delenv(name)


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


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [
        (["relay"], "--interval", "0"),
        (["relay"], "--interval", "-1"),
        (["relay"], "--interval", "nan"),
        (["relay"], "--interval", "inf"),
        (["relay"], "--concurrency", "0"),
        (["relay"], "--concurrency", "11"),
        (["dead", "list"], "--limit", "0"),
        (["dead", "list"], "--after", "-1"),
        (["simulate"], "--port", "65536"),
        (["simulate"], "--token-lifetime", "0"),
        (["simulate"], "--lockout", "-1"),
        (["demo"], "--messages", "0"),
        (["demo"], "--error-rate", "1.5"),
        (["demo"], "--reset-rate", "-0.1"),
        (["demo"], "--token-lifetime", "2"),
        (["demo"], "--retry-after", "-1"),
        (["demo"], "--concurrency", "11"),
    ],
)
def test_a_nonsense_number_is_refused_naming_the_flag_and_an_example(
    capsys: Capsys, command: list[str], flag: str, value: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, f"{flag}={value}"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: not " in err
    assert "; give e.g. " in err
    assert f"{value!r}" not in err


@pytest.mark.parametrize(("command", "value"), [(["status"], "0"), (["dead", "requeue"], "-3")])
def test_an_outbox_id_must_be_positive(capsys: Capsys, command: list[str], value: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--", value])
    assert exited.value.code == 2
    assert "not a whole number of 1 or more" in capsys.readouterr().err


SECRET = "Zq8-not-shown-3x"


@pytest.mark.parametrize(
    "argv",
    [
        ["relay", "--client-sec", SECRET],
        ["relay", "--secret", SECRET],
        ["relay", f"--secret={SECRET}"],
        ["relay", "--client_secret", SECRET],
        ["relay", SECRET],
        [SECRET],
        ["events", "follow", "--page-size", SECRET],
        ["stats", "--from", SECRET],
        ["stats", "--from", "2026-11-01", "--interval", SECRET],
    ],
)
def test_no_argparse_error_prints_a_value_from_the_command_line(capsys: Capsys, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert SECRET not in err


def test_a_secret_given_as_the_secret_files_name_is_not_echoed(
    capsys: Capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("FLOWMAILER_CONFIG", "FLOWMAILER_CLIENT_SECRET", "FLOWMAILER_CLIENT_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    argv = ["relay", "--account-id", "a", "--client-id", "c", "--client-secret-file", SECRET]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "client_secret_file: names no file" in err
    assert SECRET not in err


def help_of(capsys: Capsys, *command: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", [["send"], ["status"], ["dead", "list"], ["dead", "requeue"], ["outbox", "init"]])
def test_outbox_commands_offer_only_the_outbox_setting(capsys: Capsys, command: list[str]) -> None:
    flags = set(re.findall(r"--[a-z-]+", help_of(capsys, *command)))
    assert {"--config", "--outbox"} <= flags
    assert not {"--account-id", "--client-id", "--client-secret-file", "--api-url", "--ca-bundle"} & flags


@pytest.mark.parametrize("command", ["relay", "doctor"])
def test_commands_that_reach_flowmailer_offer_the_credentials(capsys: Capsys, command: str) -> None:
    flags = set(re.findall(r"--[a-z-]+", help_of(capsys, command)))
    assert {"--account-id", "--client-id", "--client-secret-file", "--reconcile-client-id", "--outbox"} <= flags


def test_an_outbox_command_does_not_read_the_credentials_in_a_shared_toml_file(outbox_url: str, tmp_path: Path) -> None:
    toml = tmp_path / "flowmailer.toml"
    toml.write_text(f'client_secret_file = "no-such-file"\noutbox = "{outbox_url}"\n', encoding="utf-8")
    assert main(["status", "--config", str(toml)]) == 0


def test_simulate_help_shows_every_default(capsys: Capsys) -> None:
    text = " ".join(help_of(capsys, "simulate").split())
    assert "expires_in of tokens, in seconds (default 60)" in text
    assert "lockout after bad credentials (default 600)" in text


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["status", "999"], 1),
        (["dead", "requeue", "999"], 1),
        (["dead", "requeue"], 2),
        (["status", "--outbox", "mysql://x/y"], 2),
        (["send", "--to", "b@example.com", "--from", "s@example.com"], 2),
    ],
)
def test_exit_1_when_the_work_cannot_be_done_and_2_when_the_command_is_wrong(
    outbox_url: str, command: list[str], code: int
) -> None:
    if "--outbox" not in command:
        command = [*command, "--outbox", outbox_url]
    assert main(command) == code


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (["outbox", "init"], "flowmailer outbox init"),
        (["dead", "list"], "flowmailer dead list"),
        (["status"], "flowmailer status"),
    ],
)
def test_an_error_names_the_whole_command(capsys: Capsys, command: list[str], name: str) -> None:
    assert main([*command, "--outbox", "mysql://x/y"]) == 2
    assert capsys.readouterr().err.startswith(
        f"{name}: outbox: is neither a sqlite: nor a postgresql:// URL (its scheme is 'mysql')"
    )


def test_a_toml_file_that_is_not_utf8_is_a_configuration_error_not_a_traceback(capsys: Capsys, tmp_path: Path) -> None:
    config = tmp_path / "flowmailer.toml"
    config.write_bytes('account_id = "caf\u00e9"\n'.encode("latin-1"))
    assert main(["status", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "is not UTF-8 text" in err
    assert "Traceback" not in err


def test_ctrl_c_while_the_command_starts_exits_130_without_a_traceback(
    capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("flowmailer.cli._main.build_parser", interrupted)
    assert main(["status"]) == 130
    err = capsys.readouterr().err
    assert err == "flowmailer: interrupted\n"


def test_relay_help_describes_what_it_does(capsys: Capsys) -> None:
    with pytest.raises(SystemExit):
        main(["relay", "--help"])
    out = capsys.readouterr().out
    assert "Submit what the outbox holds to Flowmailer" in out
    assert "--once" in out


def test_verbose_logs_each_attempt_to_standard_error_without_a_secret(tmp_path: Path) -> None:
    from flowmailer.testing import FakeFlowmailer

    with FakeFlowmailer(addresses=("127.0.0.1",)).running() as fake:
        credential = fake.credential("ADMIN")
        url = f"https://localhost:{fake.port}"
        command = [
            sys.executable, "-m", "flowmailer.cli", "--verbose", "doctor", "--online", "--account-id",
            fake.account_id, "--client-id", credential.client_id, "--api-url", url, "--login-url", url,
            "--ca-bundle", str(fake.ca_bundle), "--outbox", f"sqlite://{tmp_path / 'o.db'}",
        ]  # fmt: skip
        env = {**os.environ, "FLOWMAILER_CLIENT_SECRET": credential.client_secret}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "DEBUG flowmailer" in done.stderr  # before: --verbose was an unknown flag
    assert "token attempt 1" in done.stderr
    assert credential.client_secret not in done.stderr + done.stdout
