from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import parse_qs, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.core import (
    JSON_CONTENT_TYPE,
    MAX_TAG_PAGES,
    MEDIA_TYPE,
    SMALL_ANSWER_LIMIT,
    Accepted,
    AccessToken,
    Ambiguous,
    Credentials,
    CredentialsRejected,
    DataSet,
    DateRange,
    ErrorDetail,
    EventType,
    Host,
    Message,
    MessageEvent,
    NotSent,
    Origin,
    Outcome,
    Page,
    ProtocolError,
    ReferenceRange,
    Rejected,
    Sample,
    SortField,
    SortOrder,
    Stats,
    StatsQuery,
    SubmitMessage,
    TokenInvalid,
    Transient,
    TransportResult,
    WireResponse,
    interpret_one,
    interpret_page,
    interpret_stats,
    interpret_token,
    message_events_request,
    message_from_json,
    message_request,
    message_stats_request,
    message_to_json,
    messages_request,
    next_page,
    parse_retry_after,
    simulate_request,
    submit_request,
    tag_messages_request,
    token_request,
)
from flowmailer.core import (
    classify_submit as classify_submit_to,
)

TOKEN = AccessToken("tok", 1060.0)
MESSAGE = SubmitMessage(sender_address="shop@example.com", recipient_address="jane@example.org", subject="Hi")
JAN = DateRange(datetime(2021, 1, 1, tzinfo=UTC), datetime(2021, 2, 1, tzinfo=UTC))
LOCATION = "https://api.flowmailer.net/123/messages/20211230130407e3b36e2e92fdbefc86"
NOW = 1_700_000_000.0
API_ORIGIN = Origin("api.flowmailer.net")
ID = "20211230130407e3b36e2e92fdbefc86"


def classify_submit(result: TransportResult, *, now: float | None = None) -> Outcome:
    """A submit to account 123 at api.flowmailer.net."""
    return classify_submit_to(result, origin=API_ORIGIN, account_id="123", now=now)


def response(status: int, body: object = None, **headers: str) -> WireResponse:
    raw = b"" if body is None else json.dumps(body).encode()
    return WireResponse(status, tuple((k.replace("_", "-"), v) for k, v in headers.items()), raw)


# --- requests -------------------------------------------------------------------------------------------------


def test_token_request_is_a_form_post_to_the_login_host() -> None:
    r = token_request(Credentials("123", "client id", "se&cret"))
    assert (r.method, r.host, r.path) == ("POST", Host.LOGIN, "/oauth/token")
    assert r.header("Content-Type") == "application/x-www-form-urlencoded"
    assert parse_qs(r.body.decode()) == {
        "client_id": ["client id"],
        "client_secret": ["se&cret"],
        "grant_type": ["client_credentials"],
        "scope": ["api"],
    }


def test_submit_request_is_a_non_idempotent_json_post_with_the_bearer_token() -> None:
    r = submit_request("123", TOKEN, MESSAGE)
    assert (r.method, r.host, r.path, r.idempotent) == ("POST", Host.API, "/123/messages/submit", False)
    assert r.header("Accept") == MEDIA_TYPE
    assert r.header("Content-Type") == JSON_CONTENT_TYPE == "application/vnd.flowmailer.v1.12+json;charset=UTF-8"
    assert r.header("Authorization") == "Bearer tok"
    assert message_from_json(r.body) == MESSAGE


def test_submit_request_takes_the_message_already_serialised() -> None:
    assert submit_request("123", TOKEN, message_to_json(MESSAGE)) == submit_request("123", TOKEN, MESSAGE)


def test_a_token_or_submit_answer_may_hold_64_kib_and_a_tag_search_reads_100_pages() -> None:
    """The documented limits: 64 KiB for an answer of nothing, a token or a list of errors; 100 pages of 100
    messages for a search by client reference."""
    credentials = Credentials("123", "client id", "secret")
    limits = {token_request(credentials).answer_limit, submit_request("123", TOKEN, MESSAGE).answer_limit}
    assert limits == {SMALL_ANSWER_LIMIT} == {65_536}
    assert MAX_TAG_PAGES == 100


