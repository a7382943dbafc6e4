"""``flowmailer simulate``: a fake Flowmailer on loopback HTTPS, failing on purpose, until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import threading
from typing import TYPE_CHECKING, Any

from flowmailer.cli._args import number
from flowmailer.core import ConfigurationError

if TYPE_CHECKING:
    from flowmailer.testing import Credential, FakeFlowmailer

_FAULT_HELP = (
    "a fault rule (repeatable): a status, delay=SECONDS, close-before-read, accept-then-reset or expire-token, "
    "then :p=PROBABILITY :path=GLOB :at=I,J :retry-after=S, e.g. 503:p=0.1:path=submit or 429:retry-after=2:at=0"
)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run a fake Flowmailer (HTTPS on loopback) that fails on purpose",
        description="Run FakeFlowmailer until Ctrl-C: it prints the addresses, port, CA bundle and credentials "
        "to use, and on exit what it counted.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--address", action="append", metavar="IP", help="loopback address (repeatable; default 127.0.0.2-4)"
    )
    parser.add_argument(
        "--port",
        type=number(int, low=0, high=65535, example=8443),
        default=0,
        help="port on every address (default: a free one)",
    )
    parser.add_argument("--fault", action="append", default=[], metavar="RULE", help=_FAULT_HELP)
    parser.add_argument("--seed", type=int, default=0, help="seed for the faults' probabilities (default 0)")
    parser.add_argument(
        "--token-lifetime",
        type=number(int, low=1, example=60),
        default=60,
        metavar="S",
        help="expires_in of tokens, in seconds (default 60)",
    )
    parser.add_argument(
        "--lockout",
        type=number(float, low=0.0, example=600.0),
        default=600.0,
        metavar="S",
        help="seconds of lockout after bad credentials (default 600)",
    )
    parser.add_argument("--bounce", action="append", default=[], metavar="EMAIL", help="recipient that bounces")
    parser.add_argument(
        "--account-id", help="the fake's account id (default 10001), e.g. your own FLOWMAILER_ACCOUNT_ID"
    )
    parser.add_argument(
        "--client-id",
        help="also accept this client id, with the secret in FLOWMAILER_CLIENT_SECRET (never a flag; never printed), "
        "so that your own configuration reaches the fake unchanged",
    )
    parser.add_argument(
        "--role", choices=("ADMIN", "FEATURE_SUBMITMESSAGE"), default="ADMIN", help="--client-id's role (ADMIN)"
    )
    parser.set_defaults(handler=simulate)


def _credentials(args: argparse.Namespace) -> tuple[Credential, ...]:
    """The fake's own credentials, after the caller's when --client-id names one."""
    from flowmailer.testing import DEFAULT_CREDENTIALS, Credential

    if args.client_id is None:
        return DEFAULT_CREDENTIALS
    secret = os.environ.get("FLOWMAILER_CLIENT_SECRET", "").strip()
    if not secret:
        raise ConfigurationError(
            "--client-id", "needs its secret", "set FLOWMAILER_CLIENT_SECRET (secrets are never taken from a flag)"
        )
    own = Credential(args.client_id, secret, args.role)
    return (own, *(c for c in DEFAULT_CREDENTIALS if c.client_id != own.client_id))


def simulate(args: argparse.Namespace) -> int:
    from flowmailer.testing import DEFAULT_ADDRESSES, FakeFlowmailer, FaultPlan

    fake = FakeFlowmailer(
        addresses=args.address or DEFAULT_ADDRESSES,
        account_id=args.account_id or "10001",
        credentials=_credentials(args),
        port=args.port,
        token_lifetime=args.token_lifetime,
        lockout_seconds=args.lockout,
        faults=FaultPlan.parse(args.fault, seed=args.seed),
        bounce_recipients=args.bounce,
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with fake.running():
            _describe(fake, args)
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    records = fake.records()
    print(
        f"stopped: {len(records.accepted)} messages accepted, {records.requests} requests on "
        f"{len(records.connections)} connections, statuses {dict(sorted(records.statuses.items()))}, "
        f"faults {dict(records.faults)}",
        flush=True,
    )
    return 0


def _describe(fake: FakeFlowmailer, args: argparse.Namespace) -> None:
    admin = fake.credentials[0]
    names = (fake.api_origin.host, fake.login_origin.host)
    addresses = ",".join(fake.addresses)
    hosts = ", ".join(f"{name!r}: {list(fake.addresses)!r}" for name in names)
    environment = {
        "FLOWMAILER_RESOLVE": " ".join(f"{name}={addresses}" for name in names),
        "FLOWMAILER_API_URL": fake.api_url,
        "FLOWMAILER_LOGIN_URL": fake.login_url,
        "FLOWMAILER_CA_BUNDLE": str(fake.ca_bundle),
        "FLOWMAILER_ACCOUNT_ID": fake.account_id,
        "FLOWMAILER_CLIENT_ID": admin.client_id,
    }
    if args.client_id is None:  # the caller's own secret is theirs: already in their environment, never printed
        environment["FLOWMAILER_CLIENT_SECRET"] = admin.client_secret
    lines = [
        "FakeFlowmailer is running; Ctrl-C stops it.",
        f"  addresses:  {' '.join(fake.addresses)}",
        f"  port:       {fake.port}",
        f"  API:        {fake.api_url}",
        f"  login:      {fake.login_url}",
        f"  CA bundle:  {fake.ca_bundle}",
        f"  account id: {fake.account_id}",
        *(
            f"  credential: {c.client_id} "
            f"{'(your FLOWMAILER_CLIENT_SECRET)' if c.client_id == args.client_id else c.client_secret} ({c.role})"
            for c in fake.credentials
        ),
        f"  faults:     {' '.join(args.fault) or 'none'} (seed {args.seed})",
        "Its host names resolve to its addresses only through a resolver that is told so: in Python,",
        f"  Client(..., resolver=flowmailer.testing.StaticResolver({{{hosts}}}));",
        "for the flowmailer command and Client.from_env(), this environment (FLOWMAILER_RESOLVE pins the names, "
        "like curl's --resolve):",
        "  export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in environment.items()),
    ]
    print("\n".join(lines), flush=True)
