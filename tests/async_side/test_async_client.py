"""AsyncClient's request loop against a scripted transport: under trio's MockClock where time must pass, under
asyncio and trio both (anyio's pytest plugin) where none does. No test waits for real."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest
import trio
import trio.testing

from flowmailer.adapters.anyio_token_store import AnyioTokenStore
from flowmailer.app.async_client import AsyncClient
from flowmailer.core import (
    Ambiguous,
    AmbiguousError,
    AuthenticationError,
    ConfigurationError,
    Credentials,
    Event,
    NotSent,
    Origin,
    Resolution,
    RetryBudget,
    SubmitMessage,
    TransientError,
    TransportResult,
    WireRequest,
)
from flowmailer.ports import Resolver
from tests.async_side import WallClock
from tests.client.scripted import API, LOGIN, ScriptedTransport, page, status, token_answer
from tests.client.scripted import resolver as scripted_resolver

CREDENTIALS = Credentials("acct", "client-1", "very-secret-value")
MESSAGE = SubmitMessage(sender_address="a@example.com", recipient_address="b@example.com", subject="hi")
EPOCH = 1_700_000_000.0


class AsyncScripted:
    """The sync ScriptedTransport behind a checkpoint, so tasks interleave as over a network."""

    def __init__(self) -> None:
        self.inner = ScriptedTransport()
        self.closed = False

    async def send(self, request: WireRequest, origin: Origin, address: str) -> TransportResult:
        await anyio.lowlevel.checkpoint()
        return self.inner.send(request, origin, address)

    async def aclose(self) -> None:
        self.closed = True


def wall() -> float:
    return EPOCH + anyio.current_time()


def make(transport: AsyncScripted, resolver: Resolver | None = None) -> AsyncClient:
    return AsyncClient(
        CREDENTIALS,
        transport=transport,
        token_store=AnyioTokenStore(wall),
        api_url=f"https://{API}",
        login_url=f"https://{LOGIN}",
        resolver=resolver if resolver is not None else scripted_resolver(),
        clock=WallClock(wall),
        rng=random.Random(7),
    )


@contextlib.asynccontextmanager
async def scripted(resolver: Resolver | None = None) -> AsyncIterator[tuple[AsyncClient, AsyncScripted]]:
    """A client over a fresh scripted transport, closed (and checked closed) at the end of the block."""
    transport = AsyncScripted()
    async with make(transport, resolver) as client:
        yield client, transport
    assert transport.closed


def run(
    body: Callable[[AsyncClient, AsyncScripted], Awaitable[None]], resolver: Resolver | None = None
) -> AsyncScripted:
    """``body`` under trio's MockClock, which jumps whenever every task waits: retry waits and token ages pass
    at once."""
    got: list[AsyncScripted] = []

    async def main() -> None:
        async with scripted(resolver) as (client, transport):
            got.append(transport)
            await body(client, transport)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return got[0]


@pytest.mark.anyio
async def test_fifty_concurrent_submits_share_one_token_fetch() -> None:
    async with scripted() as (client, transport), anyio.create_task_group() as tasks:
        for _ in range(50):
            tasks.start_soon(client.submit, MESSAGE)
    assert len(transport.inner.to("/oauth/token")) == 1
    assert len(transport.inner.to("/messages/submit")) == 50


def test_the_token_is_refreshed_ahead_of_expiry_on_the_mock_clock() -> None:
    async def body(client: AsyncClient, transport: AsyncScripted) -> None:
        transport.inner.queue("/oauth/token", token_answer("tok-1", 60), token_answer("tok-2", 60))
        await client.submit(MESSAGE)
        await trio.sleep(49)  # MockClock: 49 s pass at once; tok-1 has 11 s left, still fresh
        await client.submit(MESSAGE)
        await trio.sleep(2)  # 9 s left: inside the 10 s refresh-ahead window
        await client.submit(MESSAGE)
        await client.submit(MESSAGE)

    transport = run(body)
    tokens = [s.request.header("Authorization") for s in transport.inner.to("/messages/submit")]
    assert tokens == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2", "Bearer tok-2"]
    assert len(transport.inner.to("/oauth/token")) == 2


def test_retry_after_is_waited_out_on_the_mock_clock() -> None:
    async def body(client: AsyncClient, transport: AsyncScripted) -> None:
        transport.inner.queue("/messages/submit", status(503, Retry_After="2"))
        started = trio.current_time()
        await client.submit(MESSAGE)
        assert trio.current_time() - started == pytest.approx(2.0)

    transport = run(body)
    assert len(transport.inner.to("/messages/submit")) == 2


@pytest.mark.anyio
async def test_no_answer_to_a_submit_raises_ambiguous_with_the_reference_tag() -> None:
    async with scripted() as (client, transport):
        transport.inner.queue("/messages/submit", Ambiguous("reset after write"))
        with pytest.raises(AmbiguousError) as e:
            await client.submit(MESSAGE)
        assert e.value.client_reference is not None
        assert e.value.client_reference in transport.inner.to("/messages/submit")[0].request.body.decode()
    assert len(transport.inner.to("/messages/submit")) == 1


def test_an_idempotent_read_without_an_answer_is_sent_again() -> None:
    async def body(client: AsyncClient, transport: AsyncScripted) -> None:
        transport.inner.queue("/messages/abc", Ambiguous("read timeout"), status(200, {"id": "abc"}))
        assert (await client.message("abc")).id == "abc"

    transport = run(body)
    assert len(transport.inner.to("/messages/abc")) == 2


@pytest.mark.anyio
async def test_refused_credentials_are_never_asked_for_again() -> None:
    async with scripted() as (client, transport):
        transport.inner.queue("/oauth/token", status(401, {"error": "invalid_client", "error_description": "Bad"}))
        for _ in range(3):
            with pytest.raises(AuthenticationError):
                await client.submit(MESSAGE)
    assert len(transport.inner.to("/oauth/token")) == 1
    assert transport.inner.to("/messages/submit") == []


def test_persistent_5xx_gives_up_with_a_transient_error_within_the_deadline() -> None:
    async def body(client: AsyncClient, transport: AsyncScripted) -> None:
        transport.inner.queue("/messages/submit", *[status(503)] * 10)
        started = trio.current_time()
        with pytest.raises(TransientError):
            await client.submit(MESSAGE)
        assert trio.current_time() - started < 60.0

    transport = run(body)
    assert len(transport.inner.to("/messages/submit")) == 5


@pytest.mark.anyio
async def test_message_events_and_messages_by_tag_fetch_pages_as_they_are_iterated() -> None:
    async with scripted() as (client, transport):
        event = {"id": "e1", "messageId": "m1", "type": "DELIVERED"}
        transport.inner.queue("/message_events", page([event], next_ref="aa"), page([event, event]))
        sizes = [len(p.items) async for p in client.message_events()]
        assert sizes == [1, 2]
        transport.inner.queue("/messages", page([{"id": "m1"}], next_ref="bb"), page([{"id": "m2"}]))
        assert [m.id async for m in client.messages_by_tag("ref:x")] == ["m1", "m2"]
    ranges = [s.request.header("Range") for s in transport.inner.to("/message_events")]
    assert ranges == ["items=:100", "items=aa:100"]


class GatedResolver:
    """Blocks in ``resolve`` until the test opens the gate: on the event loop's thread it would stall every task."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.inner = scripted_resolver()

    def resolve(self, host: str, port: int) -> Resolution | NotSent:
        self.entered.set()
        if not self.gate.wait(10):
            return NotSent("the gate never opened: the resolver blocked the event loop's thread")
        return self.inner.resolve(host, port)


