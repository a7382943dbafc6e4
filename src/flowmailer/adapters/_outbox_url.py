"""Outbox URLs (``sqlite:///abs.db``, ``sqlite:rel.db``, ``postgresql://...``): read, printed without passwords,
opened. The command's ``--outbox`` and ``FLOWMAILER_OUTBOX`` and the framework integrations share them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from flowmailer.core import ConfigurationError

if TYPE_CHECKING:
    from flowmailer.ports import Outbox

__all__ = ["PostgresLocation", "SqliteLocation", "has_password", "open_outbox_url", "parse_outbox", "redact_url"]


@attrs.frozen
class SqliteLocation:
    """An outbox in a SQLite file on this machine."""

    path: Path

    def describe(self) -> str:
        return f"SQLite file {self.path}"


@attrs.frozen(repr=False)
class PostgresLocation:
    """An outbox in PostgreSQL, shared by relays on several machines; ``dsn`` may carry a password."""

    dsn: str

    def __repr__(self) -> str:
        return f"PostgresLocation({redact_url(self.dsn)!r})"

    def describe(self) -> str:
        return f"PostgreSQL {redact_url(self.dsn)}"


#: libpq's connection parameters that hold a secret.
_PG_SECRETS = frozenset({"password", "sslpassword"})
_HIDDEN = "********"
#: One ``key=value`` of a libpq connection string; the value bare or single-quoted with backslash escapes.
_KEY_VALUE = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)")


#: A URL's scheme (RFC 3986): what an unknown outbox URL may show of itself.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def _is_url(text: str) -> bool:
    return text.startswith(("postgresql://", "postgres://"))


def _pg_params(text: str) -> list[tuple[str, str]]:
    """The parameters a PostgreSQL URL or ``key=value`` string gives, keys decoded as libpq decodes them."""
    if not _is_url(text):
        return [(m[1], m[2]) for m in _KEY_VALUE.finditer(text)]
    try:
        password = urlsplit(text).password
    except ValueError:
        password = None
    query = parse_qsl(text.partition("?")[2], keep_blank_values=True)
    return [*([("password", password)] if password is not None else []), *query]


def has_password(text: str) -> bool:
    """Whether libpq would read a password from ``text``, in the URL's user part, its query or a ``key=value``."""
    if any(key in _PG_SECRETS for key, _ in _pg_params(text)):
        return True
    try:
        from psycopg import Error
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return False
    try:
        return bool(_PG_SECRETS & conninfo_to_dict(text).keys())
    except Error:  # not a connection string libpq can read
        return False


def redact_url(text: str) -> str:
    """``text`` fit to print: every password a PostgreSQL URL or ``key=value`` string carries is replaced."""
    if not has_password(text):
        return text
    own = _pg_params(text)
    if not any(key in _PG_SECRETS for key, _ in own):  # libpq found one where this parser did not: show nothing
        return f"{text.partition(':')[0] if _is_url(text) else 'a connection string'} ({_HIDDEN}: it holds a password)"
    if not _is_url(text):
        return " ".join(f"{key}={_HIDDEN if key in _PG_SECRETS else value}" for key, value in own)
    parts = urlsplit(text)
    user, _, hosts = parts.netloc.rpartition("@")
    netloc = f"{user.partition(':')[0]}:{_HIDDEN}@{hosts}" if parts.password is not None else parts.netloc
    query = [
        (key, _HIDDEN if key in _PG_SECRETS else value) for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="/*,:")))


def parse_outbox(
    url: str, *, base: Path | None = None, allow_password: bool = True
) -> SqliteLocation | PostgresLocation:
    """Read an outbox URL; a relative SQLite path is taken relative to ``base`` (the TOML file's folder)."""
    fix = "use sqlite:///absolute/path.db, sqlite:relative/path.db or postgresql://user@host/dbname"
    scheme, _, rest = url.partition(":")
    if scheme == "sqlite":
        path_text = rest[2:] if rest.startswith("//") else rest
        if not path_text or path_text.startswith("//"):
            raise ConfigurationError("outbox", f"{url!r} names no file", fix)
        path = Path(path_text)
        if base is not None and not path.is_absolute():
            path = base / path
        return SqliteLocation(path)
    if scheme in ("postgresql", "postgres"):
        if not rest.startswith("//"):  # libpq would read "postgres:host=..." as one unknown option, much later
            # Not quoted back: text that is no URL cannot be told apart from a password in it.
            raise ConfigurationError("outbox", f"starts with {scheme}: but not {scheme}:// (the // is missing)", fix)
        try:
            urlsplit(url)
        except ValueError:  # its text could quote the URL
            raise ConfigurationError("outbox", f"{redact_url(url)!r} is not a valid URL", fix) from None
        if has_password(url) and not allow_password:
            raise ConfigurationError(
                "outbox",
                "the URL carries a password, and secrets are read only from the environment or a file",
                "drop the password from the URL and use PGPASSWORD or ~/.pgpass, or set the URL in FLOWMAILER_OUTBOX",
            )
        return PostgresLocation(url)
    # Only a scheme is quoted back: any other URL (mysql://user:PASSWORD@...) or text may hold a password.
    named = f" (its scheme is {scheme!r})" if rest and _SCHEME.fullmatch(scheme) else ""
    raise ConfigurationError("outbox", f"is neither a sqlite: nor a postgresql:// URL{named}", fix)


def open_outbox_url(url: str) -> Outbox:
    """The outbox an application writes to, from its URL: a SQLite file is made an outbox if new (as
    ``SQLiteOutbox()`` does); a PostgreSQL table must exist already (``flowmailer outbox init``)."""
    location = parse_outbox(url)
    if isinstance(location, SqliteLocation):
        from flowmailer.adapters.sqlite_outbox import SQLiteOutbox

        return SQLiteOutbox(location.path)
    from flowmailer.adapters.postgres_outbox import PostgresOutbox

    return PostgresOutbox(location.dsn)
