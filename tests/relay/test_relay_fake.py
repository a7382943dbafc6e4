"""Each relay over its real client, over real TLS, against FakeFlowmailer with faults: one copy of each message.

``Relay`` over ``Client``; ``AsyncRelay`` over ``AsyncClient`` on asyncio and on trio. The relay's time is a
FakeClock, so its retry waits and reconcile delays never make the test wait (the async client's own quick retries,
on the event loop's clock, last a fraction of a second); only the blackholed address costs one short connect
timeout before the address book cools it down.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import cast

import pytest

from flowmailer.adapters import Urllib3Transport
from flowmailer.adapters.anyio_transport import AnyioTransport
from flowmailer.app import Client, Relay, RelayStats
from flowmailer.app.async_client import AsyncClient
from flowmailer.app.async_relay import AsyncRelay
from flowmailer.core import (
    Cause,
    ConfigurationError,
    Credentials,
    OutboxId,
    RelayRules,
    RetryPolicy,
    SubmissionState,
    SubmitMessage,
)
from flowmailer.testing import FakeClock, MemoryOutbox, StaticResolver
from flowmailer.testing._fake import API_HOST, LOGIN_HOST, FakeFlowmailer, Fault, Mode


@pytest.fixture
def fake() -> Iterator[FakeFlowmailer]:
    faults = [
        Fault.status(503, path="messages/submit", probability=0.1),
        Fault.accept_then_reset(path="messages/submit", probability=0.05),
        Fault.expire_token(probability=0.01),
    ]
    with FakeFlowmailer(faults=faults, seed=7).running() as running:
        running.set_mode(running.addresses[2], Mode.BLACKHOLE)
        yield running


def make_client(fake: FakeFlowmailer, clock: FakeClock) -> Client:
    credential = fake.credential("ADMIN")
    return Client(
        Credentials(fake.account_id, credential.client_id, credential.client_secret),
        api_url=fake.api_url,
        login_url=fake.login_url,
        policy=RetryPolicy(max_attempts=2, deadline=10.0, base_delay=0.1, cap=1.0),
        transport=Urllib3Transport(ca_bundle=str(fake.ca_bundle), connect_timeout=0.5, read_timeout=5, clock=clock),
        resolver=StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses}),
        clock=clock,
        rng=random.Random(1),
    )


def enqueue(outbox: MemoryOutbox) -> list[OutboxId]:
    return outbox.enqueue_many(
        SubmitMessage(sender_address="app@example.com", recipient_address=f"user{i}@example.com", subject=f"#{i}")
        for i in range(300)
    )


RULES = RelayRules(backoff=RetryPolicy(base_delay=1.0, cap=10.0), reconcile_delay=5.0)


def assert_each_accepted_once(
    fake: FakeFlowmailer, outbox: MemoryOutbox, ids: list[OutboxId], stats: RelayStats
) -> None:
    refs = {f"ref:{s.client_reference}" for s in map(outbox.status, ids) if s is not None}
    records = fake.records()
    assert outbox.counts()[SubmissionState.ACCEPTED] == 300
    assert records.copies_by_reference == dict.fromkeys(refs, 1)
    assert records.faults.get("accept-then-reset", 0) > 0
    assert stats.reconciled > 0
    assert stats.retries.get(Cause.AMBIGUOUS, 0) >= stats.reconciled
    assert (stats.accepted, stats.dead, stats.duplicates) == (300, 0, 0)
    for outbox_id in ids:
        status = outbox.status(outbox_id)
        assert status is not None
        assert status.message_id in {m.message_id for m in records.accepted}


def test_every_message_reaches_the_fake_exactly_once_despite_faults(fake: FakeFlowmailer) -> None:
    clock = FakeClock()
    outbox = MemoryOutbox(clock)
    ids = enqueue(outbox)
    with make_client(fake, clock) as client:
        stats = Relay(outbox, client, rules=RULES, clock=clock, rng=random.Random(2), idle_wait=0.05).drain()
    assert_each_accepted_once(fake, outbox, ids, stats)


@pytest.mark.anyio
@pytest.mark.parametrize("depth", [1, 4])
async def test_the_async_relay_over_the_async_client_sends_every_message_exactly_once_despite_faults(
    fake: FakeFlowmailer, depth: int
) -> None:
    clock = FakeClock()  # the relay's; the client keeps its waits on the event loop's clock
    outbox = MemoryOutbox(clock)
    ids = enqueue(outbox)
    credential = fake.credential("ADMIN")
    async with AsyncClient(
        Credentials(fake.account_id, credential.client_id, credential.client_secret),
        api_url=fake.api_url,
        login_url=fake.login_url,
        policy=RetryPolicy(max_attempts=2, deadline=10.0, base_delay=0.1, cap=1.0),
        transport=AnyioTransport(
            ssl_context=fake.client_ssl_context(), connect_timeout=0.5, read_timeout=5, pipeline_depth=depth
        ),
        resolver=StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses}),
        rng=random.Random(1),
    ) as client:
        relay = AsyncRelay(
            outbox, client, rules=RULES, clock=clock, rng=random.Random(2), idle_wait=0.05, pipeline_depth=depth
        )
        stats = await relay.drain()
    assert_each_accepted_once(fake, outbox, ids, stats)


@pytest.mark.parametrize("depth", [0, -1])
def test_a_pipeline_depth_below_1_is_refused_naming_the_field(depth: int) -> None:
    clock = FakeClock()
    with pytest.raises(ConfigurationError) as e:
        AsyncRelay(MemoryOutbox(clock), cast("AsyncClient", object()), pipeline_depth=depth)
    assert e.value.field == "pipeline_depth"
