"""The recipes that test_docs.py cannot run: the systemd unit is checked against the relay it starts."""

from __future__ import annotations

import configparser
import inspect
import re
import shlex
from pathlib import Path

from flowmailer import Relay
from flowmailer.cli._main import build_parser

PAGE = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"


def unit() -> configparser.ConfigParser:
    [text] = re.findall(r"```ini\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.DOTALL)
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_the_units_command_is_one_the_relay_takes() -> None:
    executable, *argv = shlex.split(unit()["Service"]["ExecStart"])
    assert executable.endswith("/flowmailer")
    args = build_parser().parse_args(argv)
    assert args.handler.__name__ == "relay"
    assert args.no_progress, "a journal is not a terminal: plain lines, no live display"
    assert not args.once, "a service relays until systemd stops it"


def test_systemd_waits_longer_than_the_relays_graceful_stop() -> None:
    service = unit()["Service"]
    stop_timeout = inspect.signature(Relay).parameters["stop_timeout"].default
    assert service["KillSignal"] == "SIGTERM"
    assert float(service["TimeoutStopSec"]) > stop_timeout
    assert service["Restart"] == "on-failure"
