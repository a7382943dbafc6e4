"""Tokens shorter than the refresh margin: refreshed once per most of their lifetime, not on every request.

Flowmailer's tokens live 60 s; a server handing out 2 s tokens used to get a token request with nearly every
request (the fixed 10 s margin was longer than the token). Time is a FakeClock the fake shares.
"""

from __future__ import annotations

import random

import pytest

from flowmailer.adapters import Urllib3Transport
from flowmailer.adapters.anyio_token_store import AnyioTokenStore
from flowmailer.adapters.anyio_transport import AnyioTransport
from flowmailer.app import Client
from flowmailer.app.async_client import AsyncClient
from flowmailer.core import SubmitMessage
from flowmailer.testing import API_HOST, LOGIN_HOST, FakeClock, FakeFlowmailer, StaticResolver

MESSAGE = SubmitMessage(sender_address="a@example.com", recipient_address="b@example.com", subject="hi", text="x")
#: 100 submits, a tenth of a second apart: 10 s of 2 s tokens.
SUBMITS, STEP, LIFETIME = 100, 0.1, 2
#: One token per 80 % of a lifetime (the default refresh_fraction is 0.2), and the first one.
MOST_TOKENS = int(SUBMITS * STEP / (0.8 * LIFETIME)) + 2


def test_the_sync_client_refreshes_a_short_token_once_per_most_of_its_lifetime() -> None:
    clock = FakeClock()
    fake = FakeFlowmailer(token_lifetime=LIFETIME, clock=clock.now)
    with fake.running():
        transport = Urllib3Transport(ssl_context=fake.client_ssl_context(), clock=clock)
        resolver = StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses})
        with Client(
            fake.client_credentials(),
            api_url=fake.api_url,
            login_url=fake.login_url,
            transport=transport,
            resolver=resolver,
            clock=clock,
            rng=random.Random(1),
        ) as client:
            for _ in range(SUBMITS):
                client.submit(MESSAGE)
                clock.advance(STEP)
        records = fake.records()
    assert len(records.accepted) == SUBMITS
    assert sum(records.token_requests.values()) <= MOST_TOKENS


@pytest.mark.anyio
async def test_the_async_client_refreshes_a_short_token_once_per_most_of_its_lifetime() -> None:
    clock = FakeClock()
    fake = FakeFlowmailer(token_lifetime=LIFETIME, clock=clock.now)

    async with (
        fake.serving(),
        AsyncClient(
            fake.client_credentials(),
            api_url=fake.api_url,
            login_url=fake.login_url,
            transport=AnyioTransport(ssl_context=fake.client_ssl_context()),
            token_store=AnyioTokenStore(clock.now),
            resolver=StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses}),
            clock=clock,
            rng=random.Random(1),
        ) as client,
    ):
        for _ in range(SUBMITS):
            await client.submit(MESSAGE)
            clock.advance(STEP)

    records = fake.records()
    assert len(records.accepted) == SUBMITS
    assert sum(records.token_requests.values()) <= MOST_TOKENS
