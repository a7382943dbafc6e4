"""The conformance checks every token store must pass: :class:`flowmailer.ports.TokenStore` (MemoryTokenStore)
and :class:`flowmailer.ports.AsyncTokenStore` (AnyioTokenStore), one set of scenarios for both.

The scenarios are written once, as a coroutine that awaits only the store and its own fetches, which never
suspend: the async check runs them under any event loop (trio, anyio, asyncio) and needs none of its API, and the
sync check drives the same coroutine to its end without a loop. Time is a :class:`FakeClock` the check owns and
advances; ``make_store`` builds each fresh store on it. Concurrency (single flight, one fetch per wait) needs
threads or tasks, so each store's own tests cover it, not these checks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from flowmailer.core import AccessToken, AuthenticationError, Credentials, TokenPolicy, TransientError
from flowmailer.ports import AsyncTokenStore, TokenStore
from flowmailer.testing._clock import FakeClock

__all__ = ["check_async_token_store", "check_token_store"]

_T = TypeVar("_T")
_E = TypeVar("_E", bound=BaseException)
_ONE = Credentials("conformance", "client-1", "secret-1")
_TWO = Credentials("conformance", "client-2", "secret-2")
#: Flowmailer's lifetime; with the default policy a token is refreshed 10 s ahead and unused in its last second.
_LIFETIME = 60.0
_POLICY = TokenPolicy(failure_backoff=1.0, failure_backoff_cap=4.0)


class _Fetch:
    """Issues numbered tokens that live 60 s on the check's clock, or raises what the scenario queued."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self.calls = 0
        self.errors: list[BaseException] = []

    async def __call__(self) -> AccessToken:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return AccessToken.issued(f"token-{self.calls}", _LIFETIME, self._clock.now())


async def _raises(kind: type[_E], call: Awaitable[object], what: str) -> _E:
    try:
        await call
    except kind as e:
        return e
    raise AssertionError(f"{what}: no {kind.__name__} was raised")


