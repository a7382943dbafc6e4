"""The core's request loop, driven with no sockets: a pure driver performs its effects from a script."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.core import (
    AccessToken,
    AddressPolicy,
    Ambiguous,
    AmbiguousError,
    AskReports,
    AwaitResolution,
    ConfigurationError,
    Credentials,
    DateRange,
    Deliver,
    Effect,
    Emit,
    Engine,
    Fed,
    FlowmailerError,
    ForgetToken,
    GetToken,
    Host,
    Loop,
    NewReference,
    NotSent,
    Origin,
    Resolution,
    Resolve,
    RetryBudget,
    RetryPolicy,
    Send,
    Sleep,
    StatsQuery,
    SubmitMessage,
    Tick,
    TransportResult,
    WireResponse,
)

CREDENTIALS = Credentials("123", "client", "secret")
ORIGINS = {Host.API: Origin("api.flowmailer.test"), Host.LOGIN: Origin("login.flowmailer.test")}
MESSAGE = SubmitMessage(recipient_address="to@example.com", sender_address="from@example.com", subject="hi")
CREATED = WireResponse(
    201, (("Location", "https://api.flowmailer.test/123/messages/20211230130407e3b36e2e92fdbefc86"),)
)
TOKEN = WireResponse(200, (("Content-Type", "application/json"),), b'{"access_token":"t","expires_in":60}')

#: What one attempt can meet: the answers and failures a submit is classified from.
results: st.SearchStrategy[TransportResult] = st.sampled_from(
    [
        CREATED,
        WireResponse(503, ()),
        WireResponse(429, (("Retry-After", "1"),)),
        WireResponse(401, ()),
        WireResponse(400, (("Content-Type", "application/json"),), b'{"allErrors":[]}'),
        NotSent("connection refused"),
        NotSent("certificate did not verify", untrusted=True),
    ]
)
policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(min_value=1, max_value=8),
    deadline=st.floats(min_value=0.5, max_value=120.0),
    base_delay=st.just(0.1),
    cap=st.floats(min_value=0.1, max_value=5.0),
)


@attrs.define
class World:
    """Performs a loop's effects from a script: each Send takes ``duration`` seconds and meets the next result."""

    script: Iterator[TransportResult]
    addresses: tuple[str, ...] = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    duration: float = 0.25
    now: float = 0.0
    token: AccessToken | None = None
    fetches: int = 0
    forgotten: list[AccessToken] = attrs.Factory(list)
    sends: list[Send] = attrs.Factory(list)
    results: list[TransportResult] = attrs.Factory(list)
    effects: list[Effect] = attrs.Factory(list)

    def run(self, engine: Engine, loop: Loop[Any], delivered: list[object] | None = None) -> Any:
        """Drive ``loop`` to its end: its answer; what a listing hands over goes to ``delivered``."""
        fed: Fed | None = None
        try:
            while True:
                effect = next(loop) if fed is None else loop.send(fed)
                if isinstance(effect, Deliver):
                    assert delivered is not None
                    delivered.append(effect.item)
                    value = None
                else:
                    value = self.perform(engine, effect)
                fed = Fed(value, self.now, 1_700_000_000.0 + self.now)
        except StopIteration as stop:
            return stop.value

    def perform(self, engine: Engine, effect: Effect) -> object:
        self.effects.append(effect)
        if isinstance(effect, Send):
            self.sends.append(effect)
            self.now += self.duration
            if effect.request.host is Host.LOGIN:
                return TOKEN
            result = next(self.script, CREATED)
            self.results.append(result)
            return result
        if isinstance(effect, GetToken):
            if self.token is None:
                self.fetches += 1
                self.token = self.run(engine, engine.fetch_token())
            return self.token
        if isinstance(effect, ForgetToken):
            self.forgotten.append(effect.token)
            if self.token == effect.token:
                self.token = None
            return None
        if isinstance(effect, Sleep):
            self.now += effect.seconds
            return None
        if isinstance(effect, Resolve):
            return Resolution(self.addresses, 300.0)
        if isinstance(effect, NewReference):
            return "0123456789abcdef"
        assert isinstance(effect, Tick | Emit), effect
        return None


def engine(policy: RetryPolicy, **kwargs: Any) -> Engine:
    return Engine(CREDENTIALS, ORIGINS, policy=policy, draw=lambda: 0.5, **kwargs)


