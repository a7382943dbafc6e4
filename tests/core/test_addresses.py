"""The address book: rotation, never the failed address, cool-down and recovery, re-resolution."""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.core import (
    AddressBook,
    AddressHealth,
    AddressPolicy,
    Ambiguous,
    ConfigurationError,
    NotSent,
    Resolution,
    WireResponse,
)

ips = st.lists(
    st.integers(min_value=2, max_value=250).map(lambda i: f"127.0.0.{i}"), min_size=1, max_size=6, unique=True
)
times = st.floats(min_value=0.0, max_value=1e5)


@st.composite
def books(draw: st.DrawFn) -> AddressBook:
    """A book in any state of health: each address has had some failures, possibly still cooling down."""
    addresses = draw(ips)
    entries = tuple(
        AddressHealth(a, draw(st.integers(min_value=0, max_value=8)), draw(st.none() | times) or -math.inf)
        for a in addresses
    )
    return AddressBook(entries, 0.0, 60.0, cursor=draw(st.integers(min_value=0, max_value=len(entries) - 1)))


def book_of(*addresses: str, ttl: float = 60.0, now: float = 0.0) -> AddressBook:
    return AddressBook.from_resolution(Resolution(addresses, ttl), now)


@given(books(), times, st.none() | st.sampled_from(["127.0.0.2", "127.0.0.3", "192.0.2.1"]))
def test_pick_always_returns_an_address_of_the_book(book: AddressBook, now: float, avoid: str | None) -> None:
    address, _ = book.pick(now, avoid=avoid)
    assert address in book.addresses


@given(books(), times, st.data())
def test_pick_never_returns_the_avoided_address_when_another_exists(
    book: AddressBook, now: float, data: st.DataObject
) -> None:
    avoid = data.draw(st.sampled_from(book.addresses))
    address, _ = book.pick(now, avoid=avoid)
    assert address != avoid or len(book) == 1


@given(books(), times, st.integers(min_value=1, max_value=4))
def test_rotation_picks_every_healthy_address_equally_often(book: AddressBook, now: float, rounds: int) -> None:
    healthy = {e.address for e in book.entries if not e.cooling(now)}
    picked: collections.Counter[str] = collections.Counter()
    for _ in range(rounds * len(healthy)):
        address, book = book.pick(now)
        picked[address] += 1
    assert picked == dict.fromkeys(healthy, rounds)


@given(books(), times)
def test_a_failed_address_rests_while_another_is_healthy(book: AddressBook, now: float) -> None:
    failed = book.addresses[0]
    book = book.mark_failed(failed, now)
    others_healthy = any(not e.cooling(now) for e in book.entries if e.address != failed)
    picks = set()
    for _ in range(2 * len(book)):
        address, book = book.pick(now)
        picks.add(address)
    assert (failed not in picks) or not others_healthy


@given(st.integers(min_value=1, max_value=80), times)
def test_cool_down_doubles_per_consecutive_failure_up_to_the_cap(failures: int, now: float) -> None:
    policy = AddressPolicy(cool_down=0.5, cool_down_cap=40.0)
    book = AddressBook.from_resolution(Resolution(("127.0.0.2",), 60.0), 0.0, policy)
    for _ in range(failures):
        book = book.mark_failed("127.0.0.2", now)
    assert book.entries[0] == AddressHealth("127.0.0.2", failures, now + min(40.0, 0.5 * 2 ** (failures - 1)))


@given(books(), times, st.floats(min_value=0.0, max_value=100.0))
def test_a_cooled_down_address_is_picked_again_once_its_cool_down_ends(
    book: AddressBook, now: float, later: float
) -> None:
    failed = book.addresses[-1]
    book = book.mark_failed(failed, now)
    ends = book.entries[-1].cooling_until
    book = attrs.evolve(
        book, entries=tuple(AddressHealth(e.address) if e.address != failed else e for e in book.entries)
    )
    picks = set()
    for _ in range(len(book)):
        address, book = book.pick(ends + later)
        picks.add(address)
    assert failed in picks