async def _scenarios(make_store: Callable[[FakeClock, TokenPolicy], AsyncTokenStore]) -> None:
    def fresh() -> tuple[AsyncTokenStore, FakeClock, _Fetch]:
        clock = FakeClock()
        return make_store(clock, _POLICY), clock, _Fetch(clock)

    store, clock, fetch = fresh()
    first = await store.token(_ONE, fetch)
    assert first.value == "token-1", "the token fetched is not the one returned"
    clock.advance(30)
    assert await store.token(_ONE, fetch) == first, "a fresh token was not reused"
    assert fetch.calls == 1, "a fresh token was fetched again"
    assert (await store.token(_TWO, fetch)).value == "token-2", "two credentials share one token"
    assert await store.token(_ONE, fetch) == first, "another credential's fetch replaced this one's token"

    clock.advance(21)  # 9 s left: inside the 10 s refresh-ahead window
    assert (await store.token(_ONE, fetch)).value == "token-3", "the token was not refreshed ahead of expiry"

    store, clock, fetch = fresh()
    first = await store.token(_ONE, fetch)
    clock.advance(59.5)  # half a second left: too close to expiry to send
    assert (await store.token(_ONE, fetch)).value == "token-2", "a token in its last second was used"

    store, clock, fetch = fresh()
    first = await store.token(_ONE, fetch)
    clock.advance(55)
    fetch.errors.append(TransientError("login host down"))
    assert await store.token(_ONE, fetch) == first, "a failed refresh ahead of expiry did not keep the token serving"
    assert await store.token(_ONE, fetch) == first, "the still-valid token stopped serving during the back-off"
    assert fetch.calls == 2, "a refresh was asked again before the failure's back-off ended"
    clock.advance(_POLICY.failure_backoff)
    assert (await store.token(_ONE, fetch)).value == "token-3", "no refresh after the back-off ended"

    store, clock, fetch = fresh()
    fetch.errors.extend([TransientError("login host down"), TransientError("still down")])
    down = await _raises(TransientError, store.token(_ONE, fetch), "a failed fetch without a token")
    again = await _raises(TransientError, store.token(_ONE, fetch), "a second call during the back-off")
    assert str(again) == str(down), "a call during the back-off did not fail as the fetch did"
    assert fetch.calls == 1, "during the back-off the login host was asked again"
    clock.advance(_POLICY.failure_backoff)
    await _raises(TransientError, store.token(_ONE, fetch), "the fetch after the first back-off")
    assert fetch.calls == 2, "the back-off's end did not let one fetch through"
    clock.advance(_POLICY.failure_backoff)
    await _raises(TransientError, store.token(_ONE, fetch), "a call before the doubled back-off ended")
    assert fetch.calls == 2, "the back-off did not double after a second failure in a row"
    clock.advance(_POLICY.failure_backoff)
    assert (await store.token(_ONE, fetch)).value == "token-3", "no fetch after the doubled back-off"
    fetch.errors.append(TransientError("down once more"))
    clock.advance(_LIFETIME)
    await _raises(TransientError, store.token(_ONE, fetch), "an expired token and a failed fetch")
    clock.advance(_POLICY.failure_backoff)
    assert (await store.token(_ONE, fetch)).value == "token-5", "a success did not reset the back-off"

    store, clock, fetch = fresh()
    fetch.errors.append(AuthenticationError(_ONE.client_id, "invalid_client"))
    for _ in range(3):
        refused = await _raises(AuthenticationError, store.token(_ONE, fetch), "refused credentials")
        assert refused.client_id == _ONE.client_id, "the refusal names another client id"
        clock.advance(3600)
    assert fetch.calls == 1, "refused credentials were asked for a token again"
    assert (await store.token(_TWO, fetch)).value == "token-2", "one credential's refusal stopped another"

    store, clock, fetch = fresh()
    first = await store.token(_ONE, fetch)
    store.invalidate(_ONE, first)
    second = await store.token(_ONE, fetch)
    assert second.value == "token-2", "an invalidated token was used again"
    store.invalidate(_ONE, first)  # stale: the store already holds another
    store.invalidate(_TWO, second)  # another credential's: nothing to drop
    assert await store.token(_ONE, fetch) == second, "invalidating a stale token dropped its replacement"
    assert fetch.calls == 2, "a stale invalidation caused a fetch"

    store, clock, fetch = fresh()
    fetch.errors.append(RuntimeError("a bug in the fetch"))
    await _raises(RuntimeError, store.token(_ONE, fetch), "a fetch raising a non-Flowmailer exception")
    assert (await store.token(_ONE, fetch)).value == "token-2", "a broken fetch left a refresh in flight"


async def check_async_token_store(make_store: Callable[[FakeClock, TokenPolicy], AsyncTokenStore]) -> None:
    """Check fresh stores from ``make_store(clock, policy)``; raises AssertionError saying what failed.

    Await it under the event loop the store needs, e.g.
    ``trio.run(check_async_token_store, lambda clock, policy: AnyioTokenStore(clock.now, policy))``.
    """
    await _scenarios(make_store)


def check_token_store(make_store: Callable[[FakeClock, TokenPolicy], TokenStore]) -> None:
    """Check fresh stores from ``make_store(clock, policy)``, e.g. ``check_token_store(MemoryTokenStore)``;
    raises AssertionError saying what failed."""
    _complete(_scenarios(lambda clock, policy: _Awaited(make_store(clock, policy))))


class _Awaited:
    """A sync store seen as an async one: its fetch drives the check's coroutine, which never suspends."""

    def __init__(self, store: TokenStore) -> None:
        self._store = store

    async def token(self, credentials: Credentials, fetch: Callable[[], Awaitable[AccessToken]]) -> AccessToken:
        return self._store.token(credentials, lambda: _complete(_coroutine(fetch)))

    def invalidate(self, credentials: Credentials, token: AccessToken) -> None:
        self._store.invalidate(credentials, token)


async def _coroutine(make: Callable[[], Awaitable[_T]]) -> _T:
    return await make()


def _complete(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine that never suspends to its end, with no event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("the token store awaited something a sync store cannot: it suspended")