@given(policies, st.lists(results, max_size=12))
def test_any_sequence_of_outcomes_ends_within_the_policys_attempts_and_deadline(
    policy: RetryPolicy, script: list[TransportResult]
) -> None:
    world = World(iter(script))
    e = engine(policy, budget=RetryBudget(capacity=1000.0))
    with contextlib.suppress(FlowmailerError):  # any ending will do; what is checked is how long it took
        world.run(e, e.submit(MESSAGE))
    attempts = [s for s in world.sends if s.request.host is Host.API]
    assert 1 <= len(attempts) <= policy.max_attempts
    # No attempt starts at or after the deadline, and each is given at most what the deadline leaves.
    assert all(s.request.timeout is not None and s.request.timeout <= policy.deadline for s in attempts)
    starts = _attempt_starts(world)
    assert all(start < policy.deadline for start in starts)


def _attempt_starts(world: World) -> list[float]:
    """When each API attempt started, from the script: the time before its Send."""
    now, starts = 0.0, []
    for effect in world.effects:
        if isinstance(effect, Send):
            if effect.request.host is Host.API:
                starts.append(now)
            now += world.duration
        elif isinstance(effect, Sleep):
            now += effect.seconds
    return starts


@given(policies, st.lists(results, max_size=12))
def test_a_refused_token_is_forgotten_once_and_refreshed_at_most_once(
    policy: RetryPolicy, script: list[TransportResult]
) -> None:
    world = World(iter(script))
    e = engine(policy)
    with contextlib.suppress(FlowmailerError):
        world.run(e, e.submit(MESSAGE))
    assert len(world.forgotten) == len(set(world.forgotten)) <= 1
    assert world.fetches <= 2  # the first token, and one refresh after it was refused


@given(st.lists(st.sampled_from([NotSent("refused"), WireResponse(503, ())]), min_size=1, max_size=6))
def test_a_failed_address_is_not_tried_again_while_another_is_healthy(script: list[TransportResult]) -> None:
    world = World(iter(script))
    e = engine(RetryPolicy(max_attempts=8, deadline=1000.0), budget=RetryBudget(capacity=1000.0))
    world.run(e, e.submit(MESSAGE))
    api = [s.address for s in world.sends if s.request.host is Host.API]
    for previous, result, following in zip(api, world.results, api[1:], strict=False):
        if isinstance(result, NotSent):
            assert following != previous  # two other addresses are healthy: the failed one waits


def test_each_attempt_goes_to_the_address_the_shells_load_says_is_least_busy_and_never_the_failed_one() -> None:
    world = World(iter([NotSent("refused"), CREATED, CREATED]))
    seen: list[Origin] = []

    def load(origin: Origin) -> Mapping[str, int]:
        seen.append(origin)
        return {"10.0.0.1": 2, "10.0.0.2": 3}  # 10.0.0.3 has nothing in flight

    e = engine(RetryPolicy(), load=load)
    world.run(e, e.submit(MESSAGE))  # refused by 10.0.0.3: the retry avoids it and takes the least loaded other
    world.run(e, e.submit(MESSAGE))  # 10.0.0.3 cools down: again the least loaded healthy one
    api = [s.address for s in world.sends if s.request.host is Host.API]
    assert api == ["10.0.0.3", "10.0.0.1", "10.0.0.1"]
    assert set(seen) == {ORIGINS[Host.API], ORIGINS[Host.LOGIN]}  # asked per origin: each has its own addresses


def test_a_shell_that_counts_no_load_keeps_the_rotation() -> None:
    world = World(iter([]))
    e = engine(RetryPolicy(), load=lambda origin: None)
    for _ in range(4):
        world.run(e, e.submit(MESSAGE))
    api = [s.address for s in world.sends if s.request.host is Host.API]
    assert api == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1"]


def test_an_accepted_submit_returns_the_message_id_from_location() -> None:
    world = World(iter([CREATED]))
    e = engine(RetryPolicy())
    assert world.run(e, e.submit(MESSAGE)) == "20211230130407e3b36e2e92fdbefc86"
    assert [type(x).__name__ for x in world.effects if not isinstance(x, Emit | Tick)] == [
        "NewReference",
        "GetToken",
        "Resolve",  # the login host
        "Send",
        "Resolve",  # the API host
        "Send",
    ]


def test_an_unanswered_submit_raises_ambiguous_with_its_reference_and_is_never_resent() -> None:
    world = World(iter([Ambiguous("reset after the request was written")]))
    e = engine(RetryPolicy())
    with pytest.raises(AmbiguousError) as raised:
        world.run(e, e.submit(MESSAGE))
    assert raised.value.client_reference == "ref:0123456789abcdef"
    assert len([s for s in world.sends if s.request.host is Host.API]) == 1


