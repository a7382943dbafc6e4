"""Flowmailer's paging headers and date ranges, formatted and parsed strictly."""

from __future__ import annotations

import re
from datetime import datetime

import attrs

from flowmailer.core._errors import ConfigurationError
from flowmailer.core._wire import format_date

__all__ = ["DateRange", "ItemContentRange", "ItemRange", "ReferenceContentRange", "ReferenceRange"]

# A reference is an opaque cursor; it travels inside headers shaped `REF:REF`, so it holds no colon.
_REF = r"[!-9;-~]*"
_COUNT = r"[0-9]{1,9}"
_REFERENCE_RANGE = re.compile(rf"items=({_REF}):({_COUNT})")
_REFERENCE_CONTENT_RANGE = re.compile(rf"items ({_REF}):({_REF})/\*")
_ITEM_RANGE = re.compile(rf"items=({_COUNT})-({_COUNT})")
_ITEM_CONTENT_RANGE = re.compile(rf"items ({_COUNT})-({_COUNT})/(\*|>?{_COUNT})")
_REF_ONLY = re.compile(_REF)


def _garbage(header: str, text: str, shape: str) -> ConfigurationError:
    return ConfigurationError(header, f"{text!r} is not of the form {shape!r}", f"use {shape!r}")


def _check_reference(field: str, value: str) -> None:
    if _REF_ONLY.fullmatch(value) is None:
        raise ConfigurationError(field, f"{value!r} is not a Flowmailer reference", "pass a reference Flowmailer gave")


def _check_count(field: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= 999_999_999:
        raise ConfigurationError(field, f"{value!r} is out of range", f"pass an int from {minimum} to 999999999")


@attrs.frozen
class ReferenceRange:
    """``Range``/``Next-Range: items=REF:COUNT``: up to ``count`` items after ``reference`` ('' = the start)."""

    reference: str = ""
    count: int = 100

    def __attrs_post_init__(self) -> None:
        _check_reference("reference", self.reference)
        _check_count("count", self.count, 1)

    def header(self) -> str:
        return f"items={self.reference}:{self.count}"

    @classmethod
    def parse(cls, text: str, *, header: str = "Range") -> ReferenceRange:
        m = _REFERENCE_RANGE.fullmatch(text.strip())
        if m is None:
            raise _garbage(header, text, "items=REF:COUNT")
        return cls(m[1], int(m[2]))


@attrs.frozen
class ReferenceContentRange:
    """``Content-Range: items START:END/*``: the references bounding the page Flowmailer sent."""

    start: str
    end: str

    def __attrs_post_init__(self) -> None:
        _check_reference("start", self.start)
        _check_reference("end", self.end)

    def header(self) -> str:
        return f"items {self.start}:{self.end}/*"

    @classmethod
    def parse(cls, text: str) -> ReferenceContentRange:
        m = _REFERENCE_CONTENT_RANGE.fullmatch(text.strip())
        if m is None:
            raise _garbage("Content-Range", text, "items START:END/*")
        return cls(m[1], m[2])


@attrs.frozen
class ItemRange:
    """``Range: items=START-END`` for the listings paged by position."""

    start: int
    end: int

    def __attrs_post_init__(self) -> None:
        _check_count("start", self.start, 0)
        _check_count("end", self.end, self.start)

    def header(self) -> str:
        return f"items={self.start}-{self.end}"

    @classmethod
    def parse(cls, text: str) -> ItemRange:
        m = _ITEM_RANGE.fullmatch(text.strip())
        if m is None:
            raise _garbage("Range", text, "items=START-END")
        return cls(int(m[1]), int(m[2]))


@attrs.frozen
class ItemContentRange:
    """``Content-Range: items START-END/TOTAL``; ``total`` is None for ``*``, a lower bound for ``>10000``."""

    start: int
    end: int
    total: int | None = None
    total_is_lower_bound: bool = False

    def __attrs_post_init__(self) -> None:
        _check_count("start", self.start, 0)
        _check_count("end", self.end, self.start)
        if self.total is not None:
            _check_count("total", self.total, 0)
        elif self.total_is_lower_bound:
            raise ConfigurationError("total", "a lower bound needs a number", "give total, or clear the flag")

    def header(self) -> str:
        total = "*" if self.total is None else f"{'>' if self.total_is_lower_bound else ''}{self.total}"
        return f"items {self.start}-{self.end}/{total}"

    @classmethod
    def parse(cls, text: str) -> ItemContentRange:
        m = _ITEM_CONTENT_RANGE.fullmatch(text.strip())
        if m is None:
            raise _garbage("Content-Range", text, "items START-END/TOTAL")
        total = m[3]
        if total == "*":
            return cls(int(m[1]), int(m[2]))
        return cls(int(m[1]), int(m[2]), int(total.lstrip(">")), total.startswith(">"))


@attrs.frozen
class DateRange:
    """``start,end`` in Flowmailer's date format: start inclusive, end exclusive."""

    start: datetime
    end: datetime

    def __attrs_post_init__(self) -> None:
        for name in ("start", "end"):
            value: datetime = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise ConfigurationError(name, "is a naive datetime", "pass an aware one, e.g. datetime.now(UTC)")
        if self.start.replace(microsecond=0) >= self.end.replace(microsecond=0):
            raise ConfigurationError("end", "is not after start", "give a range at least a second long: start < end")

    def param(self) -> str:
        return f"{format_date(self.start)},{format_date(self.end)}"
