"""``flowmailer stats`` against FakeFlowmailer: a table or JSON lines, settled days kept in a file across runs."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowmailer.app import Client
from flowmailer.cli import main
from flowmailer.core import SubmitMessage
from flowmailer.testing import FakeFlowmailer

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeFlowmailer]:
    # The command resolves names with the system resolver: "localhost" is the fake's one name that resolves.
    with FakeFlowmailer(addresses=("127.0.0.1",)).running() as fake:
        monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", fake.credential("ADMIN").client_secret)
        yield fake


def stats(fake: FakeFlowmailer, tmp_path: Path, *args: str) -> int:
    url = f"https://localhost:{fake.port}"
    command = [
        "stats", *args, "--reports", str(tmp_path / "reports.db"), "--account-id", fake.account_id,
        "--client-id", fake.credential("ADMIN").client_id, "--api-url", url, "--login-url", url,
        "--ca-bundle", str(fake.ca_bundle),
    ]  # fmt: skip
    return main(command)


def submit(fake: FakeFlowmailer) -> None:
    url = f"https://localhost:{fake.port}"
    with Client(fake.client_credentials("ADMIN"), api_url=url, login_url=url, ca_bundle=str(fake.ca_bundle)) as c:
        c.submit(SubmitMessage(sender_address="s@example.com", recipient_address="r@example.com"))


def test_a_second_run_asks_only_for_the_last_week(
    fake: FakeFlowmailer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    submit(fake)
    days = ["--from", f"{TODAY - timedelta(days=20):%Y-%m-%d}", "--to", f"{TODAY + timedelta(days=1):%Y-%m-%d}"]
    assert stats(fake, tmp_path, *days) == 0
    first = capsys.readouterr().out.splitlines()
    assert stats(fake, tmp_path, *days, "--json") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    asked = [re.findall(r"daterange=([^;?]+)", r)[0] for r in fake.records().reports]
    week_ago = f"{TODAY - timedelta(days=7):%Y-%m-%dT%H:%M:%SZ}"
    assert len(asked) == 3
    assert asked[1] == asked[2]
    assert asked[1].startswith(week_ago)  # the settled 13 days were asked for once
    assert first[0].split() == ["interval", "(UTC)", "processed", "sent", "delivered", "bounced"]
    assert first[-1].split()[:2] == ["total", "1"]
    assert len(first) == 1 + 21 + 1
    assert len(rows) == 21
    assert rows[-1] == {
        "timestamp": f"{TODAY:%Y-%m-%dT%H:%M:%SZ}",
        "processed": 1,
        "sent": 1,
        "delivered": 1,
        "bounced": 0,
    }


def test_a_range_off_the_interval_is_refused_with_flags_that_fit(
    fake: FakeFlowmailer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stats(fake, tmp_path, "--from", "2026-11-01T13:00:00Z", "--to", "2026-11-03") == 2
    err = capsys.readouterr().err
    assert "--from/--to" in err
    assert "use e.g. --from 2026-11-01T00:00:00Z --to 2026-11-03T00:00:00Z" in err
    assert fake.records().reports == ()


def test_an_end_before_the_start_names_the_flag(
    fake: FakeFlowmailer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stats(fake, tmp_path, "--from", "2026-11-03", "--to", "2026-11-01") == 2
    assert "--to" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value"), [("--interval", "week"), ("--interval", "0"), ("--from", "1 Nov")])
def test_nonsense_on_the_command_line_is_refused_while_parsing(
    fake: FakeFlowmailer, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    args = {"--from": "2026-11-01", flag: value}
    with pytest.raises(SystemExit) as e:
        stats(fake, tmp_path, *(x for kv in args.items() for x in kv))
    assert e.value.code == 2
    assert "give" in capsys.readouterr().err


def test_a_submit_only_credential_is_told_to_use_one_that_may_read(
    fake: FakeFlowmailer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    submit_only = fake.credential("FEATURE_SUBMITMESSAGE")
    monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", submit_only.client_secret)
    url = f"https://localhost:{fake.port}"
    command = [
        "stats", "--from", "2026-11-01", "--to", "2026-11-02", "--reports", str(tmp_path / "r.db"),
        "--account-id", fake.account_id, "--client-id", submit_only.client_id, "--api-url", url,
        "--login-url", url, "--ca-bundle", str(fake.ca_bundle),
    ]  # fmt: skip
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "--client-id" in err
    assert "may read statistics" in err


def test_a_default_to_before_the_start_is_named(
    fake: FakeFlowmailer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stats(fake, tmp_path, "--from", "2099-01-01") == 2
    assert "the default --to" in capsys.readouterr().err


def test_an_unusable_reports_file_names_the_flag(
    fake: FakeFlowmailer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "reports.db").write_text("not a database, " * 100)
    assert stats(fake, tmp_path, "--from", "2026-11-01", "--to", "2026-11-02") == 2
    assert "--reports" in capsys.readouterr().err


def test_without_reports_the_counts_are_kept_in_the_configured_outbox_not_the_default_file(
    fake: FakeFlowmailer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("FLOWMAILER_OUTBOX", f"sqlite://{tmp_path / 'mine.db'}")
    url = f"https://localhost:{fake.port}"
    command = [
        "stats", "--from", f"{TODAY - timedelta(days=10):%Y-%m-%d}", "--account-id", fake.account_id,
        "--client-id", fake.credential("ADMIN").client_id, "--api-url", url, "--login-url", url,
        "--ca-bundle", str(fake.ca_bundle),
    ]  # fmt: skip
    assert main(command) == 0
    assert not (tmp_path / "data").exists()  # before: ~/.local/share/flowmailer/outbox.db, whatever the setting
    conn = sqlite3.connect(tmp_path / "mine.db")
    try:
        assert conn.execute("SELECT count(*) FROM report_stretches").fetchone()[0] >= 1
    finally:
        conn.close()


def test_with_a_postgres_outbox_and_no_reports_flag_the_flag_is_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("FLOWMAILER_OUTBOX", "postgresql://relay@db.example/mail")
    monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", "s")
    assert main(["stats", "--from", "2026-11-01", "--account-id", "a", "--client-id", "c"]) == 2
    err = capsys.readouterr().err
    assert "--reports" in err
    assert "name a SQLite file" in err
    assert not (tmp_path / "data").exists()
