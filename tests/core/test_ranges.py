from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.core import (
    ConfigurationError,
    DateRange,
    ItemContentRange,
    ItemRange,
    ReferenceContentRange,
    ReferenceRange,
)
from tests.strategies import counts, positions, references


@given(references, counts)
def test_reference_range_round_trips(reference: str, count: int) -> None:
    r = ReferenceRange(reference, count)
    assert ReferenceRange.parse(r.header()) == r


@given(references, references)
def test_reference_content_range_round_trips(start: str, end: str) -> None:
    r = ReferenceContentRange(start, end)
    assert ReferenceContentRange.parse(r.header()) == r


@given(positions, positions)
def test_item_range_round_trips(a: int, b: int) -> None:
    r = ItemRange(min(a, b), max(a, b))
    assert ItemRange.parse(r.header()) == r


@given(positions, positions, st.none() | positions, st.booleans())
def test_item_content_range_round_trips(a: int, b: int, total: int | None, lower_bound: bool) -> None:
    r = ItemContentRange(min(a, b), max(a, b), total, lower_bound and total is not None)
    assert ItemContentRange.parse(r.header()) == r


PARSERS: list[Callable[[str], Any]] = [
    ReferenceRange.parse,
    ReferenceContentRange.parse,
    ItemRange.parse,
    ItemContentRange.parse,
]


@pytest.mark.parametrize("parse", PARSERS)
@given(text=st.text(max_size=40) | st.from_regex(r"items[ =][0-9a-z:*/>-]{0,12}", fullmatch=True))
def test_garbage_is_a_clear_error_never_a_crash(parse: Callable[[str], Any], text: str) -> None:
    try:
        value = parse(text)
    except ConfigurationError:
        return
    assert parse(value.header()) == value


def test_first_page_has_an_empty_reference() -> None:
    assert ReferenceRange(count=50).header() == "items=:50"
    assert ReferenceRange.parse("items=:50") == ReferenceRange("", 50)


def test_next_range_header_is_named_in_the_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        ReferenceRange.parse("bytes=0-1", header="Next-Range")
    assert info.value.field == "Next-Range"


def test_content_range_total_may_be_a_lower_bound() -> None:
    r = ItemContentRange.parse("items 0-99/>10000")
    assert (r.total, r.total_is_lower_bound) == (10000, True)
    assert ItemContentRange.parse("items 0-99/250").total_is_lower_bound is False


@pytest.mark.parametrize(
    "build",
    [
        lambda: ReferenceRange("a:b", 10),
        lambda: ReferenceRange("ref", 0),
        lambda: ReferenceRange("ref", True),
        lambda: ReferenceContentRange("a b", "c"),
        lambda: ItemRange(5, 4),
        lambda: ItemRange(-1, 4),
        lambda: ItemContentRange(0, 1, None, True),
        lambda: ItemContentRange(0, 1, -1),
    ],
)
def test_invalid_ranges_are_refused(build: Callable[[], object]) -> None:
    with pytest.raises(ConfigurationError):
        build()


def test_date_range_is_flowmailer_dates_joined_by_a_comma() -> None:
    cet = timezone(timedelta(hours=1))
    r = DateRange(datetime(2021, 12, 30, 14, 0, tzinfo=cet), datetime(2021, 12, 31, tzinfo=UTC))
    assert r.param() == "2021-12-30T13:00:00Z,2021-12-31T00:00:00Z"


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (datetime(2021, 1, 1), datetime(2021, 1, 2, tzinfo=UTC), "start"),
        (datetime(2021, 1, 1, tzinfo=UTC), datetime(2021, 1, 2), "end"),
        (datetime(2021, 1, 2, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC), "end"),
        (datetime(2021, 1, 1, 0, 0, 0, 1, tzinfo=UTC), datetime(2021, 1, 1, 0, 0, 0, 9, tzinfo=UTC), "end"),
    ],
)
def test_invalid_date_ranges_are_refused(start: datetime, end: datetime, field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        DateRange(start, end)
    assert info.value.field == field
