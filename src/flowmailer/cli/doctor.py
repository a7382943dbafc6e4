"""``flowmailer doctor``: check a configuration before it matters, without printing any secret."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path
from typing import Any

from flowmailer.cli._config import (
    DEFAULT_SOURCE,
    RECONCILE_SECRET_ENV,
    Config,
    SqliteLocation,
    add_config_arguments,
    config_from_args,
    missing,
)
from flowmailer.core import ConfigurationError, Credentials, FlowmailerError, NotSent, Origin, RejectedError

_FIX = (
    "give the relay a second credential whose role may read messages: FLOWMAILER_RECONCILE_CLIENT_ID and "
    f"{RECONCILE_SECRET_ENV} (or FLOWMAILER_RECONCILE_CLIENT_SECRET_FILE)"
)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check the configuration (credentials, https URLs, DNS, CA bundle; --online: a token and tag searches)",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--online", action="store_true", help="also fetch a token, and check that reconciliation may search by tag"
    )
    add_config_arguments(parser)
    parser.set_defaults(handler=doctor)


def doctor(args: argparse.Namespace) -> int:
    """0 when every check passed; else the exit code every command uses for the worst failure found: 2 for a
    setting to fix (what `relay` would refuse to start with), 1 for a check that could not succeed (Flowmailer
    or the outbox unreachable, credentials refused)."""
    try:
        config = config_from_args(args)
    except ConfigurationError as e:
        return _report(False, "configuration", str(e))
    try:
        reconcile = config.reconcile_credentials()
    except ConfigurationError as e:
        return _report(False, "reconciliation", str(e))
    results = [
        *_credentials(config),
        *(_credentials(config, "reconcile_") if reconcile is not None else []),
        *_hosts(config),
        _ca_bundle(config),
        _outbox(config),
        _shared_limit(config),
    ]
    if args.online:
        code, can_search = _token(config)
        results.append(code)
        if reconcile is not None and can_search is None and code:
            results.append(_report(False, "reconcile token", _NOT_ASKED, code=1))
        elif reconcile is not None:
            code, can_search = _search(config, reconcile)
            results.append(code)
        if not (code and can_search is None):
            results.append(_reconciliation(config, reconcile, can_search))
    else:
        who = config.client_id if reconcile is None else reconcile.client_id
        if who is not None:
            results.append(
                _report(True, "reconciliation", f"by client id {who!r}; `doctor --online` checks it may search by tag")
            )
    return max(results, default=0)


#: Why the second credential is not tried after the first failed: Flowmailer locks the address out.
_NOT_ASKED = (
    "not checked: after a refused or failed token request, a second one from this address would be refused too "
    "(Flowmailer locks it out for ten minutes after bad credentials) and blame a credential that may be fine"
)


def _report(ok: bool, what: str, detail: str, *, code: int = 2, warn: bool = False) -> int:
    """Print one check; its exit code: 0 if it passed, else ``code`` (2: a setting to fix, 1: the check failed).
    A warning passes: it says what the setting cannot do, not that it is wrong."""
    print(f"{'warn' if warn else 'ok  ' if ok else 'FAIL'}  {what}: {detail}")
    return 0 if ok or warn else code


def _credentials(config: Config, prefix: str = "") -> list[int]:
    """The main credential's settings, or with ``prefix="reconcile_"`` the second one's."""
    results = []
    names = (f"{prefix}client_id", f"{prefix}client_secret") if prefix else ("account_id", "client_id", "client_secret")
    for name in names:
        value = getattr(config, name)
        if value is None:
            results.append(_report(False, name, f"missing; {missing(name).fix}"))
            continue
        shown = "set" if name.endswith("client_secret") else repr(value)
        results.append(_report(True, name, f"{shown} (from {config.sources.get(name, 'default')})"))
    secret_file: Path | None = getattr(config, f"{prefix}client_secret_file")
    if secret_file is not None:
        mode = stat.S_IMODE(secret_file.stat().st_mode)
        fix = "" if not mode & 0o077 else f"; others may read it: chmod 600 {secret_file}"
        results.append(_report(not mode & 0o077, f"{prefix}client_secret_file", f"mode {mode:04o}{fix}"))
    return results


def _hosts(config: Config) -> list[int]:
    """Each base URL's host name resolves (through the pins, if any); a pin for no host of theirs is a typo."""
    from flowmailer.cli._wiring import resolver

    results = []
    hosts = set()
    for name, url in (("api_url", config.api_url), ("login_url", config.login_url)):
        origin = Origin.parse(url, field=name)
        hosts.add(origin.host.lower())
        resolution = resolver(config).resolve(origin.host, origin.port)
        if isinstance(resolution, NotSent):
            fix = (
                f"check the host name in {name} and this machine's DNS, or pin it to an address with --resolve "
                f"{origin.host}=ADDR or FLOWMAILER_RESOLVE (as `flowmailer simulate` prints)"
            )
            results.append(_report(False, name, f"{url}: {resolution.reason}; {fix}", code=1))
        else:
            pinned = " (pinned by resolve)" if origin.host.lower() in config.resolve else ""
            results.append(_report(True, name, f"{url} resolves to {', '.join(resolution.addresses)}{pinned}"))
    if config.resolve:
        listed = "; ".join(f"{host}={','.join(a)}" for host, a in config.resolve.items())
        unused = sorted(set(config.resolve) - hosts)
        source = config.sources["resolve"]
        if unused:
            results.append(
                _report(
                    False,
                    "resolve",
                    f"{listed} (from {source}) pins {', '.join(unused)}, which neither api_url "
                    "nor login_url names; check the host name",
                )
            )
        else:
            results.append(_report(True, "resolve", f"{listed} (from {source})"))
    return results


