"""``flowmailer status [ID | --reference REF | --recipient ADDR] [--json]``: how many messages stand in each state,
or where one message (or each message to one address) stands."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import attrs

from flowmailer.cli._args import number
from flowmailer.cli._config import OUTBOX_ONLY, add_config_arguments, config_from_args
from flowmailer.cli._wiring import open_outbox
from flowmailer.core import OutboxStatus, SubmissionState
from flowmailer.core._wire import dump_json

#: The states whose last reason says why the message stands there.
_EXPLAINED = (SubmissionState.RETRY_SCHEDULED, SubmissionState.RECONCILING, SubmissionState.DEAD)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "status", help="counts by state, or one message's state (by id, reference or recipient)", allow_abbrev=False
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "id", nargs="?", type=number(int, low=1, example=42), help="an outbox id, as `flowmailer send` printed it"
    )
    which.add_argument("--reference", metavar="REF", help="the message with this client reference (or ref: tag)")
    which.add_argument("--recipient", metavar="ADDR", help="the messages to this address, newest first")
    parser.add_argument(
        "--limit", type=number(int, low=1, example=20), default=20, help="with --recipient: how many (default 20)"
    )
    parser.add_argument("--json", action="store_true", help="JSON: an object, or one object a line for --recipient")
    add_config_arguments(parser, OUTBOX_ONLY)
    parser.set_defaults(handler=show_status)


def show_status(args: argparse.Namespace) -> int:
    outbox = open_outbox(config_from_args(args), read_only=True)
    try:
        if args.recipient is not None:
            found = outbox.find(recipient=args.recipient, limit=args.limit)
            return _list(found, args)
        if args.reference is not None:
            ref = args.reference.removeprefix("ref:")
            status = next(iter(outbox.find(client_reference=ref)), None)
            unknown = "client reference (not shown) is unknown"  # it may be pasted from anywhere: not echoed
        elif args.id is not None:
            status, unknown = outbox.status(args.id), f"outbox id {args.id} is unknown"
        else:
            counts = outbox.counts()
            if args.json:
                print(dump_json({state.value: n for state, n in counts.items()}).decode())
                return 0
            width = max(len(state.value) for state in counts)
            for state, n in counts.items():
                print(f"{state.value:<{width}}  {n:>9}")
            return 0
    finally:
        outbox.close()
    if status is None:
        print(f"flowmailer status: {unknown}", file=sys.stderr)
        return 1
    if args.json:
        print(dump_json(status_item(status)).decode())
        return 0
    # The reason explains a retry, a reconciliation or a death; in any other state it is history.
    reason = "reason" if status.state in _EXPLAINED else "previous failure"
    rows = [
        ("id", str(status.id)),
        ("state", status.state.value),
        ("client reference", status.client_reference),
        ("attempts", str(status.attempts)),
        *([(reason, status.last_reason)] if status.last_reason else []),
        ("message id", status.message_id or "-"),
        ("enqueued", _when(status.enqueued_at)),
        ("updated", _when(status.updated_at)),
        ("due", "-" if status.due_at is None else _when(status.due_at)),
    ]
    if status.dedupe_key is not None:
        rows.insert(3, ("dedupe key", status.dedupe_key))
    rows += [("error", error.describe()) for error in status.errors]
    for label, value in rows:
        print(f"{label + ':':<18}{value}")
    return 0


def _list(found: list[OutboxStatus], args: argparse.Namespace) -> int:
    if args.json:
        for status in found:
            print(dump_json(status_item(status)).decode())
        return 0
    if not found:
        print("no messages to that address in the outbox")
        return 0
    print(f"{'id':>8}  {'state':<15}  {'attempts':>8}  {'client reference':<32}  message id")
    for s in found:
        print(f"{s.id:>8}  {s.state.value:<15}  {s.attempts:>8}  {s.client_reference:<32}  {s.message_id or '-'}")
    if len(found) == args.limit:
        print(f"more may be older: raise --limit (now {args.limit})")
    return 0


def status_item(status: OutboxStatus) -> dict[str, object]:
    """One message as JSON: the state by name, times in UTC ISO 8601, Flowmailer's errors as it sent them."""
    item = attrs.asdict(status, recurse=False)
    item["state"] = status.state.value
    for key in ("enqueued_at", "requeued_at", "updated_at", "due_at"):
        item[key] = None if item[key] is None else _when(item[key])
    item["errors"] = [attrs.asdict(e) for e in status.errors]
    return item


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
