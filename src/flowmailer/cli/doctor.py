"""``flowmailer doctor``: check a configuration before it matters, without printing any secret."""

from __future__ import annotations

import argparse
import stat
from typing import Any

from flowmailer.cli._config import Config, SqliteLocation, add_config_arguments, config_from_args, missing
from flowmailer.core import ConfigurationError, FlowmailerError, NotSent, Origin, RejectedError


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check the configuration (credentials present, https URLs, DNS, CA bundle; --online: a token)",
        allow_abbrev=False,
    )
    parser.add_argument("--online", action="store_true", help="also fetch a token from Flowmailer's login host")
    add_config_arguments(parser)
    parser.set_defaults(handler=doctor)


def doctor(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ConfigurationError as e:
        _report(False, "configuration", str(e))
        return 1
    results = [
        *_credentials(config),
        *_hosts(config),
        _ca_bundle(config),
        _outbox(config),
    ]
    if args.online:
        results.append(_token(config))
    return 0 if all(results) else 1


def _report(ok: bool, what: str, detail: str) -> bool:
    print(f"{'ok  ' if ok else 'FAIL'}  {what}: {detail}")
    return ok


def _credentials(config: Config) -> list[bool]:
    results = []
    for name in ("account_id", "client_id", "client_secret"):
        value = getattr(config, name)
        if value is None:
            results.append(_report(False, name, f"missing; {missing(name).fix}"))
            continue
        shown = "set" if name == "client_secret" else repr(value)
        results.append(_report(True, name, f"{shown} (from {config.sources.get(name, 'default')})"))
    if config.client_secret_file is not None:
        mode = stat.S_IMODE(config.client_secret_file.stat().st_mode)
        fix = "" if not mode & 0o077 else f"; others may read it: chmod 600 {config.client_secret_file}"
        results.append(_report(not mode & 0o077, "client_secret_file", f"mode {mode:04o}{fix}"))
    return results


def _hosts(config: Config) -> list[bool]:
    from flowmailer.adapters import SystemResolver

    results = []
    for name, url in (("api_url", config.api_url), ("login_url", config.login_url)):
        origin = Origin.parse(url, field=name)
        resolution = SystemResolver().resolve(origin.host, origin.port)
        if isinstance(resolution, NotSent):
            results.append(_report(False, name, f"{url}: {resolution.reason}"))
        else:
            results.append(_report(True, name, f"{url} resolves to {', '.join(resolution.addresses)}"))
    return results


def _ca_bundle(config: Config) -> bool:
    if config.ca_bundle is None:
        return _report(True, "ca_bundle", "not set: certificates are checked against the operating system's store")
    try:
        text = config.ca_bundle.read_text(encoding="ascii", errors="replace")
    except OSError as e:
        return _report(False, "ca_bundle", f"cannot read {config.ca_bundle} ({e.strerror})")
    count = text.count("-----BEGIN CERTIFICATE-----")
    return _report(count > 0, "ca_bundle", f"{config.ca_bundle} holds {count} certificate(s)")


def _outbox(config: Config) -> bool:
    if config.outbox is None:
        return _report(True, "outbox", "not set (needed only by send, relay, status, dead)")
    if isinstance(config.outbox, SqliteLocation) and not config.outbox.path.exists():
        return _report(False, "outbox", f"{config.outbox.describe()} does not exist; run `flowmailer outbox init`")
    return _report(True, "outbox", config.outbox.describe())


def _token(config: Config) -> bool:
    """Fetch a token by asking for a tag nobody uses: a submit-only credential is refused 403 after the token."""
    from flowmailer.cli._progress import Tally
    from flowmailer.cli._wiring import build_client

    tally = Tally()
    try:
        with build_client(config, observer=tally) as client:
            next(iter(client.messages_by_tag("flowmailer-doctor")), None)
    except RejectedError as e:
        if e.status != 403 or not tally.snapshot().answered.get("token"):
            return _report(False, "token", str(e))
        return _report(True, "token", f"fetched from {config.login_url}; the credential may only submit (good)")
    except FlowmailerError as e:
        return _report(False, "token", str(e))
    return _report(True, "token", f"fetched from {config.login_url}; API reads work")
