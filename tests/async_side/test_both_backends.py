"""Issue 11's "done when": one script, unchanged, under ``anyio.run(..., backend="asyncio")`` and ``"trio"``.

It starts FakeFlowmailer and submits 300 messages concurrently through one ``flowmailer.AsyncClient`` (its default
transport and token store) in an anyio task group: 300 accepted, no duplicates, by the fake's own records.
"""

from __future__ import annotations

import anyio
import pytest

import flowmailer
from flowmailer import SubmitMessage
from flowmailer.testing import API_HOST, LOGIN_HOST, FakeFlowmailer, StaticResolver

COUNT = 300


async def submit_all(fake: FakeFlowmailer) -> list[str]:
    ids: list[str] = []
    async with fake.serving():
        client = flowmailer.AsyncClient(
            fake.client_credentials(),
            api_url=fake.api_url,
            login_url=fake.login_url,
            ca_bundle=str(fake.ca_bundle),
            resolver=StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses}),
        )

        async def one(n: int) -> None:
            message = SubmitMessage(sender_address="shop@example.com", recipient_address=f"c{n}@example.com", text="Hi")
            ids.append(await client.submit(message.with_client_reference(f"done-when-{n}", "ref:")))

        async with client, anyio.create_task_group() as tasks:
            for n in range(COUNT):
                tasks.start_soon(one, n)
    return ids


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_three_hundred_concurrent_submits_are_accepted_once_each_on_either_backend(backend: str) -> None:
    fake = FakeFlowmailer()
    ids = anyio.run(submit_all, fake, backend=backend)
    records = fake.records()
    assert len(ids) == len(set(ids)) == COUNT
    assert sorted(ids) == sorted(m.message_id for m in records.accepted)
    assert records.copies_by_reference == {f"ref:done-when-{n}": 1 for n in range(COUNT)}
    assert records.max_open_connections <= 10
