"""One relay process for the chaos and multi-relay tests (and the bench): drains an outbox through a Client.

Run with ``sys.executable tests/relay/relay_child.py --outbox sqlite:PATH|postgres:CONNINFO --api-url ...``; the
client secret comes from FLOWMAILER_CLIENT_SECRET. ``--relay threaded`` (the default) runs ``Relay`` over
``Client``; ``--relay asyncio`` or ``--relay trio`` runs ``AsyncRelay`` over ``AsyncClient`` on that backend, with
the same settings (and ``--pipeline-depth N`` for both the relay and its transport). It prints one JSON line per
figure its parent adds up (``sent``, ``reconciled``, ``retry``, ``dead``, ``not_recorded``), flushed at once so
lines survive a SIGKILL, and a final ``stats`` line; it exits 0 when the outbox is drained or after
SIGTERM/SIGINT. With ``--log-file``, every record of the ``flowmailer`` loggers, debug ones too, goes there as a
JSON line (as ``--log-format json`` writes).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING

import anyio

from flowmailer.adapters import MemoryTokenStore, SystemClock, Urllib3Transport
from flowmailer.adapters.anyio_token_store import AnyioTokenStore
from flowmailer.adapters.anyio_transport import AnyioTransport
from flowmailer.app import Client, Relay, RelayStats, SlotKeeper
from flowmailer.app.async_client import AsyncClient
from flowmailer.app.async_relay import AsyncRelay, AsyncSlotKeeper
from flowmailer.cli._logs import JsonFormatter
from flowmailer.core import (
    Credentials,
    Dead,
    Event,
    ReconcileAt,
    RecordAccepted,
    RelayNotRecorded,
    RelayRecorded,
    RelayRules,
    RetryAt,
    RetryPolicy,
    TokenPolicy,
)
from flowmailer.testing import StaticResolver

if TYPE_CHECKING:
    from flowmailer.ports import ConnectionSlots, Outbox

API_HOST, LOGIN_HOST = "api.flowmailer.test", "login.flowmailer.test"


class JsonLines:
    """An observer that writes the figures a parent process adds up, one flushed line each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def write(self, **fields: object) -> None:
        line = json.dumps(fields) + "\n"
        with self._lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    def on_event(self, event: Event) -> None:
        if isinstance(event, RelayRecorded):
            d = event.decision
            if isinstance(d, RecordAccepted):
                self.write(
                    **({"reconciled": event.client_reference} if d.reconciled else {"sent": event.client_reference})
                )
            elif isinstance(d, RetryAt | ReconcileAt):
                self.write(retry=d.cause.value)
            elif isinstance(d, Dead):
                self.write(dead=event.client_reference, reason=d.reason)
        elif isinstance(event, RelayNotRecorded):
            self.write(not_recorded=event.outbox_id, reason=event.reason)


def open_outbox(url: str, table: str, clock: SystemClock) -> Outbox:
    """``sqlite:PATH`` or ``postgres:CONNINFO`` (psycopg's key=value form)."""
    if url.startswith("sqlite:"):
        from flowmailer.adapters.sqlite_outbox import SQLiteOutbox

        return SQLiteOutbox(url.removeprefix("sqlite:"), clock=clock, poll_interval=0.05)
    from flowmailer.adapters.postgres_outbox import PostgresOutbox

    return PostgresOutbox(url.removeprefix("postgres:"), table=table, clock=clock, poll_interval=0.2)


async def run_async(
    credentials: Credentials,
    options: dict[str, object],
    tokens: TokenPolicy | None,
    outbox: Outbox,
    settings: dict[str, object],
    args: argparse.Namespace,
    slots: ConnectionSlots | None,
) -> RelayStats:
    transport = AnyioTransport(
        ca_bundle=args.ca_bundle, connect_timeout=0.5, read_timeout=5.0, pipeline_depth=args.pipeline_depth
    )
    # The margin covers one request: the transport's connect and read timeouts (0.5 s and 5 s).
    keeper = (
        None if slots is None else AsyncSlotKeeper(slots, args.client_id, transport, lease=args.slot_lease, margin=6.0)
    )
    async with AsyncClient(
        credentials,
        transport=transport,
        token_store=None if tokens is None else AnyioTokenStore(time.time, tokens),
        **options,  # type: ignore[arg-type]
    ) as client:
        relay = AsyncRelay(outbox, client, pipeline_depth=args.pipeline_depth, slots=keeper, **settings)  # type: ignore[arg-type]
        relay.install_signal_handlers()
        return await relay.run(until_empty=not args.forever)


