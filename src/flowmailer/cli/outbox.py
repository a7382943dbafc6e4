"""``flowmailer outbox init``: create the outbox's SQLite file or PostgreSQL schema before the first message."""

from __future__ import annotations

import argparse
from typing import Any

from flowmailer.cli._config import OUTBOX_ONLY, add_config_arguments, config_from_args
from flowmailer.cli._wiring import open_outbox


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("outbox", help="manage the outbox", allow_abbrev=False)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init", help="create the outbox (SQLite file or PostgreSQL schema); safe to run again", allow_abbrev=False
    )
    add_config_arguments(init, OUTBOX_ONLY)
    init.set_defaults(handler=init_outbox)


def init_outbox(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    outbox = open_outbox(config, create=True)
    outbox.close()
    print(f"outbox ready: {config.require_outbox().describe()}")
    return 0
