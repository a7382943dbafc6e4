"""The endpoint table and the generic request building and answer reading it drives."""

from __future__ import annotations

import inspect
import json
from datetime import UTC, datetime

import pytest

from flowmailer.app._api import Api
from flowmailer.core import (
    ENDPOINTS,
    AccessToken,
    Ambiguous,
    ConfigurationError,
    DateRange,
    Flow,
    ItemRange,
    ListingPage,
    Paging,
    ProtocolError,
    ReferenceRange,
    Rejected,
    SortOrder,
    Stats,
    Transient,
    WireResponse,
    build_request,
    endpoint,
    first_range,
    following_range,
    interpret,
    interpret_listing,
)

TOKEN = AccessToken("tok", 1e12)
DAY = DateRange(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))


def answer(status: int, body: object = None, **headers: str) -> WireResponse:
    raw = b"" if body is None else json.dumps(body).encode()
    return WireResponse(status, tuple((k.replace("_", "-"), v) for k, v in headers.items()), raw)


def test_the_table_holds_each_of_flowmailers_73_endpoints_once() -> None:
    assert len(ENDPOINTS) == 73
    assert len({(e.method, e.path) for e in ENDPOINTS}) == 73
    assert len({e.name for e in ENDPOINTS}) == 73


def test_posts_are_not_idempotent_but_the_ones_that_only_check_and_the_rest_are() -> None:
    checks = {"token", "simulate", "validate_sender_domain"}
    for e in ENDPOINTS:
        assert e.idempotent is (e.method != "POST" or e.name in checks), e.name


def test_every_endpoint_has_a_method_taking_its_path_parameters() -> None:
    for e in ENDPOINTS:
        if e.served_by is not None:
            continue
        method = getattr(Api, e.name)
        parameters = inspect.signature(method.__wrapped__).parameters
        assert set(e.path_params) <= set(parameters), e.name
        assert {p.name for p in e.params} <= set(parameters), e.name
        assert (e.body is None) or ("body" in parameters) or e.name == "resend_message", e.name


def test_parameters_go_in_the_path_the_matrix_and_the_query() -> None:
    request = build_request(
        endpoint("messages"),
        "10001",
        TOKEN,
        {"flow_ids": ["1", 2], "daterange": DAY, "sortorder": SortOrder.ASC, "add_tags": True, "add_events": None},
        page=ReferenceRange("ABC", 10),
    )
    assert request.path == "/10001/messages;flow_ids=1,2;daterange=2026-01-01T00:00:00Z,2026-01-02T00:00:00Z"
    assert request.query == (("sortorder", "ASC"), ("addtags", "true"))
    assert ("Range", "items=ABC:10") in request.headers
    one = build_request(endpoint("recipient"), "10001", TOKEN, {"recipient": "a b@x.nl"})
    assert one.path == "/10001/recipient/a%20b%40x.nl"


def test_a_write_carries_its_body_as_camel_case_json() -> None:
    request = build_request(endpoint("create_flow"), "1", TOKEN, {"body": Flow(description="d", template_id="7")})
    assert json.loads(request.body) == {"description": "d", "templateId": "7"}
    assert (request.method, request.idempotent) == ("POST", False)


@pytest.mark.parametrize(
    ("name", "args", "field"),
    [
        ("flow", {}, "flow_id"),
        ("flow", {"flow_id": ""}, "flow_id"),
        ("create_flow", {"body": {"description": "d"}}, "body"),
        ("flows", {"statistics": "yes"}, "statistics"),
        ("messages", {"flow_ids": "12"}, "flow_ids"),
        ("messages", {"daterange": "today"}, "daterange"),
        ("messages", {"sortorder": "ASC"}, "sortorder"),
        ("flow_stats", {"flow_id": "1"}, "daterange"),
        ("flow_stats", {"flow_id": "1", "daterange": DAY, "interval": 0}, "interval"),
    ],
)
def test_a_bad_argument_is_refused_naming_it_before_anything_is_sent(
    name: str, args: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        build_request(endpoint(name), "1", TOKEN, args)
    assert info.value.field == field


def test_a_create_answers_the_new_id_from_location() -> None:
    created = answer(201, Location="https://api.flowmailer.net/1/flows/42")
    assert interpret(endpoint("create_flow"), created) == "42"


@pytest.mark.parametrize("result", [answer(201), answer(200), answer(502), answer(504)])
def test_a_create_without_location_or_through_a_failing_gateway_is_ambiguous(result: WireResponse) -> None:
    assert isinstance(interpret(endpoint("create_flow"), result), Ambiguous)


def test_a_read_through_a_failing_gateway_is_transient_and_a_refusal_rejected() -> None:
    assert isinstance(interpret(endpoint("flow"), answer(502)), Transient)
    assert isinstance(interpret(endpoint("flow"), answer(404, {"allErrors": []})), Rejected)


def test_answers_are_read_by_their_kind() -> None:
    assert interpret(endpoint("delete_flow"), answer(204)) is None
    flows = interpret(endpoint("flows"), answer(200, [{"id": "1", "description": "d", "new": 1}]))
    assert flows == (Flow(id="1", description="d", extra={"new": 1}),)
    stats = interpret(endpoint("flow_stats"), answer(200, {"list": [{"name": "sent", "samples": []}]}))
    assert isinstance(stats, Stats)
    assert stats.totals() == {"sent": 0}
    assert isinstance(interpret(endpoint("flow"), answer(200, [])), Transient)


def test_item_range_listings_page_until_a_short_page_or_the_total() -> None:
    e = endpoint("flow_messages")
    first = first_range(e, 2)
    assert first == ItemRange(0, 1)
    full = interpret_listing(e, answer(206, [{}, {}], Content_Range="items 0-1/5"), requested=ItemRange(0, 1))
    assert isinstance(full, ListingPage)
    assert full.next_range == ItemRange(2, 3)
    last = interpret_listing(e, answer(206, [{}, {}], Content_Range="items 2-3/4"), requested=ItemRange(2, 3))
    assert isinstance(last, ListingPage)
    assert last.next_range is None
    short = interpret_listing(e, answer(206, [{}]), requested=ItemRange(0, 1))
    assert isinstance(short, ListingPage)
    assert short.next_range is None
    garbled = interpret_listing(e, answer(206, [{}], Content_Range="rows 1"), requested=ItemRange(0, 0))
    assert isinstance(garbled, Transient)


def test_reference_listings_follow_next_range_and_stop_on_one_pointing_back() -> None:
    e = endpoint("filters")
    assert e.paging is Paging.REFERENCE
    page = interpret_listing(e, answer(206, [{}], Next_Range="items=B:100"), requested=ReferenceRange())
    assert isinstance(page, ListingPage)
    assert following_range(e, page, {"items=:100"}) == ReferenceRange("B", 100)
    with pytest.raises(ProtocolError, match="filters"):
        following_range(e, page, {"items=B:100"})
    with pytest.raises(ProtocolError, match="past 1 pages"):
        following_range(e, page, {"items=:100"}, max_pages=1)
    assert interpret_listing(e, answer(206, []), requested=ReferenceRange()) == ListingPage(())
    assert first_range(endpoint("flows")) is None