@pytest.mark.anyio
async def test_the_blocking_resolver_runs_in_a_worker_thread() -> None:
    resolver = GatedResolver()
    async with scripted(resolver) as (client, transport), anyio.create_task_group() as tasks:
        tasks.start_soon(client.submit, MESSAGE)
        await anyio.to_thread.run_sync(resolver.entered.wait)
        resolver.gate.set()  # runs only because the resolver is not holding the event loop's thread
    assert len(transport.inner.to("/messages/submit")) == 1


@pytest.mark.anyio
async def test_invalid_token_refreshes_once_and_resends() -> None:
    async with scripted() as (client, transport):
        transport.inner.queue("/oauth/token", token_answer("tok-1"), token_answer("tok-2"))
        transport.inner.queue("/messages/submit", status(401, {"error": "invalid_token"}))
        await client.submit(MESSAGE)
    tokens = [s.request.header("Authorization") for s in transport.inner.to("/messages/submit")]
    assert tokens == ["Bearer tok-1", "Bearer tok-2"]


class RaisingObserver:
    def on_event(self, event: Event) -> None:
        raise ConnectionError("metrics backend unreachable")


def test_a_raising_observer_neither_hides_the_message_id_nor_stops_retries(caplog: pytest.LogCaptureFixture) -> None:
    transport = AsyncScripted()
    transport.inner.queue("/messages/submit", NotSent("refused"))
    client = AsyncClient(
        CREDENTIALS,
        transport=transport,
        token_store=AnyioTokenStore(wall),
        api_url=f"https://{API}",
        login_url=f"https://{LOGIN}",
        resolver=scripted_resolver(),
        clock=WallClock(wall),
        rng=random.Random(7),
        observer=RaisingObserver(),
    )
    ids: list[str] = []

    async def main() -> None:
        async with client:
            ids.append(await client.submit(MESSAGE))

    with caplog.at_level(logging.ERROR, "flowmailer"):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert ids == ["20211230130407e3b36e2e92fdbefc86"]
    assert len(transport.inner.to("/messages/submit")) == 2
    assert "metrics backend unreachable" in caplog.text


