"""The command's configuration: flags over environment over a TOML file; secrets only from the environment or a file."""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path

import attrs

from flowmailer.adapters._outbox_url import PostgresLocation, SqliteLocation, has_password, parse_outbox, redact_url
from flowmailer.core import ConfigurationError, Credentials, Origin, parse_resolve

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_SOURCE",
    "OUTBOX_ONLY",
    "RECONCILE_SECRET_ENV",
    "SECRET_ENV",
    "SETTINGS",
    "Config",
    "PostgresLocation",
    "Setting",
    "SqliteLocation",
    "add_config_arguments",
    "config_from_args",
    "has_password",
    "load_config",
    "missing",
    "parse_outbox",
    "redact_url",
]

CONFIG_ENV = "FLOWMAILER_CONFIG"
SECRET_ENV = "FLOWMAILER_CLIENT_SECRET"  # noqa: S105 - the variable's name, not a secret
RECONCILE_SECRET_ENV = "FLOWMAILER_RECONCILE_CLIENT_SECRET"  # noqa: S105 - the variable's name, not a secret
#: Each secret: the environment variable that may hold it (its file is the setting named ``<secret>_file``).
_SECRETS = {"client_secret": SECRET_ENV, "reconcile_client_secret": RECONCILE_SECRET_ENV}
DEFAULT_API_URL = "https://api.flowmailer.net"
#: The source of a setting that took its default.
DEFAULT_SOURCE = "default"
DEFAULT_LOGIN_URL = "https://login.flowmailer.net"


@attrs.frozen
class Setting:
    """One configurable value: its TOML key (also the Config attribute), its flag and its environment variable."""

    name: str
    flag: str
    env: str
    help: str
    #: A path resolved against the TOML file's folder when the file gives it relative.
    is_path: bool = False
    #: The flag may be given more than once; its values join with spaces, as the environment and TOML write them.
    repeatable: bool = False
    metavar: str = "VALUE"


SETTINGS: tuple[Setting, ...] = (
    Setting("account_id", "--account-id", "FLOWMAILER_ACCOUNT_ID", "Flowmailer account id"),
    Setting("client_id", "--client-id", "FLOWMAILER_CLIENT_ID", "OAuth2 client id of this source system"),
    Setting(
        "client_secret_file",
        "--client-secret-file",
        "FLOWMAILER_CLIENT_SECRET_FILE",
        f"file holding the client secret (or set {SECRET_ENV}; never a flag)",
        is_path=True,
        metavar="FILE",
    ),
    Setting(
        "reconcile_client_id",
        "--reconcile-client-id",
        "FLOWMAILER_RECONCILE_CLIENT_ID",
        "client id whose role may read messages, for the relay's searches by tag (default: --client-id)",
    ),
    Setting(
        "reconcile_client_secret_file",
        "--reconcile-client-secret-file",
        "FLOWMAILER_RECONCILE_CLIENT_SECRET_FILE",
        f"file holding the reconcile client's secret (or set {RECONCILE_SECRET_ENV}; never a flag)",
        is_path=True,
        metavar="FILE",
    ),
    Setting("api_url", "--api-url", "FLOWMAILER_API_URL", f"API base URL (default {DEFAULT_API_URL})", metavar="URL"),
    Setting(
        "login_url",
        "--login-url",
        "FLOWMAILER_LOGIN_URL",
        f"OAuth2 base URL (default {DEFAULT_LOGIN_URL})",
        metavar="URL",
    ),
    Setting(
        "ca_bundle",
        "--ca-bundle",
        "FLOWMAILER_CA_BUNDLE",
        "PEM file of CAs to trust, not the OS store",
        is_path=True,
        metavar="FILE",
    ),
    Setting(
        "resolve",
        "--resolve",
        "FLOWMAILER_RESOLVE",
        "HOST=ADDR[,ADDR...]: connect to these addresses for HOST instead of asking DNS, like curl's --resolve "
        "(repeatable; space-separated in the environment and TOML)",
        repeatable=True,
        metavar="HOST=ADDR",
    ),
    Setting(
        "outbox",
        "--outbox",
        "FLOWMAILER_OUTBOX",
        "sqlite:///abs/path.db, sqlite:rel/path.db or postgresql://... (default: SQLiteOutbox's default file)",
        metavar="URL",
    ),
)
_BY_NAME = {s.name: s for s in SETTINGS}
#: What the commands that only work on the outbox read (``send``, ``status``, ``dead``, ``outbox init``).
OUTBOX_ONLY = ("outbox",)