@given(books(), times)
def test_mark_ok_recovers_an_address_at_once(book: AddressBook, now: float) -> None:
    address = book.addresses[0]
    recovered = book.mark_failed(address, now).mark_ok(address)
    assert recovered.entries[0] == AddressHealth(address)
    assert not recovered.entries[0].cooling(now)


@given(ips, times)
def test_when_every_address_cools_down_the_one_ending_first_is_picked(addresses: list[str], now: float) -> None:
    book = book_of(*addresses)
    for i, address in enumerate(addresses):
        for _ in range(len(addresses) - i):
            book = book.mark_failed(address, now)
    assert book.pick(now)[0] == addresses[-1]


def _pick_by_search(
    book: AddressBook, now: float, avoid: str | None, load: Mapping[str, int] | None = None
) -> tuple[str, int]:
    """The rule pick documents, spelled out: rotation order, never ``avoid`` if possible, cooling ones last, and
    among the ready ones the first with the fewest requests in flight."""
    n = len(book)
    order = [book.entries[(book.cursor + i) % n] for i in range(n)]
    candidates = [e for e in order if e.address != avoid] or order
    ready = [e for e in candidates if not e.cooling(now)]
    fewest = min((load or {}).get(e.address, 0) for e in ready) if ready else 0
    ready = [e for e in ready if (load or {}).get(e.address, 0) == fewest]
    chosen = ready[0] if ready else min(candidates, key=lambda e: e.cooling_until)
    return chosen.address, (book.entries.index(chosen) + 1) % n


@given(books(), times, st.none() | st.sampled_from(["127.0.0.2", "127.0.0.3", "192.0.2.1"]))
def test_pick_follows_its_rule_in_every_state_of_health(book: AddressBook, now: float, avoid: str | None) -> None:
    address, after = book.pick(now, avoid=avoid)
    assert (address, after.cursor) == _pick_by_search(book, now, avoid)
    assert attrs.evolve(after, cursor=book.cursor) == book


def load_of(book: AddressBook) -> st.SearchStrategy[dict[str, int]]:
    """Requests in flight per address, as a transport counts them: some of the book's addresses left out (none in
    flight), perhaps one the book does not know."""
    return st.dictionaries(st.sampled_from([*book.addresses, "192.0.2.1"]), st.integers(min_value=0, max_value=3))


@given(books(), times, st.none() | st.sampled_from(["127.0.0.2", "127.0.0.3", "192.0.2.1"]), st.data())
def test_pick_is_the_least_loaded_ready_address_first_in_rotation_among_equals(
    book: AddressBook, now: float, avoid: str | None, data: st.DataObject
) -> None:
    load = data.draw(load_of(book))
    address, after = book.pick(now, avoid=avoid, load=load)
    assert (address, after.cursor) == _pick_by_search(book, now, avoid, load)
    assert attrs.evolve(after, cursor=book.cursor) == book


@given(books(), times, st.data())
def test_a_loaded_pick_never_returns_the_avoided_address_nor_a_cooling_one_while_another_is_ready(
    book: AddressBook, now: float, data: st.DataObject
) -> None:
    avoid = data.draw(st.sampled_from(book.addresses))
    load = data.draw(load_of(book))
    address, _ = book.pick(now, avoid=avoid, load=load)
    others = [e for e in book.entries if e.address != avoid]
    assert address != avoid or not others
    ready = [e.address for e in others if not e.cooling(now)]
    if ready:
        assert address in ready
        assert load.get(address, 0) == min(load.get(a, 0) for a in ready)


@given(books(), times, st.none() | st.sampled_from(["127.0.0.2", "127.0.0.3", "192.0.2.1"]), st.data())
def test_with_no_load_or_an_even_one_the_pick_is_the_rotation(
    book: AddressBook, now: float, avoid: str | None, data: st.DataObject
) -> None:
    even = data.draw(st.sampled_from([None, {}, dict.fromkeys(book.addresses, 2)]))
    assert book.pick(now, avoid=avoid, load=even) == book.pick(now, avoid=avoid) == book.pick(now, avoid)


