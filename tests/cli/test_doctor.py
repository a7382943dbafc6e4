"""``flowmailer doctor``: one line per check, exit 1 on any failure, never a secret in the output."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowmailer.cli import main
from flowmailer.testing import SUBMIT_ROLE, FakeFlowmailer, StaticResolver

Capsys = pytest.CaptureFixture[str]
SECRET = "doctor-secret-never-printed"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # the default outbox, not the machine's
    for name in ("CONFIG", "ACCOUNT_ID", "CLIENT_ID", "CLIENT_SECRET", "CLIENT_SECRET_FILE", "API_URL", "OUTBOX"):
        monkeypatch.delenv(f"FLOWMAILER_{name}", raising=False)
        monkeypatch.delenv(f"FLOWMAILER_RECONCILE_{name}", raising=False)
    monkeypatch.delenv("FLOWMAILER_LOGIN_URL", raising=False)
    monkeypatch.delenv("FLOWMAILER_CA_BUNDLE", raising=False)


@pytest.fixture
def fake() -> Iterator[FakeFlowmailer]:
    with FakeFlowmailer(addresses=("127.0.0.1",)).running() as fake:
        yield fake


def lines(out: str) -> dict[str, str]:
    """Check name -> 'ok', 'warn' or 'FAIL'."""
    return {line[6:].split(":")[0]: line[:4].strip() for line in out.splitlines()}


def local_flags(port: int = 8443) -> list[str]:
    url = f"https://localhost:{port}"
    return ["--account-id", "1", "--client-id", "c", "--api-url", url, "--login-url", url]


def test_doctor_passes_a_complete_configuration_without_printing_the_secret(
    tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", SECRET)
    assert main(["doctor", *local_flags()]) == 0
    out = capsys.readouterr().out
    assert {k: v for k, v in lines(out).items() if v != "ok"} == {"shared limit": "warn"}  # a warning passes
    assert "client_secret: set (from environment FLOWMAILER_CLIENT_SECRET)" in out
    assert "resolves to" in out
    assert "the default, does not exist yet; `flowmailer outbox init` creates it" in out
    assert SECRET not in out


def test_doctor_warns_that_relays_on_another_outbox_cannot_share_the_ten_connections(
    capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", SECRET)
    assert main(["doctor", *local_flags()]) == 0
    out = capsys.readouterr().out
    assert "warn  shared limit: only relays on this machine that use SQLite " in out
    assert "share the 10 connections of client id 'c'; a relay of this client id on another machine" in out
    monkeypatch.setenv("FLOWMAILER_OUTBOX", "postgresql://relay@db.internal/mail")
    main(["doctor", *local_flags()])
    out = capsys.readouterr().out
    assert lines(out)["shared limit"] == "ok"
    assert "every relay on this PostgreSQL database shares the 10 connections of client id 'c'" in out
    assert "on another database or a SQLite outbox cannot see them" in out


def test_doctor_fails_on_a_missing_secret_and_says_how_to_set_it(capsys: Capsys) -> None:
    assert main(["doctor", *local_flags()]) == 2  # as `relay` exits for the same missing setting
    out = capsys.readouterr().out
    assert lines(out)["client_secret"] == "FAIL"
    assert "FLOWMAILER_CLIENT_SECRET" in out


def test_doctor_fails_on_a_secret_file_others_can_read(tmp_path: Path, capsys: Capsys) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET, encoding="utf-8")
    secret.chmod(0o644)
    assert main(["doctor", *local_flags(), "--client-secret-file", str(secret)]) == 2
    out = capsys.readouterr().out
    assert lines(out)["client_secret_file"] == "FAIL"
    assert "chmod 600" in out
    assert SECRET not in out


def test_doctor_fails_on_an_unreadable_ca_bundle_and_a_missing_outbox(
    tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", SECRET)
    flags = ["--ca-bundle", str(tmp_path / "none.pem"), "--outbox", f"sqlite://{tmp_path}/none.db"]
    assert main(["doctor", *local_flags(), *flags]) == 2
    checks = lines(capsys.readouterr().out)
    assert (checks["ca_bundle"], checks["outbox"]) == ("FAIL", "FAIL")


def test_doctor_reports_a_configuration_error_as_a_failed_check(capsys: Capsys) -> None:
    assert main(["doctor", "--api-url", "http://api.flowmailer.net"]) == 2
    assert lines(capsys.readouterr().out) == {"configuration": "FAIL"}


def online_flags(fake: FakeFlowmailer, client_id: str) -> list[str]:
    url = f"https://localhost:{fake.port}"
    flags = ["--account-id", fake.account_id, "--client-id", client_id, "--api-url", url]
    return [*flags, "--login-url", url, "--ca-bundle", str(fake.ca_bundle)]


@pytest.mark.parametrize("role", ["ADMIN", SUBMIT_ROLE])
def test_doctor_online_fetches_a_token(
    fake: FakeFlowmailer, capsys: Capsys, monkeypatch: pytest.MonkeyPatch, role: str
) -> None:
    credential = fake.credential(role)
    monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", credential.client_secret)
    main(["doctor", "--online", *online_flags(fake, credential.client_id)])
    out = capsys.readouterr().out
    assert lines(out)["token"] == "ok"
    assert credential.client_secret not in out
    assert sum(fake.records().token_requests.values()) == 1


def test_doctor_online_fails_a_submit_only_credential_alone_for_it_cannot_reconcile(
    fake: FakeFlowmailer, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    credential = fake.credential(SUBMIT_ROLE)
    monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", credential.client_secret)
    assert main(["doctor", "--online", *online_flags(fake, credential.client_id)]) == 2
    out = capsys.readouterr().out
    assert {k: v for k, v in lines(out).items() if v == "FAIL"} == {"reconciliation": "FAIL"}
    assert "FLOWMAILER_RECONCILE_CLIENT_ID" in out


def test_doctor_online_passes_a_submit_only_credential_with_a_second_one_that_may_search(
    fake: FakeFlowmailer, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    submitter, reader = fake.credential(SUBMIT_ROLE), fake.credential()
    monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", submitter.client_secret)
    monkeypatch.setenv("FLOWMAILER_RECONCILE_CLIENT_SECRET", reader.client_secret)
    flags = [*online_flags(fake, submitter.client_id), "--reconcile-client-id", reader.client_id]
    assert main(["doctor", "--online", *flags]) == 0
    out = capsys.readouterr().out
    assert {k: v for k, v in lines(out).items() if v != "ok"} == {"shared limit": "warn"}  # a SQLite outbox
    assert f"reconciliation: possible: client id {reader.client_id!r} may search" in out
    assert "reconcile_client_secret: set (from environment FLOWMAILER_RECONCILE_CLIENT_SECRET)" in out
    assert reader.client_secret not in out


def test_doctor_fails_a_reconcile_client_id_without_its_secret(capsys: Capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", SECRET)
    assert main(["doctor", *local_flags(), "--reconcile-client-id", "reader"]) == 2
    out = capsys.readouterr().out
    assert lines(out) == {"reconciliation": "FAIL"}
    assert "FLOWMAILER_RECONCILE_CLIENT_SECRET" in out


def test_doctor_online_fails_on_refused_credentials(
    fake: FakeFlowmailer, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", "wrong")
    url = f"https://localhost:{fake.port}"
    flags = ["--account-id", fake.account_id, "--client-id", fake.credential().client_id, "--api-url", url]
    flags += ["--login-url", url, "--ca-bundle", str(fake.ca_bundle)]
    assert main(["doctor", "--online", *flags]) == 1
    out = capsys.readouterr().out
    assert lines(out)["token"] == "FAIL"
    assert "refused the credentials" in out


def test_doctor_says_how_to_fix_a_host_name_that_does_not_resolve(
    capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", SECRET)
    monkeypatch.setattr("flowmailer.cli._wiring.resolver", lambda config: StaticResolver())
    assert main(["doctor", *local_flags()]) == 1  # unreachable, not a setting: as the commands exit
    out = capsys.readouterr().out
    assert lines(out)["api_url"] == "FAIL"
    assert "check the host name in api_url and this machine's DNS, or pin it to an address with --resolve" in out
    assert "--resolve localhost=ADDR or FLOWMAILER_RESOLVE" in out


def test_doctor_shows_the_pins_and_fails_one_for_a_host_no_url_names(capsys: Capsys) -> None:
    pins = ["--resolve", "localhost=127.0.0.2", "--resolve", "lcoalhost=127.0.0.3"]
    assert main(["doctor", *local_flags(), *pins]) == 2
    out = capsys.readouterr().out
    assert "api_url: https://localhost:8443 resolves to 127.0.0.2 (pinned by resolve)" in out
    assert lines(out)["resolve"] == "FAIL"
    assert "pins lcoalhost, which neither api_url nor login_url names" in out


def test_doctor_never_prints_a_postgres_password_given_in_the_urls_query(
    capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("FLOWMAILER_OUTBOX", "postgresql://relay@db.internal/mail?password=pg-password-never-printed")
    assert main(["doctor", *local_flags()]) == 1  # the server cannot be reached: before, `ok` unchecked
    out = capsys.readouterr().out
    assert lines(out)["outbox"] == "FAIL"
    assert "outbox: PostgreSQL postgresql://relay@db.internal/mail?password=********: " in out
    assert "pg-password-never-printed" not in out


def test_doctor_online_stops_at_a_refused_reconciling_credential_and_names_it(
    fake: FakeFlowmailer, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    submitter, reader = fake.credential(SUBMIT_ROLE), fake.credential()
    monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", submitter.client_secret)
    monkeypatch.setenv("FLOWMAILER_RECONCILE_CLIENT_SECRET", "wrong")
    flags = [*online_flags(fake, submitter.client_id), "--reconcile-client-id", reader.client_id]
    assert main(["doctor", "--online", *flags]) == 1
    out = capsys.readouterr().out
    assert {k: v for k, v in lines(out).items() if v == "FAIL"} == {"reconcile token": "FAIL"}
    assert f"refused the credentials of client id {reader.client_id!r}" in out
    assert "FLOWMAILER_RECONCILE_CLIENT_ID" not in out  # it is set: no advice to set it
    assert dict(fake.records().token_requests) == {submitter.client_id: 1, reader.client_id: 1}


def test_doctor_online_asks_no_second_token_after_the_first_credential_is_refused(
    fake: FakeFlowmailer, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    submitter, reader = fake.credential(SUBMIT_ROLE), fake.credential()
    monkeypatch.setenv("FLOWMAILER_CLIENT_SECRET", "wrong")
    monkeypatch.setenv("FLOWMAILER_RECONCILE_CLIENT_SECRET", reader.client_secret)
    flags = [*online_flags(fake, submitter.client_id), "--reconcile-client-id", reader.client_id]
    assert main(["doctor", "--online", *flags]) == 1
    out = capsys.readouterr().out
    assert lines(out)["token"] == "FAIL"
    assert lines(out)["reconcile token"] == "FAIL"
    assert "not checked" in out
    assert dict(fake.records().token_requests) == {submitter.client_id: 1}  # before: the reader asked, locked out