@attrs.frozen
class Config:
    """Everything the command needs to reach Flowmailer and the outbox; ``repr`` never shows the secret."""

    account_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = attrs.field(default=None, repr=False)
    #: The file the secret was read from; None when it came from the environment.
    client_secret_file: Path | None = None
    #: A second credential, whose role may read messages, for the relay's searches by tag; None: the first one.
    reconcile_client_id: str | None = None
    reconcile_client_secret: str | None = attrs.field(default=None, repr=False)
    reconcile_client_secret_file: Path | None = None
    api_url: str = DEFAULT_API_URL
    login_url: str = DEFAULT_LOGIN_URL
    ca_bundle: Path | None = None
    #: Host names answered with these addresses instead of DNS (``--resolve``), e.g. for ``flowmailer simulate``.
    resolve: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict, hash=False)
    outbox: SqliteLocation | PostgresLocation | None = None
    #: Where each setting came from ("flag --x", "environment X", "file.toml"), for ``doctor`` and errors.
    sources: Mapping[str, str] = attrs.field(factory=dict, repr=False, eq=False)

    def require_credentials(self) -> Credentials:
        """The credentials, or an error naming the first one missing and how to set it."""
        for name in ("account_id", "client_id", "client_secret"):
            if getattr(self, name) is None:
                raise missing(name)
        assert self.account_id is not None
        assert self.client_id is not None
        assert self.client_secret is not None
        return Credentials(self.account_id, self.client_id, self.client_secret)

    def reconcile_credentials(self) -> Credentials | None:
        """The second credential for reconciliation, or None when none is configured (the first one reconciles)."""
        if self.reconcile_client_id is None and self.reconcile_client_secret is None:
            return None
        for name in ("account_id", "reconcile_client_id", "reconcile_client_secret"):
            if getattr(self, name) is None:
                raise missing(name)
        assert self.account_id is not None
        assert self.reconcile_client_id is not None
        assert self.reconcile_client_secret is not None
        return Credentials(self.account_id, self.reconcile_client_id, self.reconcile_client_secret)

    def require_outbox(self) -> SqliteLocation | PostgresLocation:
        if self.outbox is None:
            raise missing("outbox")
        return self.outbox


def missing(name: str) -> ConfigurationError:
    """The error for a setting nobody gave, saying every way to give it."""
    if name in _SECRETS:
        file = _BY_NAME[f"{name}_file"]
        fix = (
            f"set {_SECRETS[name]}, or name a file holding it with {file.flag}, "
            f"{file.env} or {file.name} in the TOML file"
        )
        return ConfigurationError(name, "is not configured", fix)
    s = _BY_NAME[name]
    return ConfigurationError(name, "is not configured", f"pass {s.flag}, set {s.env}, or put {name} in the TOML file")


def add_config_arguments(parser: argparse.ArgumentParser, names: Collection[str] = tuple(_BY_NAME)) -> None:
    """The flags of the settings ``names`` (only those the sub-command reads), and ``--config``."""
    group = parser.add_argument_group("configuration (flags override environment, which overrides the TOML file)")
    group.add_argument("--config", metavar="FILE", help=f"TOML configuration file (or set {CONFIG_ENV})")
    for s in SETTINGS:
        if s.name in names:
            action = "append" if s.repeatable else "store"
            group.add_argument(s.flag, dest=s.name, metavar=s.metavar, action=action, help=f"{s.help} [{s.env}]")
    parser.set_defaults(config_settings=tuple(names))
    # Claimed so that argparse cannot read them as abbreviations of the --...-file flags and echo the secret.
    for name in _SECRETS:
        flag = "--" + name.replace("_", "-")
        group.add_argument(flag, nargs="?", action=_RefuseSecretFlag, help=argparse.SUPPRESS)