def test_a_busy_address_is_passed_over_for_an_idle_one_and_the_rotation_goes_on_after_it() -> None:
    book = book_of("127.0.0.2", "127.0.0.3", "127.0.0.4")
    address, after = book.pick(0.0, load={"127.0.0.2": 1, "127.0.0.3": 1})
    assert (address, after.cursor) == ("127.0.0.4", 0)
    # One in flight against none counted: the address with no entry is the idle one (not counted as one).
    assert after.pick(0.0, load={"127.0.0.2": 1})[0] == "127.0.0.3"
    # A count of 0 and no count are the same (not less): the rotation decides between them.
    assert book.pick(0.0, load={"127.0.0.2": 1, "127.0.0.3": 0})[0] == "127.0.0.3"
    # Equal loads above zero: rotation, not the first address of the book.
    assert attrs.evolve(book, cursor=1).pick(0.0, load=dict.fromkeys(book.addresses, 1))[0] == "127.0.0.3"
    # Fewer in flight wins over more, whatever the rotation: 1 beats 2, not only 0 beats 1.
    assert book.pick(0.0, load={"127.0.0.2": 2, "127.0.0.3": 1, "127.0.0.4": 2})[0] == "127.0.0.3"


def test_a_less_loaded_address_that_cools_down_or_is_avoided_is_passed_over() -> None:
    book = book_of("127.0.0.2", "127.0.0.3", "127.0.0.4").mark_failed("127.0.0.4", 0.0)
    load = {"127.0.0.2": 3, "127.0.0.3": 2}
    assert book.pick(0.5, load=load)[0] == "127.0.0.3"
    assert book.pick(0.5, avoid="127.0.0.3", load=load)[0] == "127.0.0.2"
    # Once the cool-down ends the idle address is the least loaded again.
    assert book.pick(5.0, avoid="127.0.0.3", load=load)[0] == "127.0.0.4"


@given(books())
def test_mark_ok_of_a_healthy_address_returns_the_same_book(book: AddressBook) -> None:
    healthy = book.mark_ok(book.addresses[0])
    assert healthy.mark_ok(book.addresses[0]) is healthy


def test_a_failure_reported_for_a_vanished_address_changes_nothing() -> None:
    book = book_of("127.0.0.2")
    assert book.mark_failed("127.0.0.9", 1.0) == book
    assert book.mark_ok("127.0.0.9") == book


@given(st.floats(min_value=0.0, max_value=1000.0), times, st.floats(min_value=0.0, max_value=2000.0))
def test_needs_resolve_exactly_when_the_ttl_ran_out(ttl: float, resolved_at: float, after: float) -> None:
    book = book_of("127.0.0.2", ttl=ttl, now=resolved_at)
    assert book.needs_resolve(resolved_at + after) == (after >= max(ttl, book.policy.min_ttl))


@given(books(), ips, times)
def test_updated_keeps_remaining_health_drops_vanished_and_adds_new_healthy(
    book: AddressBook, fresh: list[str], now: float
) -> None:
    before = {e.address: e for e in book.entries}
    after = book.updated(Resolution(tuple(fresh), 30.0), now)
    assert after.addresses == tuple(fresh)
    for entry in after.entries:
        assert entry == before.get(entry.address, AddressHealth(entry.address))
    assert (after.resolved_at, after.ttl) == (now, 30.0)
    assert not after.needs_resolve(now)
    assert after.pick(now)[0] in fresh


def test_resolve_failed_keeps_the_addresses_and_asks_again_after_min_ttl() -> None:
    book = book_of("127.0.0.2", "127.0.0.3", ttl=60.0).mark_failed("127.0.0.3", 60.0)
    kept = book.resolve_failed(60.0)
    assert kept.entries == book.entries
    assert not kept.needs_resolve(60.0 + kept.policy.min_ttl - 0.001)
    assert kept.needs_resolve(60.0 + kept.policy.min_ttl)


def test_a_repeated_address_in_a_resolution_counts_once() -> None:
    assert book_of("127.0.0.2", "127.0.0.3", "127.0.0.2").addresses == ("127.0.0.2", "127.0.0.3")