def test_a_call_waits_for_anothers_resolution_and_a_call_abandoned_mid_resolution_releases_the_waiters() -> None:
    e = engine(RetryPolicy())
    first, second = e.fetch_token(), e.fetch_token()
    assert isinstance(next(first), Tick)
    assert isinstance(first.send(Fed(None, 0.0, 0.0)), Resolve)
    assert isinstance(next(second), Tick)
    waiting = second.send(Fed(None, 0.0, 0.0))
    assert waiting == AwaitResolution(Host.LOGIN, 0)
    first.close()  # the shell abandons the resolving call (an error, a cancellation)
    assert e.resolutions == 1  # the waiter's shell sees the change and feeds it on
    assert isinstance(second.send(Fed(None, 0.0, 0.0)), Resolve)  # nobody resolved: it resolves itself


def test_while_one_call_resolves_again_the_others_go_on_with_the_known_addresses() -> None:
    world = World(iter([]))
    e = engine(RetryPolicy(), address_policy=AddressPolicy(min_ttl=0.0))
    world.run(e, e.fetch_token())
    world.now = 10_000.0  # the TTL ran out
    first, second = e.fetch_token(), e.fetch_token()
    next(first)
    assert isinstance(first.send(Fed(None, world.now, 0.0)), Resolve)
    next(second)
    assert isinstance(second.send(Fed(None, world.now, 0.0)), Send)  # the old book serves meanwhile


def test_a_listing_hands_over_each_item_and_a_cursor_that_does_not_advance_is_an_error() -> None:
    event = b'[{"id": "e1", "messageId": "m1", "type": "DELIVERED"}]'
    page = WireResponse(206, (("Next-Range", "items=abc:100"),), event)
    world = World(iter([page, page]))
    e = engine(RetryPolicy())
    delivered: list[object] = []
    with pytest.raises(FlowmailerError, match="message_events"):
        world.run(e, e.message_events().loop, delivered)
    assert len(delivered) == 1  # the first page; the one pointing back at it is not handed over


def test_reports_are_read_and_kept_through_the_shells_store() -> None:
    e = engine(RetryPolicy())
    day = DateRange(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 2, tzinfo=UTC))
    loop = e.message_stats(day)
    assert next(loop) == AskReports("stretches", (StatsQuery(86400, ()),))


def test_an_engine_needs_a_reference_prefix_and_both_origins() -> None:
    with pytest.raises(ConfigurationError, match="reference_prefix"):
        Engine(CREDENTIALS, ORIGINS, reference_prefix="", draw=lambda: 0.0)
    with pytest.raises(ConfigurationError, match="origins"):
        Engine(CREDENTIALS, {Host.API: ORIGINS[Host.API]}, draw=lambda: 0.0)
    assert math.isfinite(RetryPolicy().deadline)


def test_an_engine_that_nobody_observes_yields_no_emit_and_decides_the_same() -> None:
    """A shell with no observer and no debug log says so through ``observed``: no Emit step per attempt, and the
    same attempts, sends and answer as an observed engine."""
    script = [WireResponse(503, ()), CREATED]
    watched, unwatched = World(iter(script)), World(iter(script))
    e = engine(RetryPolicy())
    quiet = engine(RetryPolicy(), observed=lambda: False)
    assert watched.run(e, e.submit(MESSAGE)) == unwatched.run(quiet, quiet.submit(MESSAGE))
    emitted = [x.event for x in watched.effects if isinstance(x, Emit)]
    assert [type(x).__name__ for x in emitted] == ["RequestFinished", "AttemptFinished", "AttemptFinished"]
    assert not any(isinstance(x, Emit) for x in unwatched.effects)
    assert [x for x in watched.effects if not isinstance(x, Emit)] == unwatched.effects


@pytest.mark.parametrize("max_pages", [True, 0, 1.5])
def test_a_tag_search_takes_a_whole_number_of_pages_and_refuses_anything_else(max_pages: object) -> None:
    e = engine(RetryPolicy())
    e.messages_by_tag("ref:x")
    e.messages_by_tag("ref:x", max_pages=1)
    with pytest.raises(ConfigurationError) as caught:
        e.messages_by_tag("ref:x", max_pages=max_pages)  # type: ignore[arg-type]
    assert caught.value.field == "max_pages"