def _ca_bundle(config: Config) -> int:
    if config.ca_bundle is None:
        return _report(True, "ca_bundle", "not set: certificates are checked against the operating system's store")
    try:
        text = config.ca_bundle.read_text(encoding="ascii", errors="replace")
    except OSError as e:
        return _report(False, "ca_bundle", f"cannot read {config.ca_bundle} ({e.strerror})")
    count = text.count("-----BEGIN CERTIFICATE-----")
    return _report(count > 0, "ca_bundle", f"{config.ca_bundle} holds {count} certificate(s)")


def _outbox(config: Config) -> int:
    """The outbox is there and is one: opened as ``status`` opens it, writing nothing, and its rows counted."""
    from flowmailer.cli._wiring import open_outbox

    location = config.require_outbox()
    source = config.sources["outbox"]
    if isinstance(location, SqliteLocation) and not location.path.exists():
        if source == DEFAULT_SOURCE:  # not a mistake where no outbox is used yet
            return _report(
                True,
                "outbox",
                f"{location.describe()}, the default, does not exist yet; `flowmailer outbox init` creates it",
            )
        return _report(False, "outbox", f"{location.describe()} does not exist; run `flowmailer outbox init`")
    try:
        outbox = open_outbox(config, read_only=True)
        try:
            held = sum(outbox.counts().values())
        finally:
            outbox.close()
    except ConfigurationError as e:
        return _report(False, "outbox", f"{location.describe()}: {e.problem}; {e.fix}")
    except FlowmailerError as e:  # a PostgreSQL server that is down, a schema not created yet
        return _report(False, "outbox", f"{location.describe()}: {e}", code=1)
    return _report(True, "outbox", f"{location.describe()} (from {source}) holds {held} message(s)")


def _shared_limit(config: Config) -> int:
    """Who shares the credential's 10 connections: the relays that see the same slot table, and no others."""
    who = repr(config.client_id) if config.client_id is not None else "this client id"
    location = config.require_outbox()
    if isinstance(location, SqliteLocation):
        return _report(
            True,
            "shared limit",
            f"only relays on this machine that use {location.describe()} share the 10 connections of client id {who}; "
            "a relay of this client id on another machine, or on another outbox, cannot see them and may open 10 "
            "more: run the relays that share a client id on one PostgreSQL outbox, or give each outbox a client id "
            "of its own",
            warn=True,
        )
    return _report(
        True,
        "shared limit",
        f"every relay on this PostgreSQL database shares the 10 connections of client id {who} (through the table "
        "public.flowmailer_connection_slots); a relay of this client id on another database or a SQLite outbox "
        "cannot see them and may open 10 more: give it a client id of its own",
    )


def _token(config: Config) -> tuple[int, bool | None]:
    """Fetch a token by asking for a tag nobody uses: a submit-only credential is refused 403 after the token.

    Also answers whether the credential may search by tag (None when that is not known).
    """
    refused, token = _probe(config, None)
    if refused is None:
        return _report(True, "token", f"fetched from {config.login_url}; API reads work"), True
    if isinstance(refused, RejectedError) and refused.status == 403 and token:
        return _report(True, "token", f"fetched from {config.login_url}; the credential may only submit (good)"), False
    return _failed("token", refused), None


def _search(config: Config, credentials: Credentials) -> tuple[int, bool | None]:
    refused, _ = _probe(config, credentials)
    if refused is None:
        return 0, True
    if isinstance(refused, RejectedError) and refused.status == 403:
        return 0, False
    return _failed("reconcile token", refused), None


def _failed(what: str, error: FlowmailerError) -> int:
    """A failed online check: a setting to fix (2), or refused or unreachable (1), as every command exits."""
    return _report(False, what, str(error), code=2 if isinstance(error, ConfigurationError) else 1)


def _probe(config: Config, credentials: Credentials | None) -> tuple[FlowmailerError | None, bool]:
    """Search a tag nobody uses: the error it raised, if any, and whether a token was fetched first."""
    from flowmailer.cli._progress import Tally
    from flowmailer.cli._wiring import build_client

    tally = Tally()
    try:
        with build_client(config, observer=tally, credentials=credentials) as client:
            next(iter(client.messages_by_tag("flowmailer-doctor")), None)
    except FlowmailerError as e:
        return e, bool(tally.snapshot().answered.get("token"))
    return None, True


def _reconciliation(config: Config, reconcile: Credentials | None, can_search: bool | None) -> int:
    who = repr(config.client_id if reconcile is None else reconcile.client_id)
    if can_search:
        return _report(True, "reconciliation", f"possible: client id {who} may search messages by tag")
    if can_search is None:
        return _report(False, "reconciliation", f"unknown: client id {who} could not be checked (see above)", code=1)
    if reconcile is None:
        return _report(
            False,
            "reconciliation",
            f"impossible: client id {who} may only submit, so an ambiguous submission would go dead; {_FIX}",
        )
    return _report(
        False, "reconciliation", f"impossible: client id {who} may not search messages by tag; give it a role that may"
    )
