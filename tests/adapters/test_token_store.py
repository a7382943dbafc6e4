from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import attrs
import pytest

from flowmailer.adapters import MemoryTokenStore
from flowmailer.core import AccessToken, AuthenticationError, Credentials, TokenPolicy, TransientError
from flowmailer.ports import TokenStore
from flowmailer.testing import FakeClock, check_token_store

CREDENTIALS = Credentials("acct", "client-1", "s3cret")


class Fetcher:
    """Issues numbered 60-second tokens on the clock, or raises what the test queued."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls = 0
        self.errors: list[Exception] = []

    def __call__(self) -> AccessToken:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return AccessToken.issued(f"token-{self.calls}", 60, self.clock.now())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fetch(clock: FakeClock) -> Fetcher:
    return Fetcher(clock)


def test_a_fresh_token_is_reused(clock: FakeClock, fetch: Fetcher) -> None:
    store: TokenStore = MemoryTokenStore(clock)
    first = store.token(CREDENTIALS, fetch)
    clock.advance(30)
    assert store.token(CREDENTIALS, fetch) is first
    assert fetch.calls == 1


def test_each_credential_has_its_own_token(clock: FakeClock, fetch: Fetcher) -> None:
    store = MemoryTokenStore(clock)
    other = Credentials("acct", "client-2", "other")
    assert store.token(CREDENTIALS, fetch) != store.token(other, fetch)
    assert fetch.calls == 2


def test_the_token_is_refreshed_ahead_of_expiry(clock: FakeClock, fetch: Fetcher) -> None:
    store = MemoryTokenStore(clock)
    store.token(CREDENTIALS, fetch)
    clock.advance(51)
    assert store.token(CREDENTIALS, fetch).value == "token-2"


def test_a_failed_refresh_keeps_the_still_valid_token(
    clock: FakeClock, fetch: Fetcher, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryTokenStore(clock)
    first = store.token(CREDENTIALS, fetch)
    clock.advance(51)
    fetch.errors.append(TransientError("login host down"))
    with caplog.at_level(logging.WARNING, "flowmailer"):
        assert store.token(CREDENTIALS, fetch) is first
    assert "login host down" in caplog.text
    assert store.token(CREDENTIALS, fetch) is first  # the failure's back-off runs: no second request yet
    clock.advance(TokenPolicy().failure_backoff)
    assert store.token(CREDENTIALS, fetch).value == "token-3"


def test_a_failed_fetch_without_a_valid_token_raises(clock: FakeClock, fetch: Fetcher) -> None:
    store = MemoryTokenStore(clock)
    store.token(CREDENTIALS, fetch)
    clock.advance(60)
    fetch.errors.append(TransientError("login host down"))
    with pytest.raises(TransientError):
        store.token(CREDENTIALS, fetch)
    with pytest.raises(TransientError):
        store.token(CREDENTIALS, fetch)  # at once again: the same failure, without asking the login host
    assert fetch.calls == 2
    clock.advance(TokenPolicy().failure_backoff)
    assert store.token(CREDENTIALS, fetch).value == "token-3"


def test_refused_credentials_are_never_fetched_again(clock: FakeClock, fetch: Fetcher) -> None:
    store = MemoryTokenStore(clock)
    fetch.errors.append(AuthenticationError("client-1", "invalid_client"))
    for _ in range(3):
        with pytest.raises(AuthenticationError) as e:
            store.token(CREDENTIALS, fetch)
        assert e.value.client_id == "client-1"
    assert fetch.calls == 1


def test_invalidate_drops_only_the_refused_token(clock: FakeClock, fetch: Fetcher) -> None:
    store = MemoryTokenStore(clock)
    first = store.token(CREDENTIALS, fetch)
    store.invalidate(CREDENTIALS, first)
    second = store.token(CREDENTIALS, fetch)
    store.invalidate(CREDENTIALS, first)
    assert store.token(CREDENTIALS, fetch) is second
    assert fetch.calls == 2


def test_many_threads_needing_a_token_cause_exactly_one_fetch(clock: FakeClock) -> None:
    store = MemoryTokenStore(clock)
    release = threading.Event()
    lock = threading.Lock()
    in_flight = 0
    peak = 0
    calls = 0

    def slow_fetch() -> AccessToken:
        nonlocal in_flight, peak, calls
        with lock:
            calls += 1
            in_flight += 1
            peak = max(peak, in_flight)
        release.wait(timeout=30)
        with lock:
            in_flight -= 1
        return AccessToken.issued("shared", 60, clock.now())

    got: list[AccessToken] = []
    threads = [threading.Thread(target=lambda: got.append(store.token(CREDENTIALS, slow_fetch))) for _ in range(20)]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(timeout=30)
    assert (calls, peak) == (1, 1)
    assert len(got) == 20
    assert {t.value for t in got} == {"shared"}


def test_a_fetch_raising_a_non_flowmailer_exception_leaves_no_refresh_in_flight(
    clock: FakeClock, fetch: Fetcher
) -> None:
    store = MemoryTokenStore(clock)

    def broken() -> AccessToken:
        raise RuntimeError("a bug in the fetch")

    with pytest.raises(RuntimeError):
        store.token(CREDENTIALS, broken)
    got: list[AccessToken] = []
    later = threading.Thread(target=lambda: got.append(store.token(CREDENTIALS, fetch)), daemon=True)
    later.start()
    later.join(timeout=10)  # a deadline, not a wait: the fetch returns at once unless the store hangs
    assert not later.is_alive()
    assert [t.value for t in got] == ["token-1"]


class AskedClock(FakeClock):
    """Says when a given thread first read the time: the store reads it, holding its lock, before it waits."""

    def __init__(self) -> None:
        super().__init__()
        self.waiter: threading.Thread | None = None
        self.waiter_asked = threading.Event()

    def now(self) -> float:
        if threading.current_thread() is self.waiter:
            self.waiter_asked.set()
        return super().now()


def test_a_thread_that_waited_for_a_failed_refresh_gets_its_error_without_fetching_again() -> None:
    """One fetch per wait, apart from the failure's back-off: here there is none, so only the rule holds it."""
    clock = AskedClock()
    store = MemoryTokenStore(clock, TokenPolicy(failure_backoff=0.0, failure_backoff_cap=0.0))
    calls = 0
    failures: list[BaseException] = []

    def failing_fetch() -> AccessToken:
        nonlocal calls
        calls += 1
        if calls == 1:
            clock.waiter = threading.Thread(target=waiter)
            clock.waiter.start()
            assert clock.waiter_asked.wait(timeout=30)  # the waiter holds the store's lock until it waits
        raise TransientError("login host down")

    def waiter() -> None:
        try:
            store.token(CREDENTIALS, failing_fetch)
        except TransientError as e:
            failures.append(e)

    with pytest.raises(TransientError):
        store.token(CREDENTIALS, failing_fetch)
    assert clock.waiter is not None
    clock.waiter.join(timeout=30)
    assert (calls, len(failures)) == (1, 1)


def test_the_memory_token_store_passes_the_conformance_check() -> None:
    check_token_store(MemoryTokenStore)


class Forgetful(MemoryTokenStore):
    """Fetches on every call: what a store without a memory would do."""

    def token(self, credentials: Credentials, fetch: Callable[[], AccessToken]) -> AccessToken:
        return fetch()


class Impatient(MemoryTokenStore):
    """Ignores the failure back-off: every call after a failure asks the login host again."""

    def __init__(self, clock: FakeClock, policy: TokenPolicy) -> None:
        super().__init__(clock, attrs.evolve(policy, failure_backoff=0.0, failure_backoff_cap=0.0))


@pytest.mark.parametrize(
    ("store", "complaint"), [(Forgetful, "a fresh token was not reused"), (Impatient, "during the back-off")]
)
def test_the_conformance_check_fails_a_broken_store(store: type[MemoryTokenStore], complaint: str) -> None:
    with pytest.raises(AssertionError, match=complaint):
        check_token_store(store)