def test_simulate_request_adds_the_source_id_and_may_be_repeated() -> None:
    r = simulate_request("123", TOKEN, MESSAGE, "77")
    assert (r.method, r.path, r.idempotent) == ("POST", "/123/messages/simulate", True)
    assert json.loads(r.body)["sourceId"] == "77"


def test_simulate_request_without_source_id_is_refused() -> None:
    with pytest.raises(ValueError, match="source_id"):
        simulate_request("123", TOKEN, MESSAGE, "")


def test_message_events_request_carries_matrix_params_query_and_range() -> None:
    r = message_events_request(
        "123",
        TOKEN,
        page=ReferenceRange("abc", 50),
        flow_ids=[1, 2],
        source_ids=["9"],
        daterange=JAN,
        receivedrange=JAN,
        sortorder=SortOrder.ASC,
        add_message_tags=True,
    )
    dates = "2021-01-01T00:00:00Z,2021-02-01T00:00:00Z"
    assert r.method == "GET"
    assert r.path == f"/123/message_events;flow_ids=1,2;source_ids=9;daterange={dates};receivedrange={dates}"
    assert r.query == (("sortorder", "ASC"), ("addmessagetags", "true"))
    assert r.header("Range") == "items=abc:50"
    assert r.target.startswith(r.path + "?")


def test_listing_without_options_is_the_first_page_and_bare_path() -> None:
    r = message_events_request("123", TOKEN)
    assert (r.path, r.query, r.header("Range")) == ("/123/message_events", (), "items=:100")


def test_a_request_built_with_the_defaults_asks_for_no_option() -> None:
    """Events, headers, online links and tags are asked for only when the caller says so: each makes the answer
    bigger."""
    requests = [
        messages_request("123", TOKEN),
        message_request("123", TOKEN, ID),
        tag_messages_request("123", TOKEN, "ref"),
        message_events_request("123", TOKEN),
    ]
    assert [r.query for r in requests] == [(), (), (), ()]


def test_messages_request_carries_sorting_and_flags() -> None:
    r = messages_request(
        "123",
        TOKEN,
        flow_ids=[5],
        daterange=JAN,
        sortfield=SortField.INSERTED,
        sortorder=SortOrder.ASC,
        add_events=True,
        add_tags=True,
    )
    assert r.path.startswith("/123/messages;flow_ids=5;daterange=")
    assert r.query == (("sortfield", "INSERTED"), ("sortorder", "ASC"), ("addevents", "true"), ("addtags", "true"))


def test_message_request_encodes_the_id() -> None:
    r = message_request("123", TOKEN, "a/b", add_events=True)
    assert (r.path, r.query) == ("/123/messages/a%2Fb", (("addevents", "true"),))


@pytest.mark.parametrize("tag", ["ref:abc", "a/b;c=d?e", "caf\u00e9 x"])
def test_tag_survives_percent_encoding_in_the_path(tag: str) -> None:
    r = tag_messages_request("12 3", TOKEN, tag, daterange=JAN, add_tags=True)
    account, kind, encoded, rest = r.path.split("/")[1:]
    assert (unquote(account), kind, unquote(encoded)) == ("12 3", "tag", tag)
    assert rest.startswith("messages;daterange=")
    assert "?" not in r.path


@given(st.text(min_size=1))
def test_any_tag_round_trips_through_the_path(tag: str) -> None:
    encoded = tag_messages_request("1", TOKEN, tag).path.split("/")[3]
    assert unquote(encoded, errors="surrogatepass") == tag


def test_empty_path_segment_is_refused() -> None:
    with pytest.raises(ValueError, match="tag"):
        tag_messages_request("123", TOKEN, "")


# --- submit classification ------------------------------------------------------------------------------------


def test_201_with_location_is_accepted_with_the_last_segment() -> None:
    assert classify_submit(response(201, Location=LOCATION)) == Accepted("20211230130407e3b36e2e92fdbefc86")