def test_invalid_token_twice_is_transient_not_an_authentication_error() -> None:
    async def body(client: AsyncClient, transport: AsyncScripted) -> None:
        transport.inner.queue("/messages/submit", *[status(401, {"error": "invalid_token"})] * 2)
        with pytest.raises(TransientError, match="credentials themselves were accepted"):
            await client.submit(MESSAGE)
        assert await client.submit(MESSAGE)

    transport = run(body)
    assert len(transport.inner.to("/oauth/token")) == 3


def test_from_env_names_the_missing_variable() -> None:
    with pytest.raises(ConfigurationError) as e:
        AsyncClient.from_env({"FLOWMAILER_ACCOUNT_ID": "acct", "FLOWMAILER_CLIENT_ID": "c"})
    assert e.value.field == "FLOWMAILER_CLIENT_SECRET"


def test_from_env_builds_a_transport_that_trusts_the_ca_bundle(tmp_path: Path) -> None:
    env = {"FLOWMAILER_ACCOUNT_ID": "a", "FLOWMAILER_CLIENT_ID": "c", "FLOWMAILER_CLIENT_SECRET": "s"}
    with pytest.raises(ConfigurationError) as e:
        AsyncClient.from_env({**env, "FLOWMAILER_CA_BUNDLE": str(tmp_path / "missing.pem")})
    assert e.value.field == "ca_bundle"


@pytest.mark.parametrize("setting", [{"ca_bundle": "/ca.pem"}, {"max_connections": 5}])
def test_transport_settings_beside_a_given_transport_are_refused(setting: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError) as e:
        AsyncClient(CREDENTIALS, transport=AsyncScripted(), **setting)  # type: ignore[arg-type]
    assert e.value.field in setting


def test_a_success_refills_the_retry_budget() -> None:
    """The budget starts empty and time refills nothing: only the successes' deposits let a retry through."""
    transport = AsyncScripted()
    budget = RetryBudget(capacity=1.0, refill_per_second=0.0, deposit_per_success=0.5, tokens=0.0)

    async def main() -> None:
        async with AsyncClient(
            CREDENTIALS, transport=transport, token_store=AnyioTokenStore(wall), api_url=f"https://{API}",
            login_url=f"https://{LOGIN}", resolver=scripted_resolver(), clock=WallClock(wall), rng=random.Random(7),
            budget=budget,
        ) as client:  # fmt: skip
            transport.inner.queue("/messages/submit", status(503))
            with pytest.raises(TransientError, match="retry budget empty"):
                await client.submit(MESSAGE)  # the token's success put back 0.5: not a whole retry
            await client.submit(MESSAGE)  # a second success: 1.0
            transport.inner.queue("/messages/submit", status(503))
            await client.submit(MESSAGE)  # retried once, then accepted

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(transport.inner.to("/messages/submit")) == 4
