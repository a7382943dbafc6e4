"""A relay sharing its credential's connection slots: never more sends at once than the slots it holds (times its
pipeline depth, for the async relay), more as others give theirs back, and a dead relay's slots taken up once its
lease runs out. Each relay kind (threaded, async on asyncio and trio), in memory, on a fake clock, with the relay
tests' client; the other relays are rows the test writes to the slot store itself."""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio
import pytest

from flowmailer.app import SlotKeeper
from flowmailer.app.async_relay import AsyncSlotKeeper
from flowmailer.core import OutboxError, SlotHolding, SubmissionState
from flowmailer.testing import FakeClock, MemoryConnectionSlots, MemoryOutbox
from tests.relay.kinds import AnyRelay, make_relay
from tests.relay.test_relay import RULES, WAIT, FakeClient, enqueue

KEY = "client-1"
#: The async relays' pipeline depth here: each slot carries two sends at once.
DEPTH = 2


class FakeCap:
    """The transport's side: every cap it was given, and no connection open (the fake client opens none)."""

    def __init__(self) -> None:
        self.limits: list[int] = []

    def limit_connections(self, limit: int) -> int:
        self.limits.append(limit)
        return 0


class FakeAsyncCap(FakeCap):
    """The async transport's side, likewise."""

    async def limit_connections(self, limit: int) -> int:  # type: ignore[override]
        self.limits.append(limit)
        return 0


Keeper = SlotKeeper | AsyncSlotKeeper


def until(condition: Callable[[], bool]) -> None:
    """Wait for another thread with a deadline (never a sleep to let something happen)."""
    tick = threading.Event()
    for _ in range(2000):
        if condition():
            return
        tick.wait(0.005)
    raise AssertionError("the condition never held within 10 s")


def keeper_for(
    kind: str, slots: MemoryConnectionSlots, clock: FakeClock, lease: float = 90.0
) -> tuple[Keeper, FakeCap]:
    """The keeper for ``kind``'s relay, over a fake transport of its kind."""
    if kind == "threaded":
        cap = FakeCap()
        return SlotKeeper(slots, KEY, cap, clock=clock, lease=lease), cap
    async_cap = FakeAsyncCap()
    return AsyncSlotKeeper(slots, KEY, async_cap, clock=clock, lease=lease), async_cap


def depth_of(kind: str) -> int:
    return 1 if kind == "threaded" else DEPTH


def step(keeper: Keeper, clock: FakeClock) -> None:
    """One round now, on the clock as it is, from the test's thread; returns once it is done."""
    if isinstance(keeper, SlotKeeper):
        keeper.step()
        return
    keeper.poll()  # the keeper's task takes its round on the relay's loop
    until(lambda: keeper.share is not None and keeper.share.next_at > clock.monotonic())


def relay(outbox: MemoryOutbox, client: FakeClient, clock: FakeClock, keeper: Keeper, kind: str) -> AnyRelay:
    depth = {} if kind == "threaded" else {"pipeline_depth": DEPTH}
    return make_relay(
        outbox, client, rules=RULES, clock=clock, owner="relay", lease=300.0, slots=keeper, batch_size=10, **depth
    )


def test_a_relay_sends_no_more_at_once_than_the_slots_it_holds_and_more_as_they_come_free(relay_kind: str) -> None:
    clock = FakeClock()
    outbox = MemoryOutbox(clock)
    enqueue(outbox, 40)
    slots = MemoryConnectionSlots(clock)
    assert slots.acquire(KEY, "other", 6, 90.0) == SlotHolding(6, 1)  # another relay on the credential
    gate = threading.Event()
    client = FakeClient(gate)  # every send waits at the gate: sends pile up as far as the relay lets them
    depth = depth_of(relay_kind)
    keeper, cap = keeper_for(relay_kind, slots, clock, lease=90.0)
    r = relay(outbox, client, clock, keeper, relay_kind)
    runner = threading.Thread(target=r.drain)
    runner.start()
    for _ in range(4 * depth):
        assert client.started.acquire(timeout=WAIT)
    until(lambda: r.stats().sending == 10 * depth)  # every sender took a claim; six slots' worth wait for one
    assert client.in_flight == 4 * depth
    assert cap.limits[-1] == 4  # connections: one per slot, each carrying up to ``depth`` sends
    slots.release(KEY, "other")
    for _ in range(2):  # short of its fair share, it asks again within a second: for five (one of two owners),
        clock.advance(1.0)  # then, told it is alone now, for ten
        step(keeper, clock)
    for _ in range(6 * depth):
        assert client.started.acquire(timeout=WAIT)
    assert client.in_flight == 10 * depth
    assert cap.limits[-1] == 10
    gate.set()
    runner.join(WAIT)
    assert not runner.is_alive()
    assert client.most_in_flight == 10 * depth
    assert outbox.counts()[SubmissionState.ACCEPTED] == 40
    assert cap.limits[-1] == 0  # stopped: nothing may stay open
    assert slots.renew(KEY, "relay", 90.0) == SlotHolding(0, 0)  # and its slots were given back


