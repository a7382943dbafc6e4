"""The Client's request loop against a scripted transport: every decision comes from the core, every attempt is seen."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from pathlib import Path

import pytest

from flowmailer.app import Client
from flowmailer.core import (
    Accepted,
    Ambiguous,
    AmbiguousError,
    AttemptFinished,
    AuthenticationError,
    ConfigurationError,
    Credentials,
    Event,
    NotSent,
    Origin,
    RejectedError,
    RequestFinished,
    RetryBudget,
    RetryPolicy,
    SubmitMessage,
    TransientError,
)
from flowmailer.ports import Observer
from flowmailer.testing import FakeClock

from .scripted import API, LOGIN, ScriptedTransport, page, resolver, status, token_answer

CREDENTIALS = Credentials("acct", "client-1", "very-secret-value")
SECRET = "very-secret-value"
TOKEN = "tok-1"


class Events:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        self.events.append(event)


def message(**kwargs: object) -> SubmitMessage:
    return SubmitMessage(sender_address="a@example.com", recipient_address="b@example.com", subject="hi", **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def transport() -> ScriptedTransport:
    return ScriptedTransport()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> Events:
    return Events()


def make_client(
    transport: ScriptedTransport, clock: FakeClock, observer: Observer | None = None, budget: RetryBudget | None = None
) -> Client:
    return Client(
        CREDENTIALS,
        api_url=f"https://{API}",
        login_url=f"https://{LOGIN}",
        transport=transport,
        resolver=resolver(),
        clock=clock,
        rng=random.Random(7),
        observer=observer,
        budget=budget,
    )


@pytest.fixture
def client(transport: ScriptedTransport, clock: FakeClock, events: Events) -> Client:
    return make_client(transport, clock, events)


def test_submit_returns_the_id_from_the_201_location(client: Client, transport: ScriptedTransport) -> None:
    assert client.submit(message()) == "20211230130407e3b36e2e92fdbefc86"
    (token,) = transport.to("/oauth/token")
    (submit,) = transport.to("/messages/submit")
    assert token.origin.host == LOGIN
    assert submit.origin.host == API
    assert submit.request.header("Authorization") == f"Bearer {TOKEN}"


def test_submit_tags_the_message_with_a_client_reference(client: Client, transport: ScriptedTransport) -> None:
    client.submit(message())
    client.submit(message(tags=["mine", "ref:given"]))
    first, second = (s.request.body.decode() for s in transport.to("/messages/submit"))
    assert '"ref:' in first
    assert '"ref:given"' in second
    assert second.count("ref:") == 1


def test_the_token_is_fetched_once_for_many_submits(client: Client, transport: ScriptedTransport) -> None:
    for _ in range(20):
        client.submit(message())
    assert len(transport.to("/oauth/token")) == 1


def test_not_sent_goes_at_once_to_another_address(
    client: Client, transport: ScriptedTransport, clock: FakeClock
) -> None:
    transport.queue("/messages/submit", NotSent("connection refused"))
    client.submit(message())
    first, second = transport.to("/messages/submit")
    assert first.address != second.address
    assert all(s == 0 for s in clock.slept)


def test_a_transport_that_counts_its_requests_in_flight_gets_each_submit_at_its_least_loaded_address(
    clock: FakeClock,
) -> None:
    class Counting(ScriptedTransport):
        def in_flight(self, origin: Origin) -> Mapping[str, int]:
            return {"127.0.0.2": 4, "127.0.0.3": 1, "127.0.0.4": 2} if origin.host == API else {}

    counting, plain = Counting(), ScriptedTransport()
    for t in (counting, plain):
        with make_client(t, clock) as c:
            for _ in range(3):
                c.submit(message())
    assert [s.address for s in counting.to("/messages/submit")] == ["127.0.0.3"] * 3
    assert [s.address for s in plain.to("/messages/submit")] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


@pytest.mark.parametrize("code", [503, 429])
def test_retry_after_is_waited_out_on_the_clock(
    client: Client, transport: ScriptedTransport, clock: FakeClock, code: int
) -> None:
    transport.queue("/messages/submit", status(code, Retry_After="2"))
    assert client.submit(message())
    assert clock.slept == [2.0]
    first, second = transport.to("/messages/submit")
    assert first.address != second.address


def test_a_decimal_retry_after_is_waited_out_too(
    client: Client, transport: ScriptedTransport, clock: FakeClock
) -> None:
    transport.queue("/messages/submit", status(503, Retry_After="1.5"))
    assert client.submit(message())
    assert clock.slept == [1.5]


def test_a_retry_sends_the_same_body(client: Client, transport: ScriptedTransport) -> None:
    transport.queue("/messages/submit", status(500))
    client.submit(message())
    first, second = transport.to("/messages/submit")
    assert first.request.body == second.request.body


def test_check_credentials_fetches_a_token_and_shows_only_its_expiry(
    client: Client, transport: ScriptedTransport, clock: FakeClock
) -> None:
    transport.queue("/oauth/token", token_answer(TOKEN, expires_in=60))
    assert client.check_credentials() == clock.now() + 60
    assert len(transport.to("/oauth/token")) == 1
    assert transport.to("/messages/submit") == []


def test_check_credentials_raises_authentication_error_for_refused_credentials(
    client: Client, transport: ScriptedTransport
) -> None:
    transport.queue("/oauth/token", status(401, {"error": "invalid_client"}))
    with pytest.raises(AuthenticationError) as e:
        client.check_credentials()
    assert SECRET not in str(e.value)


def test_a_400_is_raised_at_once_with_the_field_name(client: Client, transport: ScriptedTransport) -> None:
    errors = {"allErrors": [{"code": "invalid", "defaultMessage": "bad address", "field": "recipientAddress"}]}
    transport.queue("/messages/submit", status(400, errors))
    with pytest.raises(RejectedError) as e:
        client.submit(message())
    assert e.value.status == 400
    assert [d.field for d in e.value.errors] == ["recipientAddress"]
    assert "recipientAddress" in str(e.value)
    assert len(transport.to("/messages/submit")) == 1


def test_no_answer_after_writing_raises_ambiguous_with_the_reference_tag(
    client: Client, transport: ScriptedTransport
) -> None:
    transport.queue("/messages/submit", Ambiguous("reset after write"))
    with pytest.raises(AmbiguousError) as e:
        client.submit(message())
    assert e.value.client_reference is not None
    assert e.value.client_reference.startswith("ref:")
    assert e.value.client_reference in transport.to("/messages/submit")[0].request.body.decode()
    assert len(transport.to("/messages/submit")) == 1


@pytest.mark.parametrize("code", [502, 504])
def test_a_gateway_error_to_a_submit_raises_ambiguous_and_is_not_resent(
    client: Client, transport: ScriptedTransport, code: int
) -> None:
    transport.queue("/messages/submit", status(code))
    with pytest.raises(AmbiguousError) as e:
        client.submit(message())
    assert e.value.client_reference is not None
    assert len(transport.to("/messages/submit")) == 1


def test_an_idempotent_read_without_an_answer_is_sent_again(client: Client, transport: ScriptedTransport) -> None:
    transport.queue("/messages/abc", Ambiguous("read timeout"), status(200, {"id": "abc"}))
    assert client.message("abc").id == "abc"
    assert len(transport.to("/messages/abc")) == 2


def test_invalid_token_refreshes_once_and_resends(client: Client, transport: ScriptedTransport) -> None:
    transport.queue("/oauth/token", token_answer("tok-1"), token_answer("tok-2"))
    transport.queue("/messages/submit", status(401, {"error": "invalid_token"}))
    client.submit(message())
    first, second = transport.to("/messages/submit")
    assert first.request.header("Authorization") == "Bearer tok-1"
    assert second.request.header("Authorization") == "Bearer tok-2"


def test_invalid_token_twice_is_transient_not_an_authentication_error(
    client: Client, transport: ScriptedTransport
) -> None:
    transport.queue("/messages/submit", *[status(401, {"error": "invalid_token"})] * 2)
    with pytest.raises(TransientError, match="credentials themselves were accepted"):
        client.submit(message())
    assert len(transport.to("/oauth/token")) == 2
    assert client.submit(message())  # nothing halts: the next submit fetches a new token and goes through
    assert len(transport.to("/oauth/token")) == 3


def test_a_token_request_that_gave_up_names_the_login_host(transport: ScriptedTransport, clock: FakeClock) -> None:
    from flowmailer.testing import StaticResolver

    client = Client(
        CREDENTIALS,
        api_url=f"https://{API}",
        login_url=f"https://{LOGIN}",
        policy=RetryPolicy(max_attempts=2),
        transport=transport,
        resolver=StaticResolver({API: ["127.0.0.2"]}),
        clock=clock,
        rng=random.Random(1),
    )
    with pytest.raises(TransientError, match=f"the token request to {LOGIN} gave up") as e:
        client.submit(message())
    assert "did not accept" not in str(e.value)
    assert transport.sent == []


def test_refused_credentials_are_never_asked_for_again(client: Client, transport: ScriptedTransport) -> None:
    transport.queue("/oauth/token", status(401, {"error": "invalid_client", "error_description": "Bad credentials"}))
    for _ in range(3):
        with pytest.raises(AuthenticationError) as e:
            client.submit(message())
        assert "client-1" in str(e.value)
        assert SECRET not in str(e.value)
    assert len(transport.to("/oauth/token")) == 1
    assert transport.to("/messages/submit") == []


def test_persistent_5xx_gives_up_with_a_transient_error(
    transport: ScriptedTransport, clock: FakeClock, events: Events
) -> None:
    client = Client(
        CREDENTIALS,
        api_url=f"https://{API}",
        login_url=f"https://{LOGIN}",
        policy=RetryPolicy(max_attempts=3),
        transport=transport,
        resolver=resolver(),
        clock=clock,
        rng=random.Random(1),
    )
    transport.queue("/messages/submit", *[status(503)] * 3)
    with pytest.raises(TransientError, match="attempts exhausted"):
        client.submit(message())
    assert len(transport.to("/messages/submit")) == 3


def test_an_unresolvable_host_is_a_transient_error(transport: ScriptedTransport, clock: FakeClock) -> None:
    from flowmailer.testing import StaticResolver

    client = Client(
        CREDENTIALS,
        api_url=f"https://{API}",
        login_url=f"https://{LOGIN}",
        policy=RetryPolicy(max_attempts=2),
        transport=transport,
        resolver=StaticResolver(),
        clock=clock,
        rng=random.Random(1),
    )
    with pytest.raises(TransientError, match="no records"):
        client.submit(message())
    assert transport.sent == []


def test_the_observer_sees_every_attempt(client: Client, transport: ScriptedTransport, events: Events) -> None:
    transport.queue("/messages/submit", NotSent("refused"))
    client.submit(message())
    attempts = [e for e in events.events if isinstance(e, AttemptFinished)]
    assert [(e.operation, type(e.outcome), e.attempt) for e in attempts] == [
        ("submit", NotSent, 1),
        ("submit", Accepted, 2),
    ]
    assert [e.address for e in attempts] == [s.address for s in transport.to("/messages/submit")]
    (token,) = [e for e in events.events if isinstance(e, RequestFinished)]
    assert (token.operation, token.status) == ("token", 200)


def test_neither_secret_nor_token_is_logged(
    client: Client, transport: ScriptedTransport, caplog: pytest.LogCaptureFixture
) -> None:
    transport.queue("/messages/submit", NotSent("refused"), status(401, {"error": "invalid_token"}))
    with caplog.at_level(logging.DEBUG):
        client.submit(message())
    assert caplog.records
    assert SECRET not in caplog.text
    assert TOKEN not in caplog.text
    assert "tok-" not in caplog.text


def test_with_no_observer_each_attempt_is_still_logged_at_debug_level(
    transport: ScriptedTransport, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The engine yields no Emit when nobody observes; the debug log counts as someone (``--verbose``)."""
    client = make_client(transport, clock)
    transport.queue("/messages/submit", NotSent("refused"))
    with caplog.at_level(logging.DEBUG, "flowmailer"):
        client.submit(message())
    attempts = [r.getMessage() for r in caplog.records if " attempt " in r.getMessage()]
    assert any(m.startswith("submit attempt 1 to ") and "refused" in m for m in attempts), attempts
    assert any(m.startswith("submit attempt 2 to ") and "accepted" in m for m in attempts), attempts
    assert any(m.startswith("token attempt 1 to ") and "answered 200" in m for m in attempts), attempts