@pytest.mark.parametrize(
    "location",
    [
        f"/123/messages/{ID}",
        f"https://API.flowmailer.net:443/123/messages/{ID}",
        f"https://api.flowmailer.net./123/messages/{ID}",
    ],
)
def test_201_with_a_location_of_the_api_host_and_the_account_is_accepted(location: str) -> None:
    assert classify_submit(response(201, Location=location)) == Accepted(ID)


@pytest.mark.parametrize(
    "location",
    [
        None,
        "",
        "https://api.flowmailer.net/",
        "/123/messages/",
        "/123/flows/9",
        "x y",
        f"https://evil.example/123/messages/{ID}",  # another host
        f"https://api.example.net/123/messages/{ID}",  # one that sorts before it
        f"//evil.example/123/messages/{ID}",
        f"http://api.flowmailer.net/123/messages/{ID}",
        f"wss://api.flowmailer.net/123/messages/{ID}",  # a scheme that sorts after https
        f"https://api.flowmailer.net:8443/123/messages/{ID}",
        f"https://api.flowmailer.net:442/123/messages/{ID}",
        f"https://user@api.flowmailer.net/123/messages/{ID}",
        f"https://api.flowmailer.net/999/messages/{ID}",  # another account
        f"/999/messages/{ID}",
        "/123/messages/..",  # not an id
        "/123/messages/abc",
        f"/123/messages/{ID}/..",
        f"/123/messages/{ID}?x=1",
        f"/123/messages/{ID}#f",
        f"/123/messages/{ID[:-1]}",
        f"/123/messages/{ID}0",
        "https://api.flowmailer.net:99999/123/messages/x",
    ],
)
def test_201_without_usable_location_is_ambiguous(location: str | None) -> None:
    headers = {} if location is None else {"Location": location}
    assert isinstance(classify_submit(response(201, **headers)), Ambiguous)


@pytest.mark.parametrize("status", [200, 202, 204, 299])
def test_other_2xx_is_ambiguous(status: int) -> None:
    assert isinstance(classify_submit(response(status, Location=LOCATION)), Ambiguous)


@pytest.mark.parametrize("status", [400, 403, 404, 413, 422])
def test_permanent_refusals_are_rejected_with_all_errors(status: int) -> None:
    body = {"allErrors": [{"code": "message.toobig", "defaultMessage": "Message too big", "field": None}]}
    assert classify_submit(response(status, body)) == Rejected(
        status, (ErrorDetail("message.toobig", "Message too big"),)
    )


@pytest.mark.parametrize("body", [None, "text", {"allErrors": "nope"}, {"allErrors": [17]}])
def test_rejection_with_unreadable_errors_is_still_rejected(body: object) -> None:
    assert classify_submit(response(400, body)) == Rejected(400, ())


def test_401_invalid_token_is_token_invalid() -> None:
    outcome = classify_submit(response(401, {"error": "invalid_token", "error_description": "expired"}))
    assert isinstance(outcome, TokenInvalid)
    assert "expired" in outcome.detail


def test_an_outcome_describes_each_error_by_its_message_and_code_or_by_the_one_it_has() -> None:
    body = {"allErrors": [{"code": "busy", "defaultMessage": "try later"}, {"code": "queue_full"}]}
    assert classify_submit(response(503, body)) == Transient(503, None, "HTTP 503: try later (busy); queue_full")


@pytest.mark.parametrize("status", [400, 403])
def test_invalid_token_with_another_status_than_401_is_rejected(status: int) -> None:
    """Only a 401 asks for a new token; another refusal naming invalid_token is still that refusal."""
    outcome = classify_submit(response(status, {"error": "invalid_token"}))
    assert outcome == Rejected(status, (ErrorDetail(code="invalid_token"),))


def test_401_invalid_token_in_the_challenge_header_is_token_invalid() -> None:
    outcome = classify_submit(response(401, WWW_Authenticate='Bearer error="invalid_token"'))
    assert isinstance(outcome, TokenInvalid)


