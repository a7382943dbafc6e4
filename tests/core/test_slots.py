"""A relay's share of its credential's connection slots: fair, within the limit, and never used past its lease."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.core import (
    MAX_SLOTS,
    AcquireSlots,
    ConfigurationError,
    RenewSlots,
    SlotHolding,
    SlotRequest,
    SlotShare,
)


class ModelStore:
    """The slot store's rules, as the conformance suite checks them of every adapter: per owner, a count and a
    lease; an expired lease is gone; never more than ``limit`` held in all."""

    def __init__(self, limit: int = MAX_SLOTS) -> None:
        self.limit = limit
        self.rows: dict[str, tuple[int, float]] = {}

    def _expire(self, now: float) -> None:
        self.rows = {o: (n, until) for o, (n, until) in self.rows.items() if until > now}

    def ask(self, owner: str, request: SlotRequest, now: float, lease: float) -> SlotHolding:
        mine = self.rows.get(owner)
        self._expire(now)
        if isinstance(request, RenewSlots):
            if owner not in self.rows:
                assert mine is None or mine[1] <= now
                return SlotHolding(0, len(self.rows))
            held = self.rows[owner][0]
        else:
            others = sum(n for o, (n, _) in self.rows.items() if o != owner)
            current = self.rows.get(owner, (0, 0.0))[0]
            held = request.count if request.count <= current else min(request.count, max(current, self.limit - others))
        self.rows[owner] = (held, now + lease)
        return SlotHolding(held, len(self.rows))

    def held(self, now: float) -> int:
        return sum(n for n, until in self.rows.values() if until > now)


def test_one_relay_alone_gets_what_it_wants_and_renews() -> None:
    share = SlotShare(want=10, lease=30.0, margin=6.0)
    assert share.cap(0.0) == 0
    assert share.request(0) == AcquireSlots(10)
    share = share.answered(0.0, SlotHolding(10, 1))
    assert share.cap(0.0) == 10
    assert share.next_at == pytest.approx(8.0)  # a third of what the margin leaves
    assert not share.due(7.9)
    assert share.due(8.0)
    assert share.request(10) == RenewSlots()


def test_the_cap_falls_to_zero_a_margin_before_the_lease_could_be_handed_on() -> None:
    share = SlotShare(want=4, lease=30.0, margin=6.0).answered(100.0, SlotHolding(4, 2))
    share = share.failed(108.0).failed(116.0).failed(123.0)
    assert share.cap(123.9) == 4
    assert share.wake_at(123.0) == 124.0
    assert share.cap(124.0) == 0
    assert share.wake_at(124.0) == share.next_at == 124.0  # and then the next request only: no spinning
    # A later answer (to a request sent after the lease ran out) gives fresh slots, leased from when it was asked.
    share = share.answered(131.0, SlotHolding(3, 2))
    assert share.cap(131.0) == 3


def test_a_failure_asks_again_soon_without_waiting_a_whole_renewal() -> None:
    share = SlotShare(want=10, lease=60.0, margin=15.0).answered(0.0, SlotHolding(10, 1))
    assert share.failed(15.0).next_at == 16.0


def test_a_relay_above_its_share_gives_back_only_what_its_connections_no_longer_use() -> None:
    share = SlotShare(want=10, lease=30.0, margin=6.0).answered(0.0, SlotHolding(10, 1))
    share = share.answered(8.0, SlotHolding(10, 3))  # two more relays asked meanwhile
    assert share.fair() == 4
    assert share.cap(8.0) == 4  # the transport is capped first: idle connections close, busy ones as they return
    assert share.request(7) == AcquireSlots(7)
    assert share.request(2) == AcquireSlots(4)


def test_a_starved_relay_keeps_asking_for_its_share() -> None:
    share = SlotShare(want=10, lease=30.0, margin=6.0).answered(0.0, SlotHolding(0, 2))
    assert share.cap(0.0) == 0
    assert share.wake_at(0.0) == share.next_at
    assert share.request(0) == AcquireSlots(5)


def test_released_holds_nothing() -> None:
    share = SlotShare(want=3).answered(0.0, SlotHolding(3, 1)).released()
    assert (share.held, share.cap(0.0), share.valid_until) == (0, 0, -math.inf)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"want": 0}, "SlotShare.want"),
        ({"want": 11}, "SlotShare.want"),
        ({"want": 5, "limit": 4}, "SlotShare.want"),
        ({"want": 1, "limit": 11}, "SlotShare.limit"),
        ({"want": 1, "lease": 0.0}, "SlotShare.lease"),
        ({"want": 1, "lease": math.nan}, "SlotShare.lease"),
        ({"want": 1, "margin": 0.0}, "SlotShare.margin"),
        ({"want": 1, "lease": 10.0, "margin": 10.0}, "SlotShare.margin"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(fields: dict[str, float], named: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        SlotShare(**fields)  # type: ignore[arg-type]
    assert e.value.field == named


def test_a_store_that_hands_out_more_than_the_limit_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"SlotHolding\.held"):
        SlotShare(want=10).answered(0.0, SlotHolding(11, 1))


#: Relay i does something at a time: asks the store (with some of its connections open), is killed, or hangs.
actions = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3),  # which relay
        st.sampled_from(["ask", "ask", "ask", "kill", "hang"]),
        st.floats(min_value=0.0, max_value=10.0),  # time passing before it
        st.integers(min_value=0, max_value=10),  # connections it has open (before capping)
    ),
    max_size=80,
)


@given(actions, st.lists(st.integers(min_value=1, max_value=10), min_size=4, max_size=4))
def test_relays_never_use_more_than_the_limit_together(
    steps: list[tuple[int, str, float, int]], wants: list[int]
) -> None:
    """Relays asking, dying and hanging at random: at every moment the connections they may use add up to at most
    the limit, and each relay's cap is within what the store says it holds (or, hung, within its old lease)."""
    store = ModelStore()
    lease, margin = 30.0, 6.0
    shares = {f"r{i}": SlotShare(want=w, lease=lease, margin=margin) for i, w in enumerate(wants)}
    now = 0.0
    for relay, action, passing, open_wanted in steps:
        now += passing
        owner = f"r{relay}"
        if action == "kill":
            shares[owner] = SlotShare(want=wants[relay], lease=lease, margin=margin)  # restarted, its rows left behind
        elif action == "ask":
            share = shares[owner]
            open_now = min(open_wanted, share.cap(now))  # capped first: what is over the cap closes as it returns
            shares[owner] = share.answered(now, store.ask(owner, share.request(open_now), now, lease))
        # "hang": it does nothing, and time passes for everyone
        assert sum(s.cap(now) for s in shares.values()) <= MAX_SLOTS
        for o, s in shares.items():
            if s.cap(now):
                row = store.rows.get(o)
                assert row is not None
                assert row[0] >= s.cap(now)
                assert row[1] >= now + margin


@given(st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=10))
def test_relays_that_keep_renewing_settle_on_fair_shares_of_the_whole_limit(relays: int, want: int) -> None:
    store = ModelStore()
    shares = [SlotShare(want=want, lease=30.0, margin=6.0) for _ in range(relays)]
    now = 0.0
    for _ in range(4):
        for i, share in enumerate(shares):
            shares[i] = share.answered(now, store.ask(f"r{i}", share.request(0), now, 30.0))
        now += shares[0].renew_every
    caps = [s.cap(now) for s in shares]
    assert sum(caps) == min(MAX_SLOTS, relays * want)
    assert max(caps) - min(caps) <= -(-MAX_SLOTS // relays)