def test_message_events_fetches_pages_only_as_they_are_iterated(client: Client, transport: ScriptedTransport) -> None:
    event = {"id": "e1", "messageId": "m1", "type": "DELIVERED"}
    transport.queue("/message_events", page([event], next_ref="aa"), page([event, event], next_ref="bb"), page([]))
    pages = client.message_events()
    first = next(pages)
    assert len(transport.to("/message_events")) == 1
    assert first.next_range is not None
    assert first.next_range.reference == "aa"
    rest = list(pages)
    assert [len(p.items) for p in rest] == [2, 0]
    ranges = [s.request.header("Range") for s in transport.to("/message_events")]
    assert ranges == ["items=:100", "items=aa:100", "items=bb:100"]


def test_messages_by_tag_yields_every_page(client: Client, transport: ScriptedTransport) -> None:
    transport.queue("/messages", page([{"id": "m1"}], next_ref="aa"), page([{"id": "m2"}]))
    assert [m.id for m in client.messages_by_tag("ref:x")] == ["m1", "m2"]
    assert all("/tag/ref%3Ax/messages" in s.request.path for s in transport.to("/messages"))


def test_from_env_names_the_missing_variable() -> None:
    with pytest.raises(ConfigurationError) as e:
        Client.from_env({"FLOWMAILER_ACCOUNT_ID": "acct", "FLOWMAILER_CLIENT_ID": "c"})
    assert e.value.field == "FLOWMAILER_CLIENT_SECRET"


