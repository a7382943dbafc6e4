from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from flowmailer.adapters import PinnedResolver
from flowmailer.adapters.sqlite_outbox import default_outbox_path
from flowmailer.cli._config import (
    RECONCILE_SECRET_ENV,
    SECRET_ENV,
    Config,
    PostgresLocation,
    SqliteLocation,
    add_config_arguments,
    config_from_args,
    load_config,
    parse_outbox,
    redact_url,
)
from flowmailer.core import ConfigurationError, Credentials, NotSent, Resolution, parse_resolve
from flowmailer.testing import StaticResolver

SECRET = "s3cr3t-value-never-shown"


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flowmailer.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_flag_wins_over_environment_which_wins_over_the_toml_file(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, 'account_id = "from-file"\nclient_id = "file-client"\napi_url = "https://file.test"\n')
    environ = {
        "FLOWMAILER_CONFIG": str(toml),
        "FLOWMAILER_ACCOUNT_ID": "from-env",
        "FLOWMAILER_CLIENT_ID": "env-client",
    }
    config = load_config({"account_id": "from-flag"}, environ)
    assert (config.account_id, config.client_id, config.api_url) == ("from-flag", "env-client", "https://file.test")
    assert config.sources == {
        "account_id": "flag --account-id",
        "client_id": "environment FLOWMAILER_CLIENT_ID",
        "api_url": str(toml),
        "outbox": "default",
    }


def test_config_flag_wins_over_config_environment_variable(tmp_path: Path) -> None:
    first = write_toml(tmp_path, 'account_id = "first"\n')
    second = tmp_path / "second.toml"
    second.write_text('account_id = "second"\n', encoding="utf-8")
    assert load_config({"config": str(second)}, {"FLOWMAILER_CONFIG": str(first)}).account_id == "second"


def test_defaults_when_nothing_is_configured() -> None:
    config = load_config({}, {"XDG_DATA_HOME": "/data"})
    assert config == Config(
        api_url="https://api.flowmailer.net",
        login_url="https://login.flowmailer.net",
        outbox=SqliteLocation(Path("/data/flowmailer/outbox.db")),
    )


def test_secret_comes_from_the_environment_and_never_shows_in_a_repr() -> None:
    config = load_config({"account_id": "1", "client_id": "c"}, {SECRET_ENV: SECRET})
    assert config.client_secret == SECRET
    assert SECRET not in repr(config)
    assert SECRET not in repr(config.require_credentials())
    assert config.sources["client_secret"] == f"environment {SECRET_ENV}"