class _RefuseSecretFlag(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        name = self.dest
        parser.error(
            f"{self.option_strings[0]}: secrets are never taken from a flag (other users can read a command line); "
            f"set {_SECRETS[name]} or pass {_BY_NAME[f'{name}_file'].flag}"
        )


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Config:
    """The settings the sub-command's parser was given by :func:`add_config_arguments`, and no others."""
    flags = {name: getattr(args, name, None) for name in ("config", *_BY_NAME)}
    flags.update({s.name: " ".join(flags[s.name] or ()) or None for s in SETTINGS if s.repeatable})
    return load_config(flags, os.environ if environ is None else environ, args.config_settings)


def load_config(
    flags: Mapping[str, str | None], environ: Mapping[str, str], names: Collection[str] = tuple(_BY_NAME)
) -> Config:
    """Assemble the settings ``names``: a flag wins over the environment, which wins over the TOML file.

    The others keep their defaults unread (a secret file that ``status`` does not need cannot make it fail),
    but the TOML file is checked whole, since commands share it.
    """
    file_values: dict[str, str] = {}
    file_name = flags.get("config") or environ.get(CONFIG_ENV) or None
    base: Path | None = None
    if file_name is not None:
        file_values = _read_toml(Path(file_name))
        base = Path(file_name).parent

    chosen: dict[str, str] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        if s.name not in names:
            continue
        if (value := flags.get(s.name)) is not None:
            chosen[s.name], sources[s.name] = value, f"flag {s.flag}"
        elif value := environ.get(s.env):
            chosen[s.name], sources[s.name] = value, f"environment {s.env}"
        elif s.name in file_values:
            value = file_values[s.name]
            if s.is_path and base is not None:
                value = str(base / value)
            chosen[s.name], sources[s.name] = value, str(file_name)

    secret, secret_file = _choose_secret("client_secret", chosen, sources, environ, names)
    reconcile_secret, reconcile_secret_file = _choose_secret("reconcile_client_secret", chosen, sources, environ, names)
    api_url = chosen.get("api_url", DEFAULT_API_URL)
    login_url = chosen.get("login_url", DEFAULT_LOGIN_URL)
    Origin.parse(api_url, field="api_url")
    Origin.parse(login_url, field="login_url")
    outbox: SqliteLocation | PostgresLocation | None = None
    if "outbox" in chosen:
        from_env = sources["outbox"].startswith("environment")
        from_file = sources["outbox"] == str(file_name)
        outbox = parse_outbox(chosen["outbox"], base=base if from_file else None, allow_password=from_env)
    elif "outbox" in names:
        from flowmailer.adapters.sqlite_outbox import default_outbox_path

        # The file an application's SQLiteOutbox() uses, so that `flowmailer relay` drains it with no setting.
        outbox, sources["outbox"] = SqliteLocation(default_outbox_path(environ)), DEFAULT_SOURCE
    return Config(
        account_id=chosen.get("account_id"),
        client_id=chosen.get("client_id"),
        client_secret=secret,
        client_secret_file=secret_file,
        reconcile_client_id=chosen.get("reconcile_client_id"),
        reconcile_client_secret=reconcile_secret,
        reconcile_client_secret_file=reconcile_secret_file,
        api_url=api_url.rstrip("/"),
        login_url=login_url.rstrip("/"),
        ca_bundle=Path(chosen["ca_bundle"]) if "ca_bundle" in chosen else None,
        resolve=parse_resolve(chosen.get("resolve", "")),
        outbox=outbox,
        sources=sources,
    )


def _choose_secret(
    name: str, chosen: dict[str, str], sources: dict[str, str], environ: Mapping[str, str], names: Collection[str]
) -> tuple[str | None, Path | None]:
    """The secret file named by a flag wins; then the secret in the environment; then a file named elsewhere."""
    env, file = _SECRETS[name], _BY_NAME[f"{name}_file"]
    if file.name not in names:
        return None, None
    env_secret = environ.get(env) or None
    file_source = sources.get(file.name, "")
    if env_secret is not None and file_source.startswith("environment"):
        raise ConfigurationError(
            name,
            f"both {env} and {file.env} are set",
            "unset one of them, so that it is clear which secret is used",
        )
    if env_secret is not None and not file_source.startswith("flag"):
        sources[name] = f"environment {env}"
        return env_secret, None
    if file.name not in chosen:
        return None, None
    path = Path(chosen[file.name])
    if not path.exists():  # the name is not shown: a secret typed where its file's name belongs is the likely cause
        raise ConfigurationError(
            file.name,
            f"names no file (from {file_source}; the name is not shown, in case it is the secret itself)",
            f"give the path of a file holding the secret, or set {env} instead",
        )
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigurationError(
            file.name,
            f"cannot read {str(path)!r} ({e.strerror or type(e).__name__})",
            f"make the file readable by this user, or set {env} instead",
        ) from None
    except UnicodeError:  # the error's text would quote the secret's bytes
        raise ConfigurationError(
            file.name, f"{str(path)!r} is not UTF-8 text", "write the client secret into it as text"
        ) from None
    if not text:
        raise ConfigurationError(file.name, f"{str(path)!r} is empty", "write the client secret into it")
    sources[name] = f"file {path} (named by {file_source})"
    return text, path


def _read_toml(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigurationError(
            "config", f"cannot read {str(path)!r} ({e.strerror or e})", f"check --config or {CONFIG_ENV}"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigurationError("config", f"{str(path)!r} is not valid TOML ({e})", "fix the file's syntax") from None
    except UnicodeDecodeError as e:  # TOML is UTF-8; the error's text would quote the file's bytes
        raise ConfigurationError(
            "config", f"{str(path)!r} is not UTF-8 text (byte {e.start} is not)", "save the file as UTF-8"
        ) from None
    for key, value in data.items():
        if key in _SECRETS:
            raise ConfigurationError(
                f"{path}: {key}",
                "secrets are never read from the TOML file",
                f"delete the line; set {_SECRETS[key]}, or name a file holding the secret with {key}_file",
            )
        if key not in _BY_NAME:
            raise ConfigurationError(
                f"{path}: {key}", "is not a setting", f"use only these keys: {', '.join(sorted(_BY_NAME))}"
            )
        if not isinstance(value, str):
            raise ConfigurationError(
                f"{path}: {key}", f"{value!r} is not a string", f'write it in quotes: {key} = "..."'
            )
    return data