def test_from_env_reads_credentials_and_urls(transport: ScriptedTransport) -> None:
    env = {
        "FLOWMAILER_ACCOUNT_ID": "acct",
        "FLOWMAILER_CLIENT_ID": "client-1",
        "FLOWMAILER_CLIENT_SECRET": SECRET,
        "FLOWMAILER_API_URL": f"https://{API}",
        "FLOWMAILER_LOGIN_URL": f"https://{LOGIN}",
    }
    with Client.from_env(env, transport=transport, resolver=resolver(), clock=FakeClock()) as client:
        client.submit(message())
    assert transport.closed
    assert {s.origin.host for s in transport.sent} == {API, LOGIN}


def test_from_env_builds_a_transport_that_trusts_the_ca_bundle(tmp_path: Path) -> None:
    env = {"FLOWMAILER_ACCOUNT_ID": "a", "FLOWMAILER_CLIENT_ID": "c", "FLOWMAILER_CLIENT_SECRET": "s"}
    with pytest.raises(ConfigurationError) as e:
        Client.from_env({**env, "FLOWMAILER_CA_BUNDLE": str(tmp_path / "missing.pem")})
    assert e.value.field == "ca_bundle"
    Client.from_env(env).close()


def test_plain_http_is_refused() -> None:
    with pytest.raises(ConfigurationError) as e:
        Client(CREDENTIALS, api_url="http://api.flowmailer.net")
    assert e.value.field == "api_url"


