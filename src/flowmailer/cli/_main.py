"""Entry point and sub-command dispatch for the ``flowmailer`` command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from flowmailer._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowmailer",
        description="An independent client for Flowmailer's REST API (not Flowmailer's own).",
    )
    parser.add_argument("--version", action="version", version=f"flowmailer {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return 0  # pragma: no cover
