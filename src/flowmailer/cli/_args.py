"""Argument types that refuse a nonsense number while the command line is parsed, naming the range and an example."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

__all__ = ["number"]

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