@pytest.mark.parametrize("setting", [{"ca_bundle": "/ca.pem"}, {"max_connections": 5}])
def test_transport_settings_beside_a_given_transport_are_refused(
    transport: ScriptedTransport, setting: dict[str, object]
) -> None:
    with pytest.raises(ConfigurationError) as e:
        Client(CREDENTIALS, transport=transport, **setting)  # type: ignore[arg-type]
    assert e.value.field in setting


class RaisingObserver:
    def on_event(self, event: Event) -> None:
        raise ConnectionError("metrics backend unreachable")


def test_a_raising_observer_neither_hides_the_message_id_nor_stops_retries(
    transport: ScriptedTransport, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(transport, clock, observer=RaisingObserver())
    transport.queue("/messages/submit", NotSent("refused"))
    with caplog.at_level(logging.ERROR, "flowmailer"):
        assert client.submit(message()) == "20211230130407e3b36e2e92fdbefc86"
    assert len(transport.to("/messages/submit")) == 2
    assert "metrics backend unreachable" in caplog.text
    assert SECRET not in caplog.text


def test_a_success_refills_the_retry_budget(transport: ScriptedTransport, clock: FakeClock) -> None:
    """The budget starts empty and time refills nothing: only the successes' deposits let a retry through."""
    budget = RetryBudget(capacity=1.0, refill_per_second=0.0, deposit_per_success=0.5, tokens=0.0)
    client = make_client(transport, clock, budget=budget)
    transport.queue("/messages/submit", status(503))
    with pytest.raises(TransientError, match="retry budget empty"):
        client.submit(message())  # the token's success put back 0.5: not a whole retry
    client.submit(message())  # a second success: 1.0
    transport.queue("/messages/submit", status(503))
    client.submit(message())  # retried once, then accepted
    assert len(transport.to("/messages/submit")) == 4
