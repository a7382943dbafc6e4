"""``flowmailer outbox init`` creates the outbox's SQLite file or PostgreSQL schema before the first message;
``outbox prune`` deletes the accepted history an operator no longer needs."""

from __future__ import annotations

import argparse
from typing import Any

from flowmailer.cli._args import duration
from flowmailer.cli._config import OUTBOX_ONLY, add_config_arguments, config_from_args
from flowmailer.cli._wiring import open_outbox, open_slots


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("outbox", help="manage the outbox", allow_abbrev=False)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init", help="create the outbox (SQLite file or PostgreSQL schema); safe to run again", allow_abbrev=False
    )
    add_config_arguments(init, OUTBOX_ONLY)
    init.set_defaults(handler=init_outbox)
    prune = actions.add_parser(
        "prune",
        help="delete accepted messages older than a duration (their dedupe keys go with them)",
        description="Delete the rows of messages Flowmailer accepted longer ago than --accepted-older-than. Queued, "
        "retrying, reconciling and dead messages are never deleted; a dedupe key of a deleted row may be used again.",
        allow_abbrev=False,
    )
    prune.add_argument(
        "--accepted-older-than",
        type=duration,
        required=True,
        metavar="AGE",
        help="e.g. 30d, 12h, 90m or 3600s: accepted at least this long ago",
    )
    add_config_arguments(prune, OUTBOX_ONLY)
    prune.set_defaults(handler=prune_outbox)


def init_outbox(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    outbox = open_outbox(config, create=True)
    outbox.close()
    open_slots(config, create=True).close()  # the relays' shared connection slots, beside it
    print(f"outbox ready: {config.require_outbox().describe()}")
    return 0


def prune_outbox(args: argparse.Namespace) -> int:
    outbox = open_outbox(config_from_args(args))
    try:
        count = outbox.prune_accepted(args.accepted_older_than)
    finally:
        outbox.close()
    print(f"pruned {count} accepted message(s)")
    return 0
