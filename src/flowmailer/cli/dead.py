"""``flowmailer dead list`` and ``dead requeue``: see why messages died, and send them again once that is fixed."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flowmailer.cli._args import number
from flowmailer.cli._config import OUTBOX_ONLY, add_config_arguments, config_from_args
from flowmailer.cli._wiring import open_outbox
from flowmailer.cli.status import status_item
from flowmailer.core import ConfigurationError, SubmissionState
from flowmailer.core._wire import dump_json


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("dead", help="dead letters: list them, requeue them", allow_abbrev=False)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="dead letters, oldest first, with why they died", allow_abbrev=False)
    listing.add_argument(
        "--limit", type=number(int, low=1, example=50), default=50, help="how many to show (default 50)"
    )
    listing.add_argument(
        "--after", type=number(int, low=0, example=100), metavar="ID", help="start after this outbox id (the next page)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object a line, as `status --json` shows one")
    add_config_arguments(listing, OUTBOX_ONLY)
    listing.set_defaults(handler=list_dead)
    requeue = actions.add_parser(
        "requeue", help="give dead letters a fresh start (these ids, or --all)", allow_abbrev=False
    )
    requeue.add_argument(
        "ids", nargs="*", type=number(int, low=1, example=42), metavar="ID", help="outbox ids of dead letters"
    )
    requeue.add_argument("--all", action="store_true", help="requeue every dead letter")
    add_config_arguments(requeue, OUTBOX_ONLY)
    requeue.set_defaults(handler=requeue_dead)


def requeue_dead(args: argparse.Namespace) -> int:
    """Exits 1, requeuing nothing, if an id is unknown or not dead: the command was right, the ids were not."""
    if bool(args.ids) == args.all:
        raise ConfigurationError(
            "ID", "give either outbox ids or --all", "list ids that `flowmailer dead list` shows, or pass --all"
        )
    outbox = open_outbox(config_from_args(args))
    try:
        found = {} if args.all else {i: outbox.status(i) for i in args.ids}
        wrong = [
            f"outbox id {i} is {'unknown' if s is None else s.state.value}, not dead"
            for i, s in found.items()
            if s is None or s.state is not SubmissionState.DEAD
        ]
        if not wrong:
            try:
                count = outbox.requeue_dead(None if args.all else args.ids)
            except ConfigurationError as e:  # a relay changed the row since it was read
                wrong = [e.problem]
    finally:
        outbox.close()
    if wrong:
        print(
            f"flowmailer dead requeue: nothing was requeued: {'; '.join(wrong)}. Requeue only ids that "
            "`flowmailer dead list` shows; `flowmailer status ID` shows where a message stands.",
            file=sys.stderr,
        )
        return 1
    print(f"requeued {count} dead letter(s)")
    return 0


def list_dead(args: argparse.Namespace) -> int:
    """One line per dead letter: id, attempts, client reference, the reason, and Flowmailer's first error."""
    outbox = open_outbox(config_from_args(args), read_only=True)
    try:
        dead = outbox.dead_letters(args.limit, args.after)
    finally:
        outbox.close()
    if args.json:
        for status in dead:
            print(dump_json(status_item(status)).decode())
        if len(dead) == args.limit:  # not on standard output, which holds only the objects
            print(f"more may follow: flowmailer dead list --json --after {dead[-1].id}", file=sys.stderr)
        return 0
    if not dead:
        print("no dead letters" if args.after is None else f"no dead letters after outbox id {args.after}")
        return 0
    print(f"{'id':>8}  {'attempts':>8}  {'client reference':<32}  reason | first error")
    for status in dead:
        first = status.errors[0].describe() if status.errors else "-"
        reason = status.last_reason or "-"
        print(f"{status.id:>8}  {status.attempts:>8}  {status.client_reference:<32}  {reason} | {first}")
    if len(dead) == args.limit:
        print(f"more may follow: flowmailer dead list --after {dead[-1].id}")
    return 0
