"""``flowmailer dead requeue``: send dead letters again, once whatever killed them is fixed."""

from __future__ import annotations

import argparse
from typing import Any

from flowmailer.cli._config import add_config_arguments, config_from_args
from flowmailer.cli._wiring import open_outbox
from flowmailer.core import ConfigurationError


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("dead", help="dead letters: requeue them", allow_abbrev=False)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    requeue = actions.add_parser(
        "requeue", help="give dead letters a fresh start (these ids, or --all)", allow_abbrev=False
    )
    requeue.add_argument("ids", nargs="*", type=int, metavar="ID", help="outbox ids of dead letters")
    requeue.add_argument("--all", action="store_true", help="requeue every dead letter")
    add_config_arguments(requeue)
    requeue.set_defaults(handler=requeue_dead)


def requeue_dead(args: argparse.Namespace) -> int:
    if bool(args.ids) == args.all:
        raise ConfigurationError(
            "ID", "give either outbox ids or --all", "list the ids `flowmailer status` shows as dead, or pass --all"
        )
    outbox = open_outbox(config_from_args(args))
    try:
        count = outbox.requeue_dead(None if args.all else args.ids)
    finally:
        outbox.close()
    print(f"requeued {count} dead letter(s)")
    return 0
