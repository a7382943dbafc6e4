"""Entry point and sub-command dispatch for the ``flowmailer`` command.

Each sub-command lives in its own module with ``register(subparsers)``, which adds a parser whose
``handler`` default takes the parsed arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from flowmailer._version import __version__
from flowmailer.cli._logs import configure_logging
from flowmailer.core import ConfigurationError, FlowmailerError

#: Sub-command modules, in the order ``--help`` lists them. Imported lazily so ``--help`` stays fast and
#: optional extras (trio, psycopg, rich) load only for the command that needs them.
COMMANDS: tuple[str, ...] = (
    "send",
    "relay",
    "status",
    "dead",
    "outbox",
    "events",
    "stats",
    "doctor",
    "simulate",
    "demo",
)


class QuietParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors name flags but never print a value from the command line.

    A secret typed where it does not belong (``--client-sec S``, ``--secret S``, a bare ``S``) must not land in a
    terminal's scroll-back or a CI log: argparse would quote it in "unrecognized arguments" or "invalid choice".
    """

    def error(self, message: str) -> NoReturn:
        super().error(quiet(message))


def quiet(message: str) -> str:
    """``message`` with every value from the command line left out; the flags it names stay."""
    head, sep, listed = message.partition("unrecognized arguments: ")
    if sep:
        flags = [word.partition("=")[0] for word in listed.split() if word.startswith("-")]
        values = len(listed.split()) - len(flags)
        named = " ".join(flags) + (" and " if flags and values else "") + (f"{values} value(s)" if values else "")
        return f"{head}unrecognized arguments: {named} (values are not shown: one could be a secret)"
    message = re.sub(r"invalid choice: '.*?' \(choose from", "invalid choice (not shown) (choose from", message)
    message = re.sub(r"invalid choice: '.*?'", "invalid choice (not shown)", message)
    return re.sub(r"invalid (\w+) value: '.*'", r"invalid \1 value (not shown)", message)


def build_parser() -> argparse.ArgumentParser:
    parser = QuietParser(
        prog="flowmailer",
        description="An independent client for Flowmailer's REST API (not Flowmailer's own).",
    )
    parser.add_argument("--version", action="version", version=f"flowmailer {__version__}")
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="log the flowmailer loggers at this level to standard error (default: warnings only, plainly)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="the same as --log-level debug")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines, or one JSON object a line with each record's message context (default text)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"flowmailer.cli.{name}").register(subparsers)
    return parser


#: The exit code of a command whose reader went away (`flowmailer status | head -1`): 128 + SIGPIPE, as a Unix tool
#: killed by SIGPIPE reports, so that a pipeline under ``set -o pipefail`` notices the output was cut short.
BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()
    except KeyboardInterrupt:  # while the parser loads the commands, before any of them runs
        print("flowmailer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Python's "Note on SIGPIPE": point stdout at devnull, so that the flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    configure_logging("debug" if args.verbose else args.log_level, args.log_format)
    # The whole command, as the user typed it: `flowmailer outbox init`, not `flowmailer outbox`.
    name = " ".join(["flowmailer", args.command, *([args.action] if getattr(args, "action", None) else [])])
    try:
        code: int = args.handler(args)
    except ConfigurationError as e:  # the command line, a setting or an input file: fix it and run again
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    except FlowmailerError as e:  # well formed, but the work failed
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # outside a relay, which stops gracefully on SIGINT itself
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    return code
