"""Argument types that refuse a nonsense number while the command line is parsed, naming the range and an example."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import TypeVar

__all__ = ["add_pipeline_depth", "duration", "host_port", "number"]

N = TypeVar("N", bound=float)
_NOUNS: dict[object, str] = {int: "a whole number"}


def number(
    kind: Callable[[str], N], *, low: N | None = None, high: N | None = None, above: bool = False, example: N
) -> Callable[[str], N]:
    """An argparse ``type``: a finite ``kind`` from ``low`` (exclusive when ``above``) to ``high``."""
    noun = _NOUNS.get(kind, "a number")
    if low is not None and high is not None:
        rule = f"{noun} from {low} to {high}"
    elif low is not None:
        rule = f"{noun} above {low}" if above else f"{noun} of {low} or more"
    else:
        rule = noun

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if (
            value is None
            or not math.isfinite(value)
            or (low is not None and (value <= low if above else value < low))
            or (high is not None and value > high)
        ):
            raise argparse.ArgumentTypeError(f"not {rule}; give e.g. {example}")  # the value is never printed
        return value

    return parse


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def duration(text: str) -> float:
    """An argparse ``type``: ``30d``, ``12h``, ``90m`` or ``3600s``, in seconds. A bare number is refused: days?"""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError("not a duration with a unit (s, m, h or d); give e.g. 30d")
    return float(match[1]) * _UNITS[match[2]]


def host_port(text: str) -> tuple[str, int]:
    """An argparse ``type``: ``HOST:PORT`` (``[::1]:9100`` for IPv6; port 0 picks a free one)."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError("not HOST:PORT; give e.g. 127.0.0.1:9100")
    return host, int(port)


def add_pipeline_depth(parser: argparse.ArgumentParser) -> None:
    """``--pipeline-depth N``, which ``relay`` and ``demo`` share: given, they run the async relay."""
    parser.add_argument(
        "--pipeline-depth",
        type=number(int, low=1, high=16, example=8),
        default=None,
        metavar="N",
        help="run the async relay (the async extra), pipelining up to N submissions on each connection, 1 to 16 "
        "(default: the threaded relay, one at a time per connection)",
    )