def open_slots(url: str, table: str, clock: SystemClock) -> ConnectionSlots:
    """The connection slots beside the outbox: in its SQLite file, or in ``table`` of its PostgreSQL database."""
    if url.startswith("sqlite:"):
        from flowmailer.adapters.sqlite_connection_slots import SQLiteConnectionSlots

        return SQLiteConnectionSlots(url.removeprefix("sqlite:"), clock=clock)
    from flowmailer.adapters.postgres_connection_slots import PostgresConnectionSlots

    return PostgresConnectionSlots(url.removeprefix("postgres:"), table=table, clock=clock)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outbox", required=True, help="sqlite:PATH or postgres:CONNINFO")
    parser.add_argument("--table", default="flowmailer_outbox", help="the PostgreSQL outbox's table")
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--login-url", required=True)
    parser.add_argument("--ca-bundle", required=True)
    parser.add_argument("--addresses", required=True, help="comma-separated IP addresses of the fake")
    parser.add_argument("--account-id", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--owner", required=True)
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--forever", action="store_true", help="run until a signal instead of until drained")
    parser.add_argument(
        "--refresh-ahead",
        type=float,
        default=None,
        help="seconds before expiry to refresh a token (for short-lived ones)",
    )
    parser.add_argument("--log-file", default=None, help="every flowmailer log record here, one JSON line each")
    parser.add_argument("--relay", choices=("threaded", "asyncio", "trio"), default="threaded")
    parser.add_argument("--pipeline-depth", type=int, default=1, help="the async relay's and its transport's")
    parser.add_argument(
        "--slots",
        default=None,
        help="share the credential's 10 connections with the relays on this outbox, in this slot table (PostgreSQL); "
        "any relay kind",
    )
    parser.add_argument("--slot-lease", type=float, default=9.0)
    args = parser.parse_args()
    if args.log_file is not None:
        handler = logging.FileHandler(args.log_file)
        handler.setFormatter(JsonFormatter())
        logging.getLogger("flowmailer").addHandler(handler)
        logging.getLogger("flowmailer").setLevel(logging.DEBUG)

    clock = SystemClock()
    credentials = Credentials(args.account_id, args.client_id, os.environ["FLOWMAILER_CLIENT_SECRET"])
    options = {
        "api_url": args.api_url,
        "login_url": args.login_url,
        # A couple of quick attempts on other addresses; the outbox holds the longer waits.
        "policy": RetryPolicy(max_attempts=3, deadline=10.0, base_delay=0.02, cap=0.2, max_retry_after=1.0),
        "resolver": StaticResolver({API_HOST: args.addresses.split(","), LOGIN_HOST: args.addresses.split(",")}),
        "clock": clock,
    }
    tokens = None if args.refresh_ahead is None else TokenPolicy(args.refresh_ahead, args.refresh_ahead / 2)
    outbox = open_outbox(args.outbox, args.table, clock)
    slots = None if args.slots is None else open_slots(args.outbox, args.slots, clock)
    printer = JsonLines()
    settings = {
        "rules": RelayRules(
            max_attempts=25, max_age=3600.0, backoff=RetryPolicy(base_delay=0.05, cap=0.5), reconcile_delay=0.1
        ),
        "concurrency": args.concurrency,
        "batch_size": args.batch_size,
        "lease": args.lease,
        "clock": clock,
        "observer": printer,
        "owner": args.owner,
        "idle_wait": 0.1,
        "stop_timeout": 10.0,
    }
    try:
        if args.relay == "threaded":
            transport = Urllib3Transport(ca_bundle=args.ca_bundle, connect_timeout=0.5, read_timeout=5.0, clock=clock)
            # The margin covers one request: the transport's connect and read timeouts (0.5 s and 5 s).
            keeper = (
                None
                if slots is None
                else SlotKeeper(slots, args.client_id, transport, lease=args.slot_lease, margin=6.0)
            )
            with Client(
                credentials,
                transport=transport,
                token_store=None if tokens is None else MemoryTokenStore(clock, tokens),
                **options,
            ) as client:
                relay = Relay(outbox, client, slots=keeper, **settings)
                relay.install_signal_handlers()
                stats = relay.run(until_empty=not args.forever)
        else:
            stats = anyio.run(
                run_async, credentials, options, tokens, outbox, settings, args, slots, backend=args.relay
            )
    finally:
        outbox.close()
        if slots is not None:
            slots.close()
    printer.write(
        stats={
            "claimed": stats.claimed,
            "accepted": stats.accepted,
            "reconciled": stats.reconciled,
            "dead": stats.dead,
            "released": stats.released,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