def test_other_401_is_rejected() -> None:
    assert classify_submit(response(401, {"error": "access_denied"})) == Rejected(401, (ErrorDetail("access_denied"),))


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_overload_and_server_errors_are_transient_with_retry_after(status: int) -> None:
    outcome = classify_submit(response(status, Retry_After="7"))
    assert isinstance(outcome, Transient)
    assert (outcome.status, outcome.retry_after) == (status, 7.0)


@pytest.mark.parametrize("status", [502, 504])
def test_a_gateway_error_to_a_submit_is_ambiguous(status: int) -> None:
    outcome = classify_submit(response(status, Retry_After="7"))
    assert isinstance(outcome, Ambiguous)
    assert f"HTTP {status}" in outcome.reason


@pytest.mark.parametrize("status", [502, 504])
def test_a_gateway_error_to_a_read_is_transient(status: int) -> None:
    assert interpret_one(response(status), Message) == Transient(status, None, f"HTTP {status}")


def test_retry_after_as_http_date_needs_now() -> None:
    when = format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)
    with_now = classify_submit(response(503, Retry_After=when), now=NOW)
    without = classify_submit(response(503, Retry_After=when))
    assert isinstance(with_now, Transient)
    assert isinstance(without, Transient)
    assert (with_now.retry_after, without.retry_after) == (30.0, None)


@pytest.mark.parametrize("status", [100, 199, 300, 301, 302, 405, 409, 415, 499])
def test_any_other_status_is_rejected(status: int) -> None:
    assert classify_submit(response(status)) == Rejected(status, ())


@pytest.mark.parametrize("failure", [NotSent("refused"), Ambiguous("read timeout")])
def test_transport_failures_pass_through(failure: NotSent | Ambiguous) -> None:
    assert classify_submit(failure) is failure


OUTCOMES = (Accepted, Rejected, Transient, Ambiguous, TokenInvalid)


@given(
    st.integers(100, 599),
    st.lists(st.tuples(st.sampled_from(["Location", "Retry-After", "X"]), st.text(max_size=30)), max_size=3),
    st.binary(max_size=60),
)
def test_classify_submit_is_total_and_accepts_only_201(
    status: int, headers: list[tuple[str, str]], body: bytes
) -> None:
    outcome = classify_submit(WireResponse(status, tuple(headers), body), now=NOW)
    assert isinstance(outcome, OUTCOMES)
    if isinstance(outcome, Accepted):
        assert status == 201
    if isinstance(outcome, Transient) and outcome.retry_after is not None:
        assert outcome.retry_after >= 0


# --- Retry-After ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("-5", 0.0),
        ("1.0", 1.0),
        ("0.25", 0.25),
        ("-1.5", 0.0),
        ("soon", None),
        ("1_000", None),
        ("1e3", None),
        ("nan", None),
        ("inf", None),
        ("1.2.3", None),
        ("9" * 400, None),
        ("Wed, 21 Oct 2015 07:28:00", None),
        (format_datetime(datetime.fromtimestamp(NOW - 100, UTC), usegmt=True), 0.0),
        (format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True), 90.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@given(st.integers(0, 10**9), st.text("0123456789", max_size=6))
def test_parse_retry_after_reads_any_non_negative_decimal(whole: int, fraction: str) -> None:
    text = f"{whole}.{fraction}"
    assert parse_retry_after(text) == float(text)


@given(st.text(max_size=20).filter(lambda v: not set(v.strip()) <= set("0123456789.+-")))
def test_parse_retry_after_reads_anything_but_digits_and_a_point_as_none(value: str) -> None:
    assert parse_retry_after(value) is None


# --- token ----------------------------------------------------------------------------------------------------


def test_token_200_becomes_an_access_token_expiring_relative_to_now() -> None:
    body = {"access_token": "abc", "expires_in": 60, "scope": "api", "token_type": "bearer"}
    assert interpret_token(response(200, body), now=1000.0) == AccessToken("abc", 1060.0)


