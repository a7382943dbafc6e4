"""AsyncClient over AnyioTransport against FakeFlowmailer: real TLS on loopback addresses, faults injected, under
asyncio and trio (anyio's pytest plugin).

The real clock: the transport's timeouts must not be jumped by a MockClock while the fake (in threads) answers.
Nothing waits except a blackholed connect, which waits out its short connect timeout: the behaviour under test.
The two tests that move time past a deadline use trio's MockClock (moved only by ``clock.jump``) and stay on trio.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import anyio
import pytest
import trio
import trio.testing

from flowmailer.adapters.anyio_token_store import AnyioTokenStore
from flowmailer.adapters.anyio_transport import AnyioTransport
from flowmailer.app.async_client import AsyncClient
from flowmailer.core import (
    AddressPolicy,
    Ambiguous,
    AmbiguousError,
    AttemptFinished,
    CertificateError,
    ConfigurationError,
    DateRange,
    Event,
    Host,
    NotSent,
    RetryPolicy,
    SubmitMessage,
    WireRequest,
    WireResponse,
    interpret_token,
    submit_request,
    token_request,
)
from flowmailer.testing import API_HOST, LOGIN_HOST, FakeFlowmailer, Fault, Mode, StaticResolver
from tests.async_side import WallClock

MESSAGE = SubmitMessage(sender_address="shop@example.com", recipient_address="ann@example.com", text="Hi")


class Attempts:
    def __init__(self) -> None:
        self.events: list[AttemptFinished] = []

    def on_event(self, event: Event) -> None:
        if isinstance(event, AttemptFinished):
            self.events.append(event)


def client(fake: FakeFlowmailer, transport: AnyioTransport, **kwargs: object) -> AsyncClient:
    return AsyncClient(
        fake.client_credentials(),
        transport=transport,
        token_store=AnyioTokenStore(),
        api_url=fake.api_url,
        login_url=fake.login_url,
        resolver=StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses}),
        rng=random.Random(1),
        **kwargs,  # type: ignore[arg-type]
    )


def transport(fake: FakeFlowmailer, **kwargs: object) -> AnyioTransport:
    return AnyioTransport(ssl_context=fake.client_ssl_context(), **kwargs)  # type: ignore[arg-type]


async def serve(fake: FakeFlowmailer, body: Callable[[], Awaitable[None]]) -> None:
    async with fake.serving():
        await body()


@pytest.mark.anyio
async def test_submit_returns_the_message_id_flowmailer_accepted() -> None:
    fake = FakeFlowmailer()

    async def body() -> None:
        async with client(fake, transport(fake)) as c:
            message_id = await c.submit(MESSAGE)
        assert [m.message_id for m in fake.records().accepted] == [message_id]

    await serve(fake, body)


@pytest.mark.anyio
async def test_a_hundred_concurrent_submits_use_at_most_ten_connections_and_one_token() -> None:
    fake = FakeFlowmailer()
    ids: list[str] = []

    async def body() -> None:
        async def one() -> None:
            ids.append(await c.submit(MESSAGE))

        async with client(fake, transport(fake)) as c, anyio.create_task_group() as tasks:
            for _ in range(100):
                tasks.start_soon(one)
        records = fake.records()
        assert sorted(ids) == sorted(m.message_id for m in records.accepted)
        assert len(set(ids)) == 100
        assert records.max_open_connections <= 10
        assert sum(records.token_requests.values()) == 1

    await serve(fake, body)


@pytest.mark.anyio
async def test_pipelining_at_depth_three_pipelines_and_each_submit_gets_its_own_answer() -> None:
    # The first submit is held by the fake, so the next ones are written behind it on the one connection.
    fake = FakeFlowmailer(addresses=("127.0.0.2",), faults=[Fault.delay(0.5, path="submit", at=[0])])
    ids: dict[str, str] = {}

    async def body() -> None:
        async def one(i: int) -> None:
            reference = f"pipelined-{i}"
            ids[f"ref:{reference}"] = await c.submit(MESSAGE.with_client_reference(reference, "ref:"))

        async with client(fake, transport(fake, max_connections=1, pipeline_depth=3)) as c:
            await c.check_credentials()
            async with anyio.create_task_group() as tasks:
                for i in range(12):
                    tasks.start_soon(one, i)
        records = fake.records()
        assert records.pipelined_requests >= 2
        accepted = {m.message_id: [t for t in m.tags if t.startswith("ref:")] for m in records.accepted}
        assert {ref: [ref] for ref in ids} == {ref: accepted[message_id] for ref, message_id in ids.items()}

    await serve(fake, body)


@pytest.mark.anyio
async def test_a_reset_under_pipelining_makes_exactly_the_written_unanswered_requests_ambiguous() -> None:
    # Submit 0 is held, so submits 1 and 2 are written behind it; the fake accepts submit 1 and resets.
    fake = FakeFlowmailer(
        addresses=("127.0.0.2",),
        faults=[Fault.delay(0.5, path="submit", at=[0]), Fault.accept_then_reset(path="submit", at=[1])],
    )

    async def body() -> None:
        t = transport(fake, max_connections=1, pipeline_depth=3)
        login = await t.send(token_request(fake.client_credentials()), fake.login_origin, "127.0.0.2")
        token = interpret_token(login, 0.0)
        results: dict[str, object] = {}

        async def one(i: int) -> None:
            message = MESSAGE.with_client_reference(f"reset-{i}", "ref:")
            request = submit_request(fake.account_id, token, message)  # type: ignore[arg-type]
            results[f"ref:reset-{i}"] = await t.send(request, fake.api_origin, "127.0.0.2")

        async with anyio.create_task_group() as tasks:
            for i in range(3):
                tasks.start_soon(one, i)
        await t.aclose()
        answered = [ref for ref, r in results.items() if isinstance(r, WireResponse)]
        ambiguous = [ref for ref, r in results.items() if isinstance(r, Ambiguous)]
        assert (len(answered), len(ambiguous)) == (1, 2), results
        copies = fake.records().copies_by_reference
        # The answered one and the reset one are held once each; the one behind the reset was never read.
        assert copies[answered[0]] == 1
        assert sorted(copies.get(ref, 0) for ref in ambiguous) == [0, 1]
        assert fake.records().pipelined_requests >= 1

    await serve(fake, body)


@pytest.mark.anyio
async def test_ambiguous_pipelined_submits_reconciled_by_reference_leave_one_copy_each() -> None:
    fake = FakeFlowmailer(
        addresses=("127.0.0.2",),
        faults=[Fault.delay(0.5, path="submit", at=[0]), Fault.accept_then_reset(path="submit", at=[1])],
    )

    async def body() -> None:
        unsure: list[AmbiguousError] = []

        async def one(i: int) -> None:
            try:
                await c.submit(MESSAGE.with_client_reference(f"rec-{i}", "ref:"))
            except AmbiguousError as e:
                unsure.append(e)

        async with client(fake, transport(fake, max_connections=1, pipeline_depth=3)) as c:
            await c.check_credentials()
            async with anyio.create_task_group() as tasks:
                for i in range(3):
                    tasks.start_soon(one, i)
            assert len(unsure) == 2
            for e in unsure:
                assert e.client_reference is not None
                found = [m async for m in c.messages_by_tag(e.client_reference)]
                if not found:
                    await c.submit(MESSAGE.with_client_reference(e.client_reference.removeprefix("ref:"), "ref:"))
        assert fake.records().copies_by_reference == {f"ref:rec-{i}": 1 for i in range(3)}

    await serve(fake, body)


@pytest.mark.anyio
async def test_a_blackholed_address_costs_one_connect_timeout_and_is_then_avoided() -> None:
    fake = FakeFlowmailer()
    attempts = Attempts()

    async def body() -> None:
        fake.set_mode("127.0.0.3", Mode.BLACKHOLE)
        c = client(
            fake, transport(fake, connect_timeout=0.3), address_policy=AddressPolicy(cool_down=60), observer=attempts
        )
        async with c:
            for _ in range(9):
                await c.submit(MESSAGE)
        assert len(fake.records().accepted) == 9
        failed = [e for e in attempts.events if (e.operation, e.address) == ("submit", "127.0.0.3")]
        assert len(failed) == 1
        assert isinstance(failed[0].outcome, NotSent)

    await serve(fake, body)


@pytest.mark.anyio
async def test_a_wrong_certificate_is_refused_and_nothing_is_sent() -> None:
    fake = FakeFlowmailer()

    async def body() -> None:
        fake.set_mode("127.0.0.2", Mode.WRONG_CERTIFICATE)
        t = transport(fake)
        result = await t.send(token_request(fake.client_credentials()), fake.login_origin, "127.0.0.2")
        await t.aclose()
        assert isinstance(result, NotSent), result
        assert "certificate" in result.reason.lower()
        assert fake.records().requests == 0

    await serve(fake, body)


@pytest.mark.anyio
async def test_a_wrong_certificate_everywhere_is_a_ca_bundle_error_after_one_attempt_on_each_address() -> None:
    fake = FakeFlowmailer()
    attempts = Attempts()

    async def body() -> None:
        for address in fake.addresses:
            fake.set_mode(address, Mode.WRONG_CERTIFICATE)
        c = client(fake, transport(fake), observer=attempts, policy=RetryPolicy(max_attempts=20, deadline=3600))
        async with c:
            with pytest.raises(CertificateError) as refused:
                await c.check_credentials()
        assert refused.value.field == "ca_bundle"
        assert sorted(e.address for e in attempts.events) == sorted(fake.addresses)
        assert fake.records().requests == 0

    await serve(fake, body)


def test_plain_http_is_refused() -> None:
    with pytest.raises(ConfigurationError) as e:
        AsyncClient(
            FakeFlowmailer().client_credentials(),
            transport=AnyioTransport(),
            token_store=AnyioTokenStore(),
            api_url="http://api.flowmailer.net",
        )
    assert e.value.field == "api_url"


def test_no_answer_within_the_read_timeout_is_ambiguous() -> None:
    # A MockClock that moves only when told: the request is written for real, then the test moves time past the
    # read timeout while the fake still holds the request.
    fake = FakeFlowmailer(faults=[Fault.delay(600, path="submit")])
    clock = trio.testing.MockClock()
    results: list[object] = []

    async def main() -> None:
        async with fake.serving():
            t = transport(fake, read_timeout=5)
            request = WireRequest("POST", Host.API, f"/{fake.account_id}/messages/submit", body=b"{}")

            async def send() -> None:
                results.append(await t.send(request, fake.api_origin, "127.0.0.2"))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(send)
                await trio.to_thread.run_sync(fake.wait_until, lambda r: r.requests == 1)
                clock.jump(5)
            await t.aclose()

    trio.run(main, clock=clock)
    (result,) = results
    assert isinstance(result, Ambiguous), result
    assert "read timeout" in result.reason


def test_a_connection_reaching_its_maximum_age_still_answers_the_requests_pipelined_on_it() -> None:
    # The first request is held by the fake while two more are written behind it; then the connection ages out.
    fake = FakeFlowmailer(addresses=("127.0.0.2",), faults=[Fault.delay(0.5, at=[0])])
    clock = trio.testing.MockClock()
    results: list[object] = []

    async def main() -> None:
        async with fake.serving():
            t = transport(fake, max_connections=1, pipeline_depth=3, max_connection_age=60, read_timeout=120)
            request = WireRequest("GET", Host.API, f"/{fake.account_id}/messages/x")

            async def send() -> None:
                results.append(await t.send(request, fake.api_origin, "127.0.0.2"))

            async with anyio.create_task_group() as tasks:
                for _ in range(3):
                    tasks.start_soon(send)
                await trio.to_thread.run_sync(fake.wait_until, lambda r: r.requests == 1)
                clock.jump(61)
            assert t.stats().opened == 1
            await t.aclose()

    trio.run(main, clock=clock)
    assert len(results) == 3
    assert all(isinstance(r, WireResponse) for r in results), results


@pytest.mark.anyio
async def test_from_env_builds_the_transport_and_token_store_itself() -> None:
    fake = FakeFlowmailer()

    async def body() -> None:
        credential = fake.credential()
        env = {
            "FLOWMAILER_ACCOUNT_ID": fake.account_id,
            "FLOWMAILER_CLIENT_ID": credential.client_id,
            "FLOWMAILER_CLIENT_SECRET": credential.client_secret,
            "FLOWMAILER_API_URL": fake.api_url,
            "FLOWMAILER_LOGIN_URL": fake.login_url,
            "FLOWMAILER_CA_BUNDLE": str(fake.ca_bundle),
        }
        resolver = StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses})
        async with AsyncClient.from_env(env, resolver=resolver) as c:
            message_id = await c.submit(MESSAGE)
        assert [m.message_id for m in fake.records().accepted] == [message_id]

    await serve(fake, body)


@pytest.mark.anyio
async def test_stats_keep_settled_days_and_report_requests_never_overlap() -> None:
    day = 86400
    now = 1_700_000_000.0
    midnight = now - now % day
    fake = FakeFlowmailer(clock=lambda: now, faults=[Fault.delay(0.05, path="/messagestats;*")])
    old = DateRange(datetime.fromtimestamp(midnight - 30 * day, UTC), datetime.fromtimestamp(midnight - 20 * day, UTC))

    async def body() -> None:
        async with client(fake, transport(fake), clock=WallClock(lambda: now)) as c, anyio.create_task_group() as tasks:
            await c.submit(MESSAGE)
            for _ in range(4):
                tasks.start_soon(functools.partial(c.message_stats, old, interval=day))

    await serve(fake, body)
    records = fake.records()
    assert len(records.reports) == 1  # the first asked; the others waited and got what it kept
    assert records.max_concurrent_reports == 1