@pytest.mark.parametrize("failure", [NotSent("connect refused"), Ambiguous("reset after write")])
def test_record_rests_an_address_that_was_not_reached_and_an_answer_heals_it(failure: NotSent | Ambiguous) -> None:
    book = book_of("127.0.0.2", "127.0.0.3")
    failed = book.record("127.0.0.2", failure, 10.0)
    assert failed == book.mark_failed("127.0.0.2", 10.0)
    assert failed.record("127.0.0.2", WireResponse(503), 11.0) == book
    assert book.record("127.0.0.2", WireResponse(201), 11.0) is book


def test_record_ignores_a_local_not_sent() -> None:
    book = book_of("127.0.0.2", "127.0.0.3")
    assert book.record("127.0.0.2", NotSent("all 10 connections stayed busy", local=True), 10.0) is book


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cool_down": 0.0}, "AddressPolicy.cool_down"),
        ({"cool_down": 2.0, "cool_down_cap": 1.0}, "AddressPolicy.cool_down_cap"),
        ({"min_ttl": -1.0}, "AddressPolicy.min_ttl"),
        ({"max_connection_age": math.inf}, "AddressPolicy.max_connection_age"),
        ({"max_connection_age": 0.0}, "AddressPolicy.max_connection_age"),
    ],
)
def test_a_bad_address_policy_is_refused_naming_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AddressPolicy(**kwargs)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("resolution", "field"),
    [(Resolution((), 60.0), "resolution.addresses"), (Resolution(("127.0.0.2",), math.nan), "resolution.ttl")],
)
def test_a_bad_resolution_is_refused_and_the_book_is_unchanged(resolution: Resolution, field: str) -> None:
    book = book_of("127.0.0.2")
    with pytest.raises(ConfigurationError) as caught:
        book.updated(resolution, 1.0)
    assert caught.value.field == field
    with pytest.raises(ConfigurationError):
        AddressBook.from_resolution(resolution, 1.0)
    assert book == book_of("127.0.0.2")


def test_an_empty_book_cannot_be_built() -> None:
    with pytest.raises(ConfigurationError) as caught:
        AddressBook((), 0.0, 60.0)
    assert caught.value.field == "AddressBook.entries"


def test_an_address_policy_at_its_boundaries_is_accepted() -> None:
    policy = AddressPolicy(cool_down=2.0, cool_down_cap=2.0, min_ttl=0.0, max_connection_age=5e-324)
    assert (policy.cool_down_cap, policy.min_ttl) == (2.0, 0.0)


@given(books(), st.data())
def test_mark_ok_heals_exactly_that_address_whatever_its_health(book: AddressBook, data: st.DataObject) -> None:
    """Also an address that has cooled down but still counts failures: its next failure rests the shortest."""
    address = data.draw(st.sampled_from(book.addresses))
    healed = book.mark_ok(address)
    for before, after in zip(book.entries, healed.entries, strict=True):
        assert after == (AddressHealth(address) if before.address == address else before)
    assert healed.cursor == book.cursor


def test_mark_ok_resets_the_failures_of_an_address_whose_cool_down_is_over() -> None:
    book = attrs.evolve(book_of("127.0.0.2", "127.0.0.3"), entries=(
        AddressHealth("127.0.0.2"), AddressHealth("127.0.0.3", failures=4),
    ))  # fmt: skip
    assert book.mark_ok("127.0.0.3").entries[1] == AddressHealth("127.0.0.3")
    assert book.mark_ok("127.0.0.3").mark_failed("127.0.0.3", 10.0).entries[1].cooling_until == 11.0


