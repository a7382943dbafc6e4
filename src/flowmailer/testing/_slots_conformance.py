"""The conformance suite every :class:`flowmailer.ports.ConnectionSlots` must pass: memory, SQLite and PostgreSQL.

``factory(clock)`` builds a fresh, empty store that reads time from the clock; ``second`` (optional) opens another
handle on the same store, as a second relay process would, so that sharing is checked too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flowmailer.core import ConfigurationError, SlotHolding
from flowmailer.ports import ConnectionSlots
from flowmailer.testing._clock import FakeClock

__all__ = ["SLOT_CHECKS", "SlotsFactory", "check_connection_slots"]

#: Builds a fresh, empty slot store with a limit of 10 that reads time from the given clock.
SlotsFactory = Callable[[FakeClock], ConnectionSlots]
#: One check: the store, the clock, and a way to open another handle on the same store.
SlotCheck = Callable[[ConnectionSlots, FakeClock, Callable[[], ConnectionSlots]], None]

LEASE = 30.0
KEY = "client-1"


def check_connection_slots(
    factory: SlotsFactory,
    checks: Iterable[SlotCheck] | None = None,
    *,
    second: Callable[[ConnectionSlots, FakeClock], ConnectionSlots] | None = None,
) -> None:
    """Run every check (or these), each on a fresh store; raises AssertionError naming the check that failed.

    Without ``second``, "another handle" is the same object (a store in memory has no other)."""
    for check in SLOT_CHECKS if checks is None else checks:
        clock = FakeClock()
        slots = factory(clock)
        opened: list[ConnectionSlots] = []

        def another(
            slots: ConnectionSlots = slots, clock: FakeClock = clock, opened: list[ConnectionSlots] = opened
        ) -> ConnectionSlots:
            if second is None:
                return slots
            opened.append(second(slots, clock))
            return opened[-1]

        try:
            check(slots, clock, another)
        except AssertionError as e:
            raise AssertionError(f"{check.__name__}: {e}") from e
        finally:
            for handle in opened:
                handle.close()
            slots.close()


def _raises(action: Callable[[], object], field: str) -> None:
    try:
        action()
    except ConfigurationError as e:
        named = e.field
    else:
        raise AssertionError(f"expected a ConfigurationError naming {field!r}")
    assert named == field, f"the error names {named!r}, not {field!r}"


def check_never_more_than_the_limit_in_all(
    slots: ConnectionSlots, clock: FakeClock, another: Callable[[], ConnectionSlots]
) -> None:
    other = another()
    assert slots.acquire(KEY, "a", 6, LEASE) == SlotHolding(6, 1)
    assert other.acquire(KEY, "b", 10, LEASE) == SlotHolding(4, 2), "b did not get exactly what was left"
    assert slots.acquire(KEY, "c", 10, LEASE) == SlotHolding(0, 3), "c got slots past the limit"
    assert slots.acquire(KEY, "a", 10, LEASE).held == 6, "a got slots past the limit"
    assert slots.acquire(KEY, "a", 2, LEASE) == SlotHolding(2, 3), "a did not give back what it held above 2"
    assert other.acquire(KEY, "c", 10, LEASE) == SlotHolding(4, 3), "c did not get what a gave back"
    assert slots.acquire(KEY, "b", 1, LEASE) == SlotHolding(1, 3)
    assert slots.acquire(KEY, "b", 0, LEASE) == SlotHolding(0, 3), "an owner holding none is not counted"


def check_keys_are_separate_limits(
    slots: ConnectionSlots, clock: FakeClock, another: Callable[[], ConnectionSlots]
) -> None:
    assert slots.acquire(KEY, "a", 10, LEASE).held == 10
    assert another().acquire("client-2", "a", 10, LEASE) == SlotHolding(10, 1), "one credential's slots hold another's"
    assert slots.acquire("client-2", "b", 3, LEASE) == SlotHolding(0, 2)


def check_an_expired_lease_gives_its_slots_back(
    slots: ConnectionSlots, clock: FakeClock, another: Callable[[], ConnectionSlots]
) -> None:
    other = another()
    assert slots.acquire(KEY, "dead", 10, LEASE).held == 10
    clock.advance(LEASE - 1)
    assert other.acquire(KEY, "b", 10, LEASE) == SlotHolding(0, 2), "slots came back before the lease ran out"
    clock.advance(1)
    assert other.acquire(KEY, "b", 10, LEASE) == SlotHolding(10, 1), "an expired lease kept its slots or its owner"
    assert slots.renew(KEY, "dead", LEASE) == SlotHolding(0, 1), "a lease that ran out was renewed"
    assert slots.acquire(KEY, "dead", 10, LEASE) == SlotHolding(0, 2)


def check_renew_keeps_the_slots_past_the_first_lease(
    slots: ConnectionSlots, clock: FakeClock, another: Callable[[], ConnectionSlots]
) -> None:
    assert slots.acquire(KEY, "a", 7, LEASE).held == 7
    clock.advance(LEASE - 1)
    assert slots.renew(KEY, "a", LEASE) == SlotHolding(7, 1)
    clock.advance(LEASE - 1)
    assert another().acquire(KEY, "b", 10, LEASE) == SlotHolding(3, 2), "renewed slots were handed to another"
    assert slots.renew(KEY, "a", LEASE) == SlotHolding(7, 2)
    assert slots.renew(KEY, "nobody", LEASE) == SlotHolding(0, 2), "an owner that never asked holds slots"


def check_an_owner_holding_none_counts_while_its_lease_lasts(
    slots: ConnectionSlots, clock: FakeClock, another: Callable[[], ConnectionSlots]
) -> None:
    assert slots.acquire(KEY, "a", 10, LEASE).held == 10
    clock.advance(LEASE / 3)
    assert another().acquire(KEY, "b", 5, LEASE) == SlotHolding(0, 2)
    clock.advance(LEASE / 3)
    assert slots.renew(KEY, "a", LEASE) == SlotHolding(10, 2), "an owner waiting for slots was not counted"
    clock.advance(LEASE * 2 / 3)
    assert slots.renew(KEY, "a", LEASE) == SlotHolding(10, 1), "an owner whose lease ran out is still counted"


def check_release_gives_every_slot_back_and_the_owner_leaves(
    slots: ConnectionSlots, clock: FakeClock, another: Callable[[], ConnectionSlots]
) -> None:
    other = another()
    assert slots.acquire(KEY, "a", 8, LEASE).held == 8
    assert other.acquire(KEY, "b", 8, LEASE) == SlotHolding(2, 2)
    slots.release(KEY, "a")
    assert other.acquire(KEY, "b", 8, LEASE) == SlotHolding(8, 1), "released slots did not come back at once"
    assert slots.renew(KEY, "a", LEASE) == SlotHolding(0, 1)
    slots.release(KEY, "a")  # again, and for an owner that holds nothing: no error


def check_bad_arguments_are_refused_and_change_nothing(
    slots: ConnectionSlots, clock: FakeClock, another: Callable[[], ConnectionSlots]
) -> None:
    assert slots.acquire(KEY, "a", 3, LEASE).held == 3
    _raises(lambda: slots.acquire(KEY, "a", 11, LEASE), "count")
    _raises(lambda: slots.acquire(KEY, "a", -1, LEASE), "count")
    _raises(lambda: slots.acquire(KEY, "a", True, LEASE), "count")
    _raises(lambda: slots.acquire("", "a", 1, LEASE), "key")
    _raises(lambda: slots.acquire(KEY, "", 1, LEASE), "owner")
    _raises(lambda: slots.acquire(KEY, "a", 1, 0.0), "lease")
    _raises(lambda: slots.acquire(KEY, "a", 1, float("nan")), "lease")
    _raises(lambda: slots.renew(KEY, "a", -1.0), "lease")
    _raises(lambda: slots.release("", "a"), "key")
    assert slots.renew(KEY, "a", LEASE) == SlotHolding(3, 1)


#: Every check, in the order check_connection_slots runs them; a test suite may parametrize over them.
SLOT_CHECKS: tuple[SlotCheck, ...] = (
    check_never_more_than_the_limit_in_all,
    check_keys_are_separate_limits,
    check_an_expired_lease_gives_its_slots_back,
    check_renew_keeps_the_slots_past_the_first_lease,
    check_an_owner_holding_none_counts_while_its_lease_lasts,
    check_release_gives_every_slot_back_and_the_owner_leaves,
    check_bad_arguments_are_refused_and_change_nothing,
)
