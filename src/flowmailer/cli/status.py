"""``flowmailer status [ID]``: how many messages stand in each state, or where one message stands."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from flowmailer.cli._args import number
from flowmailer.cli._config import OUTBOX_ONLY, add_config_arguments, config_from_args
from flowmailer.cli._wiring import open_outbox
from flowmailer.core import SubmissionState

#: The states whose last reason says why the message stands there.
_EXPLAINED = (SubmissionState.RETRY_SCHEDULED, SubmissionState.RECONCILING, SubmissionState.DEAD)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("status", help="counts by state, or one message's state", allow_abbrev=False)
    parser.add_argument(
        "id", nargs="?", type=number(int, low=1, example=42), help="an outbox id, as `flowmailer send` printed it"
    )
    add_config_arguments(parser, OUTBOX_ONLY)
    parser.set_defaults(handler=show_status)


def show_status(args: argparse.Namespace) -> int:
    outbox = open_outbox(config_from_args(args), read_only=True)
    try:
        if args.id is None:
            counts = outbox.counts()
            width = max(len(state.value) for state in counts)
            for state, n in counts.items():
                print(f"{state.value:<{width}}  {n:>9}")
            return 0
        status = outbox.status(args.id)
    finally:
        outbox.close()
    if status is None:
        print(f"flowmailer status: outbox id {args.id} is unknown", file=sys.stderr)
        return 1
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


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