def test_token_with_expires_in_as_text_is_read_as_its_number() -> None:
    body = {"access_token": "abc", "expires_in": "60", "token_type": "bearer"}
    assert interpret_token(response(200, body), now=1000.0) == AccessToken("abc", 1060.0)


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"expires_in": 60},
        {"access_token": "abc"},
        {"access_token": "", "expires_in": 60},
        {"access_token": "abc", "expires_in": True},
        {"access_token": "a", "expires_in": -1},
        {"access_token": "a", "expires_in": -0.5},
        {"access_token": "a", "expires_in": 0},
        {"access_token": "a", "expires_in": "soon"},
        {"access_token": "a", "expires_in": "9" * 400},
    ],
)
def test_malformed_token_200_is_transient(body: object) -> None:
    outcome = interpret_token(response(200, body), now=0.0)
    assert isinstance(outcome, Transient)
    assert (outcome.status, outcome.retry_after) == (200, None)


def test_a_token_expiring_within_a_second_is_still_a_token() -> None:
    assert isinstance(interpret_token(response(200, {"access_token": "a", "expires_in": 0.5}), now=0.0), AccessToken)


@pytest.mark.parametrize("status", [399, 403])
def test_bad_credentials_named_by_another_status_than_400_or_401_are_that_refusal(status: int) -> None:
    outcome = interpret_token(response(status, {"error": "invalid_client"}), now=0.0)
    assert outcome == Rejected(status, (ErrorDetail(code="invalid_client"),))


def test_a_token_in_an_answer_other_than_200_is_not_taken() -> None:
    """A 1xx is no answer to take a token from, whatever its body says."""
    outcome = interpret_token(response(199, {"access_token": "abc", "expires_in": 60}), now=0.0)
    assert outcome == Rejected(199, ())


@pytest.mark.parametrize("error", ["invalid_client", "unauthorized_client", "invalid_grant"])
@pytest.mark.parametrize("status", [400, 401])
def test_bad_credentials_are_credentials_rejected(status: int, error: str) -> None:
    outcome = interpret_token(response(status, {"error": error, "error_description": "Bad credentials"}), now=0.0)
    assert isinstance(outcome, CredentialsRejected)
    assert error in outcome.detail


def test_any_401_on_the_token_request_stops() -> None:
    assert isinstance(interpret_token(response(401), now=0.0), CredentialsRejected)


def test_other_400_on_the_token_request_is_rejected() -> None:
    outcome = interpret_token(response(400, {"error": "invalid_scope"}), now=0.0)
    assert outcome == Rejected(400, (ErrorDetail("invalid_scope"),))


@pytest.mark.parametrize("status", [429, 500, 503])
def test_token_overload_is_transient(status: int) -> None:
    outcome = interpret_token(response(status, Retry_After="3"), now=0.0)
    assert outcome == Transient(status, 3.0, f"HTTP {status}")


def test_token_transport_failure_passes_through() -> None:
    assert interpret_token(NotSent("dns"), now=0.0) == NotSent("dns")


def test_token_errors_never_carry_the_secret() -> None:
    secret = "very-secret-value"
    request = token_request(Credentials("1", "client", secret))
    outcome = interpret_token(response(401, {"error": "invalid_client"}), now=0.0)
    assert secret not in repr(outcome)
    assert secret in request.body.decode()  # it must travel, and only there


# --- reads ----------------------------------------------------------------------------------------------------

EVENT = {"id": "e1", "messageId": "m1", "type": "DELIVERED", "received": "2021-12-30T13:04:07.000Z"}


def test_page_with_next_range() -> None:
    page = interpret_page(response(206, [EVENT], Next_Range="items=e1:100"), MessageEvent)
    assert isinstance(page, Page)
    assert page.next_range == ReferenceRange("e1", 100)
    assert [e.type for e in page.items] == [EventType.DELIVERED]


