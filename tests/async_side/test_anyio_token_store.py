"""AnyioTokenStore: single flight with anyio primitives, under trio's MockClock (and under asyncio where no time
needs to pass); the core's TokenPolicy decides."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest
import trio
import trio.testing

from flowmailer.adapters.anyio_token_store import AnyioTokenStore
from flowmailer.core import AccessToken, AuthenticationError, Credentials, TokenPolicy, TransientError
from flowmailer.testing import check_async_token_store

CREDENTIALS = Credentials("acct", "client-1", "secret")


class Fetcher:
    """Issues tokens that live 60 s from trio's clock; waits a second on trio's clock to be a real round trip."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls = 0
        self.fail = fail

    async def __call__(self) -> AccessToken:
        self.calls += 1
        await trio.sleep(1)
        if self.fail is not None:
            raise self.fail
        return AccessToken(f"tok-{self.calls}", trio.current_time() + 60)


def run(body: Callable[[AnyioTokenStore], Awaitable[None]]) -> None:
    async def main() -> None:
        await body(AnyioTokenStore(trio.current_time))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_many_tasks_without_a_token_share_one_fetch() -> None:
    fetch = Fetcher()
    got: list[str] = []

    async def body(store: AnyioTokenStore) -> None:
        async def one() -> None:
            got.append((await store.token(CREDENTIALS, fetch)).value)

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one)

    run(body)
    assert (fetch.calls, set(got)) == (1, {"tok-1"})


def test_a_failed_refresh_ahead_of_expiry_keeps_the_current_token_serving() -> None:
    async def body(store: AnyioTokenStore) -> None:
        first = await store.token(CREDENTIALS, Fetcher())
        await trio.sleep(55)  # 4 s left: inside the refresh-ahead window, still usable
        failing = Fetcher(TransientError("login host down"))
        assert await store.token(CREDENTIALS, failing) == first
        assert failing.calls == 1

    run(body)


def test_waiters_for_a_refresh_that_fails_get_its_error_without_fetching_again() -> None:
    fetch = Fetcher(TransientError("login host down"))
    errors: list[BaseException] = []

    async def body(store: AnyioTokenStore) -> None:
        async def one() -> None:
            try:
                await store.token(CREDENTIALS, fetch)
            except TransientError as e:
                errors.append(e)

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(one)

    run(body)
    assert (fetch.calls, len(errors)) == (1, 5)


def test_refused_credentials_are_never_fetched_again() -> None:
    fetch = Fetcher(AuthenticationError("client-1", "Bad credentials"))

    async def body(store: AnyioTokenStore) -> None:
        for _ in range(3):
            with pytest.raises(AuthenticationError):
                await store.token(CREDENTIALS, fetch)

    run(body)
    assert fetch.calls == 1


def test_an_invalidated_token_is_fetched_again_unless_already_replaced() -> None:
    fetch = Fetcher()

    async def body(store: AnyioTokenStore) -> None:
        first = await store.token(CREDENTIALS, fetch)
        store.invalidate(CREDENTIALS, first)
        second = await store.token(CREDENTIALS, fetch)
        store.invalidate(CREDENTIALS, first)  # stale: the store already holds another
        assert await store.token(CREDENTIALS, fetch) == second

    run(body)
    assert fetch.calls == 2


def test_a_fetch_raising_a_non_flowmailer_exception_leaves_no_refresh_in_flight() -> None:
    async def body(store: AnyioTokenStore) -> None:
        with pytest.raises(RuntimeError):
            await store.token(CREDENTIALS, Fetcher(RuntimeError("a bug in the fetch")))
        with trio.fail_after(5):  # MockClock time: a store stuck waiting for the failed refresh would time out
            assert (await store.token(CREDENTIALS, Fetcher())).value == "tok-1"

    run(body)


@pytest.mark.anyio
async def test_many_tasks_share_one_fetch_on_either_backend() -> None:
    store = AnyioTokenStore(anyio.current_time)
    gate = anyio.Event()
    calls: list[int] = []
    got: list[str] = []

    async def fetch() -> AccessToken:
        calls.append(1)
        await gate.wait()  # every other task arrives while this fetch is in flight
        return AccessToken("tok-1", anyio.current_time() + 60)

    async def one() -> None:
        got.append((await store.token(CREDENTIALS, fetch)).value)

    async with anyio.create_task_group() as tasks:
        for _ in range(20):
            tasks.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    assert (len(calls), got) == (1, ["tok-1"] * 20)


def test_one_fetch_per_wait_holds_without_a_failure_back_off() -> None:
    """With no back-off after a failure, only the one-fetch-per-wait rule keeps the waiters from fetching."""
    fetch = Fetcher(TransientError("login host down"))
    errors: list[BaseException] = []

    async def main() -> None:
        store = AnyioTokenStore(trio.current_time, TokenPolicy(failure_backoff=0.0, failure_backoff_cap=0.0))

        async def one() -> None:
            try:
                await store.token(CREDENTIALS, fetch)
            except TransientError as e:
                errors.append(e)

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(one)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert (fetch.calls, len(errors)) == (1, 5)


def test_the_anyio_token_store_passes_the_conformance_check() -> None:
    trio.run(check_async_token_store, lambda clock, policy: AnyioTokenStore(clock.now, policy))