def test_mark_ok_and_mark_failed_find_the_address_by_equality_not_by_order() -> None:
    """A healthy address sorting after the one marked comes first, and a resting one without failures counted is
    healed too: mark_ok and mark_failed change exactly the entry whose address equals the one given."""
    book = attrs.evolve(book_of("127.0.0.2", "127.0.0.1", "127.0.0.3"), entries=(
        AddressHealth("127.0.0.2"), AddressHealth("127.0.0.1", failures=2, cooling_until=50.0),
        AddressHealth("127.0.0.3", failures=0, cooling_until=50.0),
    ))  # fmt: skip
    assert book.mark_ok("127.0.0.1").entries[1] == AddressHealth("127.0.0.1")
    assert book.mark_ok("127.0.0.3").entries[2] == AddressHealth("127.0.0.3")
    tired = attrs.evolve(book, entries=(AddressHealth("127.0.0.2", failures=3, cooling_until=50.0), *book.entries[1:]))
    assert tired.mark_failed("127.0.0.1", 10.0).entries[1].failures == 3
    assert tired.mark_failed("127.0.0.3", 10.0).entries[2].failures == 1


@given(books(), times, st.sampled_from([NotSent("refused"), Ambiguous("reset"), WireResponse(201)]))
def test_an_address_not_in_the_book_changes_nothing_not_even_the_rotation(
    book: AddressBook, now: float, result: NotSent | Ambiguous | WireResponse
) -> None:
    unknown = "192.0.2.1"
    assert book.mark_failed(unknown, now) == book
    assert book.mark_ok(unknown) == book
    assert book.record(unknown, result, now) == book
    assert book.pick(now, avoid=unknown) == book.pick(now)


def test_re_resolution_keeps_the_rotation_where_it_was() -> None:
    book = book_of("127.0.0.2", "127.0.0.3", "127.0.0.4")
    _, book = book.pick(0.0)
    same = book.updated(Resolution(("127.0.0.2", "127.0.0.3", "127.0.0.4"), 60.0), 1.0)
    assert same.cursor == 1
    assert same.pick(1.0)[0] == "127.0.0.3"


def test_re_resolution_to_fewer_addresses_wraps_the_rotation_into_the_new_book() -> None:
    book = book_of("127.0.0.2", "127.0.0.3", "127.0.0.4")
    for _ in range(2):
        _, book = book.pick(0.0)
    fewer = book.updated(Resolution(("127.0.0.5", "127.0.0.3"), 60.0), 1.0)
    assert fewer.cursor == 0
    assert [fewer.pick(1.0)[0], fewer.pick(1.0)[1].pick(1.0)[0]] == ["127.0.0.5", "127.0.0.3"]


def test_the_defaults_are_the_documented_ones() -> None:
    """A failing address rests 1 s, doubling up to a minute; DNS is trusted 5 s at least; connections live 5 min."""
    assert attrs.astuple(AddressPolicy()) == (1.0, 60.0, 5.0, 300.0)


def test_the_avoided_address_is_compared_by_value_not_identity() -> None:
    book = book_of("127.0.0.2", "127.0.0.3")
    avoid = ".".join(["127", "0", "0", "2"])  # equal to the book's first address, but another object
    assert book.pick(0.0, avoid=avoid)[0] == "127.0.0.3"


def test_resolve_failed_with_no_minimum_ttl_asks_dns_again_at_once() -> None:
    book = AddressBook.from_resolution(Resolution(("127.0.0.2",), 60.0), 0.0, AddressPolicy(min_ttl=0.0))
    assert book.resolve_failed(30.0).needs_resolve(30.0)


def test_the_cool_down_doubles_until_the_cap_however_small_it_starts() -> None:
    """Not only 64 doublings: a tiny cool-down keeps doubling, and a huge failure count reaches the cap."""
    policy = AddressPolicy(cool_down=1e-300, cool_down_cap=1.0)
    assert policy.rest(100) == 1e-300 * 2.0**99
    assert policy.rest(10**6) == 1.0


def test_addresses_reported_are_compared_by_value_not_identity() -> None:
    book = book_of("127.0.0.2", "127.0.0.3")
    reported = ".".join(["127", "0", "0", "3"])  # equal to the book's second address, but another object
    failed = book.mark_failed(reported, 10.0)
    assert failed.entries[1].failures == 1
    assert failed.mark_ok(".".join(["127", "0", "0", "3"])) == book
