"""``flowmailer events follow``: every message event after the stored cursor, one JSON line each, until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType
from typing import Any

from flowmailer.cli._args import number
from flowmailer.cli._config import add_config_arguments, config_from_args
from flowmailer.cli._wiring import build_client, store_path
from flowmailer.core import ConfigurationError, MessageEvent, dump_json, wire_converter

#: Everything but the reconciling credential: the command reads events, it sends nothing; the outbox's file keeps
#: the cursors unless --cursors names another.
_SETTINGS = ("account_id", "client_id", "client_secret_file", "api_url", "login_url", "ca_bundle", "resolve", "outbox")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("events", help="message events from a stored cursor", allow_abbrev=False)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    follow = actions.add_parser(
        "follow",
        help="print every event after the stored cursor as a JSON line, then wait for more (Ctrl-C stops)",
        allow_abbrev=False,
    )
    follow.add_argument("--name", default="default", help="whose cursor: followers under other names keep their own")
    follow.add_argument(
        "--cursors",
        metavar="FILE",
        help="SQLite file holding the cursors (default: the SQLite outbox's file, in a table of its own)",
    )
    follow.add_argument(
        "--page-size", type=number(int, low=1, high=999_999_999, example=100), default=100, help="events per request"
    )
    follow.add_argument(
        "--idle-wait",
        type=number(float, low=0.0, above=True, example=10.0),
        default=10.0,
        metavar="SECONDS",
        help="how long to wait after a poll that found nothing new (default 10)",
    )
    add_config_arguments(follow, _SETTINGS)
    follow.set_defaults(handler=follow_events)


class _StopWaiting(BaseException):
    """Raised by the signal handler only while the follower waits between polls, when nothing is half done."""


class _StoppableClock:
    """The system clock, with a wait that Ctrl-C or SIGTERM ends at once; elsewhere a signal only asks to stop."""

    def __init__(self) -> None:
        self.stopping = False
        self._waiting = False

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        self._waiting = True
        try:
            time.sleep(seconds)
        finally:
            self._waiting = False

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:  # a second Ctrl-C: stop now; the page in hand is printed again next time
            raise KeyboardInterrupt
        self.stopping = True
        if self._waiting:
            raise _StopWaiting


def follow_events(args: argparse.Namespace) -> int:
    from flowmailer.adapters import SQLiteCursorStore
    from flowmailer.app import EventFollower

    config = config_from_args(args)
    clock = _StoppableClock()
    try:
        cursors = SQLiteCursorStore(store_path(config, args.cursors, "--cursors"))
    except ConfigurationError as e:
        raise ConfigurationError("--cursors" if e.field == "path" else e.field, e.problem, e.fix) from None
    with build_client(config) as client, cursors:
        follower = EventFollower(client, cursors, name=args.name, page_size=args.page_size, clock=clock)
        previous = {s: signal.signal(s, clock.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            follower.follow(_print, idle_wait=args.idle_wait, stop=lambda: clock.stopping)
        except _StopWaiting:
            pass
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    return 0


def _print(event: MessageEvent) -> None:
    sys.stdout.write(dump_json(wire_converter.unstructure(event)).decode() + "\n")
    sys.stdout.flush()  # a reader of the pipe sees each event as it comes, and a broken pipe stops us at once