def test_a_dead_relays_slots_come_back_when_its_lease_runs_out(relay_kind: str) -> None:
    clock = FakeClock()
    outbox = MemoryOutbox(clock)
    enqueue(outbox, 20)
    slots = MemoryConnectionSlots(clock)
    assert slots.acquire(KEY, "killed", 10, 90.0) == SlotHolding(10, 1)  # then it was SIGKILLed
    client = FakeClient()
    keeper, cap = keeper_for(relay_kind, slots, clock, lease=90.0)
    r = relay(outbox, client, clock, keeper, relay_kind)
    runner = threading.Thread(target=r.drain)
    runner.start()
    until(lambda: r.stats().sending == min(20, 10 * depth_of(relay_kind)))  # every sender took a claim, and waits
    assert keeper.share is not None
    assert (keeper.share.held, keeper.share.owners) == (0, 2)
    assert cap.limits[-1] == 0
    assert sum(client.sends.values()) == 0
    clock.advance(90.0)  # the killed relay's lease runs out; the survivor's next round takes its slots
    step(keeper, clock)
    runner.join(WAIT)
    assert not runner.is_alive()
    assert max(cap.limits) >= 5  # five at first (one of two owners, as far as it knew), then maybe all ten
    assert outbox.counts()[SubmissionState.ACCEPTED] == 20


class BrokenSlots(MemoryConnectionSlots):
    """A slot store whose database refuses this relay (a missing permission, say)."""

    def acquire(self, key: str, owner: str, count: int, lease: float) -> SlotHolding:
        raise OutboxError("permission denied for table flowmailer_connection_slots")


def test_a_slot_store_that_cannot_answer_at_start_stops_the_relay_before_any_send(relay_kind: str) -> None:
    clock = FakeClock()
    outbox = MemoryOutbox(clock)
    enqueue(outbox, 3)
    client = FakeClient()
    keeper, _ = keeper_for(relay_kind, BrokenSlots(clock), clock)
    with pytest.raises(OutboxError, match="permission denied"):
        relay(outbox, client, clock, keeper, relay_kind).run()
    assert client.credential_checks == 0
    assert outbox.counts()[SubmissionState.QUEUED] == 3


class FlakySlots(MemoryConnectionSlots):
    """A slot store whose database stops answering while ``failing``."""

    failing = False

    def acquire(self, key: str, owner: str, count: int, lease: float) -> SlotHolding:
        if self.failing:
            raise OutboxError("the database does not answer")
        return super().acquire(key, owner, count, lease)

    def renew(self, key: str, owner: str, lease: float) -> SlotHolding:
        if self.failing:
            raise OutboxError("the database does not answer")
        return super().renew(key, owner, lease)


def test_a_relay_whose_slot_store_stops_answering_closes_its_connections_a_margin_before_its_lease_ends() -> None:
    """Nobody else may take the slots before the lease ends; by then none of this relay's connections is open."""
    clock = FakeClock()
    slots = FlakySlots(clock)
    cap = FakeCap()
    keeper = SlotKeeper(slots, KEY, cap, clock=clock, lease=90.0, margin=30.0)
    keeper.start("relay", 10)
    try:
        assert cap.limits[-1] == 10
        slots.failing = True
        clock.advance(59.0)
        keeper.step()  # renewals fail: the slots still serve
        assert cap.limits[-1] == 10
        clock.advance(1.0)  # 30 s before the lease ends
        keeper.step()
        assert cap.limits[-1] == 0
        slots.failing = False
        clock.advance(1.0)
        keeper.step()
        assert cap.limits[-1] == 10
    finally:
        keeper.stop()
    assert cap.limits[-1] == 0


@pytest.mark.anyio
async def test_an_async_keeper_whose_store_stops_answering_caps_connections_and_sends_to_zero_likewise() -> None:
    """The async keeper takes the same rounds (the store in worker threads); its sends are slots x depth."""
    clock = FakeClock()
    slots = FlakySlots(clock)
    cap = FakeAsyncCap()
    keeper = AsyncSlotKeeper(slots, KEY, cap, clock=clock, lease=90.0, margin=30.0)
    await keeper.start("relay", 10, depth=DEPTH)
    try:
        assert (cap.limits[-1], keeper._allowed) == (10, 10 * DEPTH)
        slots.failing = True
        clock.advance(59.0)
        await keeper.step()  # renewals fail: the slots still serve
        assert cap.limits[-1] == 10
        clock.advance(1.0)  # 30 s before the lease ends
        await keeper.step()
        assert (cap.limits[-1], keeper._allowed) == (0, 0)
        turned = anyio.Event()

        async def send() -> None:
            async with keeper.turn():
                turned.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(send)
            await anyio.wait_all_tasks_blocked()
            assert not turned.is_set()  # no place for a send: its turn waits
            slots.failing = False
            clock.advance(1.0)
            await keeper.step()
            assert cap.limits[-1] == 10
            await turned.wait()  # and goes once the store answers again
    finally:
        await keeper.stop()
    assert cap.limits[-1] == 0
    assert slots.renew(KEY, "relay", 90.0) == SlotHolding(0, 0)  # its slots were given back