def test_page_without_next_range_ends_the_listing() -> None:
    page = interpret_page(response(200, [EVENT]), MessageEvent)
    assert isinstance(page, Page)
    assert page.next_range is None


def test_empty_page_ends_the_listing_even_with_next_range() -> None:
    assert interpret_page(response(206, [], Next_Range="items=e1:100"), MessageEvent) == Page(())


def _page_onto(reference: str) -> Page[MessageEvent]:
    page = interpret_page(response(206, [EVENT], Next_Range=f"items={reference}:100"), MessageEvent)
    assert isinstance(page, Page)
    return page


def test_next_page_follows_the_next_range_while_the_listing_is_within_max_pages() -> None:
    page = _page_onto("e9")
    assert next_page("message_events", page, {""}, max_pages=2) == ReferenceRange("e9", 100)
    assert next_page("message_events", page, {"", "e1"}, max_pages=3) == ReferenceRange("e9", 100)
    assert next_page("message_events", Page(page.items), {"", "e1"}, max_pages=1) is None  # the last page


def test_next_page_without_max_pages_follows_a_listing_of_any_length() -> None:
    seen = {"", *(f"r{i}" for i in range(1000))}
    assert next_page("message_events", _page_onto("e9"), seen) == ReferenceRange("e9", 100)


@pytest.mark.parametrize(
    ("max_pages", "read"),
    [
        (1, 1),
        (3, 3),
        (3, 4),  # a caller's listing already past its limit stops too
        (300, 300),  # a count above 256 is a new int each time: compared by value
    ],
)
def test_next_page_stops_a_listing_that_goes_on_past_max_pages(max_pages: int, read: int) -> None:
    seen = {"", *(f"r{i}" for i in range(read - 1))}
    assert len(seen) == read
    with pytest.raises(ProtocolError, match=f"message_events: the listing goes on past {max_pages} pages"):
        next_page("message_events", _page_onto("e9"), seen, max_pages=max_pages)


@pytest.mark.parametrize(
    "bad",
    [
        response(206, {"not": "a list"}),
        response(206, ["DELIVERED"]),
        response(206, [EVENT], Next_Range="garbage"),
    ],
)
def test_unreadable_page_is_transient(bad: WireResponse) -> None:
    outcome = interpret_page(bad, MessageEvent)
    assert isinstance(outcome, Transient)
    assert "unreadable" in outcome.reason


def test_a_page_with_fields_of_unexpected_kinds_is_read_and_keeps_them_raw() -> None:
    page = interpret_page(response(206, [{"id": 1, "received": "yesterday", "data": "x"}]), MessageEvent)
    assert isinstance(page, Page)
    (event,) = page.items
    assert (event.id, event.received, event.data, event.extra) == ("1", None, "x", {"received": "yesterday"})


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (response(401, {"error": "invalid_token"}), TokenInvalid),
        (response(404, {"allErrors": []}), Rejected),
        (response(503), Transient),
        (NotSent("refused"), NotSent),
        (Ambiguous("timeout"), Ambiguous),
    ],
)
def test_read_refusals_and_failures_are_outcomes(result: TransportResult, expected: type[Outcome]) -> None:
    assert isinstance(interpret_page(result, Message), expected)
    assert isinstance(interpret_one(result, Message), expected)


def test_one_message() -> None:
    message = interpret_one(response(200, {"id": "m1", "status": "DELIVERED"}), Message)
    assert message == Message(id="m1", status="DELIVERED")


def test_read_503_reads_retry_after_date_against_now() -> None:
    when = format_datetime(datetime.fromtimestamp(NOW + 12, UTC), usegmt=True)
    outcome = interpret_page(response(503, Retry_After=when), Message, now=NOW)
    assert isinstance(outcome, Transient)
    assert outcome.retry_after == 12.0


def test_message_stats_request_carries_the_range_and_flows_as_matrix_and_the_interval_as_query() -> None:
    r = message_stats_request("123", TOKEN, JAN, StatsQuery(3600, ("1", "2")))
    assert (r.method, r.host) == ("GET", Host.API)
    assert r.path == "/123/messagestats;daterange=2021-01-01T00:00:00Z,2021-02-01T00:00:00Z;flow_ids=1,2"
    assert r.query == (("interval", "3600"),)
    assert r.idempotent