def test_secret_file_is_read_and_stripped(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text(SECRET + "\n", encoding="utf-8")
    config = load_config({"client_secret_file": str(tmp_path / "secret")}, {})
    assert config.client_secret == SECRET


def test_secret_file_in_toml_is_relative_to_the_toml_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text(SECRET, encoding="utf-8")
    toml = write_toml(tmp_path, 'client_secret_file = "secret"\n')
    config = load_config({"config": str(toml)}, {})
    assert config.client_secret == SECRET


def test_secret_file_flag_wins_over_secret_environment_variable(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-file", encoding="utf-8")
    config = load_config({"client_secret_file": str(tmp_path / "secret")}, {SECRET_ENV: SECRET})
    assert config.client_secret == "from-file"


def test_secret_environment_variable_wins_over_secret_file_in_toml(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-file", encoding="utf-8")
    toml = write_toml(tmp_path, 'client_secret_file = "secret"\n')
    config = load_config({"config": str(toml)}, {SECRET_ENV: SECRET})
    assert config.client_secret == SECRET


def test_secret_in_both_environment_variables_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        load_config({}, {SECRET_ENV: SECRET, "FLOWMAILER_CLIENT_SECRET_FILE": str(tmp_path / "secret")})
    assert info.value.field == "client_secret"
    assert SECRET not in str(info.value)


def test_secret_in_toml_body_is_refused_without_echoing_it(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, f'client_secret = "{SECRET}"\n')
    with pytest.raises(ConfigurationError) as info:
        load_config({"config": str(toml)}, {})
    assert info.value.field.endswith("client_secret")
    assert SECRET_ENV in info.value.fix
    assert SECRET not in str(info.value)


def test_unreadable_empty_or_binary_secret_file_names_the_setting_without_quoting_it(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    (tmp_path / "binary").write_bytes(b"\xff\xfe" + SECRET.encode())
    for name in ("nope", "empty", "binary"):
        with pytest.raises(ConfigurationError) as info:
            load_config({"client_secret_file": str(tmp_path / name)}, {})
        assert info.value.field == "client_secret_file"
        assert SECRET not in str(info.value)


@pytest.mark.parametrize("flag", ["--client-secret", "--reconcile-client-secret"])
def test_secret_flag_is_refused_without_echoing_it(capsys: pytest.CaptureFixture[str], flag: str) -> None:
    parser = argparse.ArgumentParser(prog="flowmailer x", allow_abbrev=False)
    add_config_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args([flag, SECRET])
    err = capsys.readouterr().err
    assert "never taken from a flag" in err
    assert f"{flag}-file" in err
    assert SECRET not in err


def test_reconcile_credential_follows_the_main_secrets_rules_and_is_optional(tmp_path: Path) -> None:
    assert load_config({"account_id": "1"}, {}).reconcile_credentials() is None
    (tmp_path / "reader").write_text(SECRET + "\n", encoding="utf-8")
    config = load_config(
        {"account_id": "1", "reconcile_client_id": "reader", "reconcile_client_secret_file": str(tmp_path / "reader")},
        {RECONCILE_SECRET_ENV: "loses to the flag"},
    )
    assert config.reconcile_credentials() == Credentials("1", "reader", SECRET)
    assert SECRET not in repr(config)
    both = {RECONCILE_SECRET_ENV: SECRET, "FLOWMAILER_RECONCILE_CLIENT_SECRET_FILE": str(tmp_path / "reader")}
    with pytest.raises(ConfigurationError) as info:
        load_config({}, both)
    assert info.value.field == "reconcile_client_secret"
    toml = write_toml(tmp_path, f'reconcile_client_secret = "{SECRET}"\n')
    with pytest.raises(ConfigurationError) as info:
        load_config({"config": str(toml)}, {})
    assert RECONCILE_SECRET_ENV in info.value.fix
    assert SECRET not in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        load_config({"account_id": "1", "reconcile_client_id": "reader"}, {}).reconcile_credentials()
    assert info.value.field == "reconcile_client_secret"


def test_unknown_toml_key_is_refused_with_the_valid_keys(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, 'acount_id = "1"\n')
    with pytest.raises(ConfigurationError) as info:
        load_config({"config": str(toml)}, {})
    assert "acount_id" in info.value.field
    assert "account_id" in info.value.fix


@pytest.mark.parametrize(
    ("text", "problem"), [("account_id = 12\n", "not a string"), ("account_id = \n", "not valid TOML")]
)
def test_bad_toml_values_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    toml = write_toml(tmp_path, text)
    with pytest.raises(ConfigurationError, match=problem):
        load_config({"config": str(toml)}, {})


def test_missing_toml_file_names_the_config_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config({}, {"FLOWMAILER_CONFIG": str(tmp_path / "missing.toml")})
    assert info.value.field == "config"


def test_plain_http_api_url_is_refused() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config({"api_url": "http://api.flowmailer.net"}, {})
    assert info.value.field == "api_url"


def test_require_credentials_names_the_missing_setting_and_how_to_set_it() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config({"account_id": "1"}, {}).require_credentials()
    assert info.value.field == "client_id"
    assert "--client-id" in info.value.fix
    assert "FLOWMAILER_CLIENT_ID" in info.value.fix
    with pytest.raises(ConfigurationError, match=SECRET_ENV):
        load_config({"account_id": "1", "client_id": "c"}, {}).require_credentials()


def test_the_default_outbox_is_sqlite_outboxs_default_file(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path)}
    config = load_config({}, environ)
    assert config.require_outbox() == SqliteLocation(default_outbox_path(environ))
    assert config.sources["outbox"] == "default"


def test_config_from_args_reads_the_parsed_flags() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--account-id", "7", "--outbox", "sqlite:///tmp/o.db"])
    config = config_from_args(args, {})
    assert (config.account_id, config.outbox) == ("7", SqliteLocation(Path("/tmp/o.db")))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///var/lib/outbox.db", SqliteLocation(Path("/var/lib/outbox.db"))),
        ("sqlite:outbox.db", SqliteLocation(Path("outbox.db"))),
        ("postgresql://relay@db.internal/mail", PostgresLocation("postgresql://relay@db.internal/mail")),
        ("postgres://relay@db.internal/mail", PostgresLocation("postgres://relay@db.internal/mail")),
    ],
)
def test_outbox_urls(url: str, expected: object) -> None:
    assert parse_outbox(url) == expected


@pytest.mark.parametrize(
    "url",
    ["sqlite:", "sqlite://", "mysql://x/y", "outbox.db", "postgres:host=/tmp dbname=mail", "postgresql:relay@db/mail"],
)
def test_bad_outbox_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_outbox(url)
    assert info.value.field == "outbox"
    assert "postgresql://user@host/dbname" in info.value.fix


@pytest.mark.parametrize(
    ("url", "named"),
    [("mysql://relay:hunter2@db/mail", "'mysql'"), ("host=db password=hunter2", None), ("relay:hunter2@db", "'relay'")],
)
def test_an_unknown_outbox_url_is_refused_showing_its_scheme_at_most(url: str, named: str | None) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_outbox(url)
    assert "hunter2" not in str(info.value)
    assert info.value.problem.startswith("is neither a sqlite: nor a postgresql:// URL")
    assert (named is not None and f"its scheme is {named}" in info.value.problem) or "scheme" not in info.value.problem


def test_a_postgres_outbox_without_its_slashes_is_refused_without_quoting_it() -> None:
    """libpq would take ``postgres:host=...`` as one unknown option, and only when the relay first connects;
    and text that is no URL cannot be told apart from a password in it, so it is not quoted back."""
    with pytest.raises(ConfigurationError) as info:
        parse_outbox("postgresql:relay:hunter2@db/mail")
    assert info.value.field == "outbox"
    assert "the // is missing" in info.value.problem
    assert "hunter2" not in str(info.value)


def test_relative_sqlite_outbox_in_toml_is_relative_to_the_toml_file(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, 'outbox = "sqlite:outbox.db"\n')
    assert load_config({"config": str(toml)}, {}).outbox == SqliteLocation(tmp_path / "outbox.db")


def test_postgres_password_is_refused_in_a_flag_or_toml_but_taken_from_the_environment(tmp_path: Path) -> None:
    url = f"postgresql://relay:{SECRET}@db.internal/mail"
    with pytest.raises(ConfigurationError) as info:
        load_config({"outbox": url}, {})
    assert SECRET not in str(info.value)
    toml = write_toml(tmp_path, f'outbox = "{url}"\n')
    with pytest.raises(ConfigurationError):
        load_config({"config": str(toml)}, {})
    config = load_config({}, {"FLOWMAILER_OUTBOX": url})
    assert config.outbox == PostgresLocation(url)
    assert SECRET not in repr(config)


def test_the_toml_example_in_the_cli_docs_loads(tmp_path: Path) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    example = page.split("```toml\n")[1].split("```")[0]
    toml = write_toml(tmp_path, example)
    (tmp_path / "client-secret").write_text(SECRET, encoding="utf-8")
    config = load_config({"config": str(toml)}, {})
    assert config.require_credentials().client_secret.reveal() == SECRET
    assert config.outbox == SqliteLocation(Path("/var/lib/flowmailer/outbox.db"))


def test_resolve_pins_come_from_repeated_flags_the_environment_or_the_toml_file(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(
        ["--resolve", "API.example.test=127.0.0.2,::1", "--resolve", "login.example.test=10.0.0.1"]
    )
    expected = {"api.example.test": ("127.0.0.2", "::1"), "login.example.test": ("10.0.0.1",)}
    assert config_from_args(args, {}).resolve == expected
    environ = {"FLOWMAILER_RESOLVE": "api.example.test=127.0.0.2,::1  login.example.test=10.0.0.1"}
    assert load_config({}, environ).resolve == expected
    toml = write_toml(tmp_path, 'resolve = "login.example.test=10.0.0.1"\n')
    config = load_config({"config": str(toml)}, {})
    assert (config.resolve, config.sources["resolve"]) == ({"login.example.test": ("10.0.0.1",)}, str(toml))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("api.example.test", "is not HOST=ADDR"),
        ("api.example.test=", "is not HOST=ADDR"),
        ("=127.0.0.1", "is not HOST=ADDR"),
        ("api.example.test=localhost", "not an IP address"),
        ("api.example.test=127.0.0.1,", "not an IP address"),
        ("a.test=127.0.0.1 A.test=127.0.0.2", "given twice"),
    ],
)
def test_bad_resolve_entries_are_refused_naming_the_setting_and_the_form(text: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as info:
        parse_resolve(text)
    assert info.value.field == "resolve"


def test_pinned_resolver_answers_its_pins_and_asks_the_fallback_for_other_names() -> None:
    pinned = PinnedResolver({"api.example.test": ("127.0.0.2",)}, StaticResolver({"other.test": ["10.0.0.9"]}))
    assert pinned.resolve("API.example.test.", 443) == Resolution(("127.0.0.2",), 300.0)
    assert pinned.resolve("other.test", 443) == Resolution(("10.0.0.9",), 60.0)
    assert isinstance(pinned.resolve("unknown.test", 443), NotSent)


PASSWORD_FORMS = [
    f"postgresql://relay:{SECRET}@db.internal/mail",
    f"postgresql://relay@db.internal/mail?password={SECRET}",
    f"postgresql://relay@db.internal/mail?sslmode=require&pass%77ord={SECRET}",
    f"postgres://relay@db.internal/mail?sslpassword={SECRET}",
    f"postgresql://relay:{SECRET}@db1:5432,db2:5433/mail",
]


@pytest.mark.parametrize("url", PASSWORD_FORMS)
def test_a_postgres_password_in_any_form_is_refused_in_a_flag_or_toml_without_echoing_it(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config({"outbox": url}, {})
    assert "carries a password" in info.value.problem
    assert SECRET not in str(info.value)
    toml = write_toml(tmp_path, f'outbox = "{url}"\n')
    with pytest.raises(ConfigurationError) as info:
        load_config({"config": str(toml)}, {})
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("url", PASSWORD_FORMS)
def test_a_postgres_password_from_the_environment_never_shows(url: str) -> None:
    config = load_config({}, {"FLOWMAILER_OUTBOX": url})
    location = config.require_outbox()
    assert location == PostgresLocation(url)
    assert SECRET not in repr(config)
    for shown in (repr(location), location.describe()):
        assert SECRET not in shown
        assert "********" in shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"host=db password={SECRET} user=relay", "host=db password=******** user=relay"),
        (f"host=db password = '{SECRET} x' user=relay", "host=db password=******** user=relay"),
        ("postgresql://relay@db/mail?host=/run/postgresql", "postgresql://relay@db/mail?host=/run/postgresql"),
    ],
)
def test_redact_url_hides_a_key_value_password_and_leaves_the_rest(text: str, shown: str) -> None:
    assert redact_url(text) == shown


def test_a_key_value_connection_string_is_refused_without_echoing_its_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config({}, {"FLOWMAILER_OUTBOX": f"host=db password={SECRET}"})
    assert "is neither a sqlite: nor a postgresql:// URL" in str(info.value)  # and not quoted back at all
    assert SECRET not in str(info.value)
