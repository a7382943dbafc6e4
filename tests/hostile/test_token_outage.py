"""The login host down: a failed token refresh is not asked again by every request at once, but after a back-off
that doubles (1, 2, 4, 8 s ...), once for the whole client, on a fake clock."""

from __future__ import annotations

import random

import pytest

from flowmailer.adapters import Urllib3Transport
from flowmailer.adapters.anyio_token_store import AnyioTokenStore
from flowmailer.adapters.anyio_transport import AnyioTransport
from flowmailer.app import Client
from flowmailer.app.async_client import AsyncClient
from flowmailer.core import RetryPolicy, SubmitMessage, TransientError
from flowmailer.testing import API_HOST, LOGIN_HOST, FakeClock, FakeFlowmailer, Fault, StaticResolver

MESSAGE = SubmitMessage(sender_address="a@example.com", recipient_address="b@example.com", subject="hi", text="x")
#: 100 submits, a tenth of a second apart: 10 s of the login host answering 503.
SUBMITS, STEP = 100, 0.1
#: Token requests at 0, 1, 3 and 7 s (one more for rounding); before, one per submit.
MOST_TOKEN_REQUESTS = 5
#: Each failed refresh is one request, so the count is the back-off's alone.
ONE_ATTEMPT = RetryPolicy(max_attempts=1)


def _fake(clock: FakeClock) -> FakeFlowmailer:
    return FakeFlowmailer(faults=[Fault.status(503, path="oauth/token")], clock=clock.now)


def test_the_sync_client_backs_off_after_a_failed_token_refresh() -> None:
    clock = FakeClock()
    fake = _fake(clock)
    with fake.running():
        transport = Urllib3Transport(ssl_context=fake.client_ssl_context(), clock=clock)
        resolver = StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses})
        with Client(
            fake.client_credentials(),
            api_url=fake.api_url,
            login_url=fake.login_url,
            policy=ONE_ATTEMPT,
            transport=transport,
            resolver=resolver,
            clock=clock,
            rng=random.Random(1),
        ) as client:
            for _ in range(SUBMITS):
                with pytest.raises(TransientError):
                    client.submit(MESSAGE)
                clock.advance(STEP)
        records = fake.records()
    assert records.requests <= MOST_TOKEN_REQUESTS
    assert records.accepted == ()


@pytest.mark.anyio
async def test_the_async_client_backs_off_after_a_failed_token_refresh() -> None:
    clock = FakeClock()
    fake = _fake(clock)
    failures: list[TransientError] = []

    async with (
        fake.serving(),
        AsyncClient(
            fake.client_credentials(),
            api_url=fake.api_url,
            login_url=fake.login_url,
            policy=ONE_ATTEMPT,
            transport=AnyioTransport(ssl_context=fake.client_ssl_context()),
            token_store=AnyioTokenStore(clock.now),
            resolver=StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses}),
            clock=clock,
            rng=random.Random(1),
        ) as client,
    ):
        for _ in range(SUBMITS):
            try:
                await client.submit(MESSAGE)
            except TransientError as e:
                failures.append(e)
            clock.advance(STEP)

    records = fake.records()
    assert len(failures) == SUBMITS
    assert records.requests <= MOST_TOKEN_REQUESTS