_HOURS = StatsQuery(3600)
_TWO_HOURS = DateRange(datetime(2021, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, 2, tzinfo=UTC))


def _stats_answer(*samples: tuple[str, int]) -> WireResponse:
    body = {"list": [{"name": "sent", "samples": [{"timestamp": t, "value": v} for t, v in samples]}]}
    return WireResponse(200, (), json.dumps(body).encode())


def _stats(result: TransportResult) -> Stats | Outcome:
    return interpret_stats(result, query=_HOURS, daterange=_TWO_HOURS)


def test_a_stats_answer_becomes_data_sets_of_samples() -> None:
    stats = _stats(_stats_answer(("2021-01-01T00:00:00.000Z", 4), ("2021-01-01T01:00:00Z", 1)))
    hour = [datetime(2021, 1, 1, h, tzinfo=UTC) for h in range(2)]
    assert stats == Stats((DataSet("sent", (Sample(hour[0], 4), Sample(hour[1], 1))),))


@pytest.mark.parametrize(
    "timestamp",
    [
        "2021-01-01T00:30:00Z",  # between boundaries (buckets in another time zone)
        "2020-12-31T23:00:00Z",  # before the range
        "2021-01-01T02:00:00Z",  # at its end, which is exclusive
        "2021-01-01T03:00:00Z",  # after it
    ],
)
def test_a_sample_off_the_requested_boundaries_is_unreadable_never_merged(timestamp: str) -> None:
    got = _stats(_stats_answer(("2021-01-01T00:00:00Z", 4), (timestamp, 1)))
    assert isinstance(got, Transient)
    assert "unreadable answer" in got.reason


@pytest.mark.parametrize("year", [2021, 2110])
def test_a_sample_a_microsecond_off_a_boundary_is_unreadable_in_any_year(year: int) -> None:
    """Past 2106 a timestamp held as a float keeps about a microsecond: the sample's offset from the range's start
    is exact only when taken by subtraction (a sum of the two rounds the microsecond away)."""
    hours = DateRange(datetime(year, 1, 1, tzinfo=UTC), datetime(year, 1, 1, 2, tzinfo=UTC))
    answer = _stats_answer((f"{year}-01-01T00:00:00Z", 4), (f"{year}-01-01T01:00:00.000001Z", 1))
    got = interpret_stats(answer, query=_HOURS, daterange=hours)
    assert isinstance(got, Transient)
    assert "unreadable answer" in got.reason


def test_a_stats_range_may_start_at_the_epoch() -> None:
    """The epoch is 0 s: a range starting there is on every interval's boundaries like any other."""
    hours = DateRange(datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, 2, tzinfo=UTC))
    got = interpret_stats(
        _stats_answer(("1970-01-01T00:00:00Z", 4), ("1970-01-01T01:00:00Z", 1)), query=_HOURS, daterange=hours
    )
    hour = [datetime(1970, 1, 1, h, tzinfo=UTC) for h in range(2)]
    assert got == Stats((DataSet("sent", (Sample(hour[0], 4), Sample(hour[1], 1))),))


def test_a_sample_twice_for_one_counter_is_unreadable() -> None:
    assert isinstance(_stats(_stats_answer(("2021-01-01T00:00:00Z", 4), ("2021-01-01T00:00:00Z", 5))), Transient)


@pytest.mark.parametrize("body", [b"[]", b'{"list": 5}', b'{"list": [{"name": "x", "samples": [{"value": 1}]}]}'])
def test_an_unreadable_stats_answer_is_transient(body: bytes) -> None:
    assert isinstance(_stats(WireResponse(200, (), body)), Transient)


def test_a_refused_stats_request_is_rejected() -> None:
    assert isinstance(_stats(WireResponse(400, (), b"{}")), Rejected)
