"""FakeFlowmailer's API behaviour, driven over real TLS by a raw client: tokens, lockout, roles, submit, listings."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.testing import LOGIN_HOST, SUBMIT_ROLE, Credential, FakeClock, FakeFlowmailer
from flowmailer.testing._fake._validate import validate_submit
from tests.fake.raw import RawClient, message

ACCOUNT = "10001"
SUBMIT = f"/{ACCOUNT}/messages/submit"
MESSAGE_ID = re.compile(r"^[0-9]{14}[0-9a-f]{18}$")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_767_225_600.0)  # 2026-01-01T00:00:00Z


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeFlowmailer]:
    with FakeFlowmailer(clock=clock.now, bounce_recipients=["bounce@example.test"]).running() as running:
        yield running


@pytest.fixture
def client(fake: FakeFlowmailer) -> Iterator[RawClient]:
    with RawClient(fake) as raw:
        yield raw


def test_token_carries_the_configured_lifetime(clock: FakeClock) -> None:
    with FakeFlowmailer(clock=clock.now, token_lifetime=20).running() as fake, RawClient(fake) as client:
        answer = client.token(fake.credential())
    assert answer.status == 200
    assert answer.json()["expires_in"] == 20
    assert answer.json()["token_type"] == "bearer"
    assert answer.json()["scope"] == "api"


def test_token_expires_by_the_fake_clock(fake: FakeFlowmailer, client: RawClient, clock: FakeClock) -> None:
    auth = client.bearer(fake.credential())
    assert client.request("GET", f"/{ACCOUNT}/messages", headers=auth).status == 206
    clock.advance(60)
    expired = client.request("GET", f"/{ACCOUNT}/messages", headers=auth)
    assert expired.status == 401
    assert expired.json()["error"] == "invalid_token"


def test_unknown_token_is_invalid_token(client: RawClient) -> None:
    answer = client.request("POST", SUBMIT, headers={"Authorization": "Bearer nonsense"}, body=message())
    assert answer.status == 401
    assert answer.json()["error"] == "invalid_token"


def test_missing_token_is_401(client: RawClient) -> None:
    assert client.request("POST", SUBMIT, body=message()).status == 401


def test_bad_credentials_are_401_and_lock_the_client_address(
    fake: FakeFlowmailer, client: RawClient, clock: FakeClock
) -> None:
    good = fake.credential()
    bad = client.token(Credential(good.client_id, "wrong secret"))
    assert bad.status == 401
    assert bad.json()["error"] == "invalid_client"
    locked = client.token(good)
    assert locked.status == 401
    assert "locked" in locked.json()["error_description"]
    clock.advance(599)
    assert client.token(good).status == 401
    clock.advance(1)
    assert client.token(good).status == 200


def test_lockout_is_per_client_address(fake: FakeFlowmailer, client: RawClient) -> None:
    good = fake.credential()
    assert client.token(Credential(good.client_id, "wrong secret")).status == 401
    with RawClient(fake, source="127.0.0.9") as other:
        assert other.token(good).status == 200


def test_lockout_duration_is_configurable(clock: FakeClock) -> None:
    with FakeFlowmailer(clock=clock.now, lockout_seconds=5).running() as fake, RawClient(fake) as client:
        assert client.token(Credential("nobody", "nothing")).status == 401
        clock.advance(5)
        assert client.token(fake.credential()).status == 200


def test_submit_only_role_may_submit_and_nothing_else(fake: FakeFlowmailer, client: RawClient) -> None:
    auth = client.bearer(fake.credential(SUBMIT_ROLE))
    assert client.request("POST", SUBMIT, headers=auth, body=message()).status == 201
    for target in (f"/{ACCOUNT}/messages", f"/{ACCOUNT}/message_events", f"/{ACCOUNT}/tag/x/messages"):
        answer = client.request("GET", target, headers=auth)
        assert answer.status == 403, target
        assert answer.json()["allErrors"][0]["code"] == "forbidden"


def test_another_account_is_403(fake: FakeFlowmailer, client: RawClient) -> None:
    auth = client.bearer(fake.credential())
    assert client.request("POST", "/999/messages/submit", headers=auth, body=message()).status == 403


def test_submit_answers_201_with_a_location_and_a_flowmailer_shaped_id(fake: FakeFlowmailer, client: RawClient) -> None:
    auth = client.bearer(fake.credential())
    answer = client.request("POST", SUBMIT, headers=auth, body=message(tags=["ref:a", "invoice"]))
    assert answer.status == 201
    assert answer.body == b""
    location = answer.headers["location"]
    assert location.startswith(f"https://api.flowmailer.test/{ACCOUNT}/messages/")
    message_id = location.rsplit("/", 1)[1]
    assert MESSAGE_ID.match(message_id)
    assert message_id.startswith("20260101000000")
    [accepted] = fake.records().accepted
    assert (accepted.message_id, accepted.tags, accepted.client_id) == (message_id, ("ref:a", "invoice"), "fake-admin")
    assert accepted.address == fake.addresses[0]


def test_location_names_the_host_the_request_named(fake: FakeFlowmailer, client: RawClient) -> None:
    auth = client.bearer(fake.credential())
    answer = client.request("POST", SUBMIT, host=f"localhost:{fake.port}", headers=auth, body=message())
    assert answer.headers["location"].startswith(f"https://localhost:{fake.port}/{ACCOUNT}/messages/")


@pytest.mark.parametrize("field", ["messageType", "senderAddress", "recipientAddress"])
def test_submit_without_a_required_field_is_400_naming_it(fake: FakeFlowmailer, client: RawClient, field: str) -> None:
    auth = client.bearer(fake.credential())
    answer = client.request("POST", SUBMIT, headers=auth, body=message(**{field: None}))
    assert answer.status == 400
    [error] = answer.json()["allErrors"]
    assert error["field"] == field
    assert set(error) == {"code", "defaultMessage", "field", "objectName", "rejectedValue", "arguments"}
    assert fake.records().accepted == ()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"messageType": "FAX"}, "messageType"),
        ({"senderAddress": "Alice <alice@example.test>"}, "senderAddress"),
        ({"messageType": "SMS", "senderAddress": "+31600000000", "recipientAddress": "x@y.z"}, "recipientAddress"),
        ({"tags": "one"}, "tags"),
        ({"attachments": [{"content": "aGk="}]}, "attachments[0].contentType"),
        ({"attachments": [{"contentType": "a/b", "disposition": "related"}]}, "attachments[0].contentId"),
        ({"scheduleAt": "tomorrow"}, "scheduleAt"),
        ({"deliveryNotificationType": "ALWAYS"}, "deliveryNotificationType"),
    ],
)
def test_submit_validation_names_the_bad_field(
    fake: FakeFlowmailer, client: RawClient, fields: dict[str, object], field: str
) -> None:
    auth = client.bearer(fake.credential())
    answer = client.request("POST", SUBMIT, headers=auth, body=message(**fields))
    assert answer.status == 400
    assert [e["field"] for e in answer.json()["allErrors"]] == [field]


def test_submit_over_ten_mebibytes_is_400_message_toobig_with_both_sizes(
    fake: FakeFlowmailer, client: RawClient
) -> None:
    auth = client.bearer(fake.credential())
    body = message(text="x" * 10_485_760)
    answer = client.request("POST", SUBMIT, headers=auth, body=body)
    assert answer.status == 400
    (error,) = answer.json()["allErrors"]
    assert (error["code"], error["arguments"]) == ("message.toobig", [len(body), 10_485_760])
    assert error["defaultMessage"] == f"Message too big {len(body)} > 10485760"


def test_submit_of_invalid_json_is_400(fake: FakeFlowmailer, client: RawClient) -> None:
    auth = client.bearer(fake.credential())
    assert client.request("POST", SUBMIT, headers=auth, body=b"{not json").status == 400


def _submit(client: RawClient, auth: dict[str, str], **fields: object) -> str:
    answer = client.request("POST", SUBMIT, headers=auth, body=message(**fields))
    assert answer.status == 201, answer
    return answer.headers["location"].rsplit("/", 1)[1]


def test_accepted_messages_produce_submitted_then_delivered_or_bounce_events(
    fake: FakeFlowmailer, client: RawClient
) -> None:
    auth = client.bearer(fake.credential())
    delivered = _submit(client, auth, tags=["t"])
    bounced = _submit(client, auth, recipientAddress="bounce@example.test")
    answer = client.request(
        "GET", f"/{ACCOUNT}/message_events?sortorder=ASC&addmessagetags=true", headers={**auth, "Range": "items=:10"}
    )
    assert answer.status == 206
    events = [(e["messageId"], e["type"]) for e in answer.json()]
    assert events == [
        (delivered, "SUBMITTED"),
        (delivered, "DELIVERED"),
        (bounced, "SUBMITTED"),
        (bounced, "HARDBOUNCE"),
    ]
    assert answer.json()[0]["messageTags"] == ["t"]


def test_message_events_page_by_reference_with_next_range(fake: FakeFlowmailer, client: RawClient) -> None:
    auth = client.bearer(fake.credential())
    ids = [_submit(client, auth) for _ in range(3)]
    seen: list[tuple[str, str]] = []
    range_ = "items=:4"
    for _ in range(5):
        answer = client.request("GET", f"/{ACCOUNT}/message_events?sortorder=ASC", headers={**auth, "Range": range_})
        assert answer.status == 206
        if not answer.json():
            break
        assert len(answer.json()) <= 4
        seen += [(e["messageId"], e["type"]) for e in answer.json()]
        range_ = answer.headers["next-range"]
        assert answer.headers["content-range"].startswith("items ")
    assert seen == [(i, t) for i in ids for t in ("SUBMITTED", "DELIVERED")]


def test_message_events_default_to_newest_first(fake: FakeFlowmailer, client: RawClient) -> None:
    auth = client.bearer(fake.credential())
    first, second = _submit(client, auth), _submit(client, auth)
    answer = client.request("GET", f"/{ACCOUNT}/message_events", headers={**auth, "Range": "items=:3"})
    assert [e["messageId"] for e in answer.json()] == [second, second, first]


def test_message_by_id(fake: FakeFlowmailer, client: RawClient) -> None:
    auth = client.bearer(fake.credential())
    message_id = _submit(client, auth, subject="Invoice")
    answer = client.request("GET", f"/{ACCOUNT}/messages/{message_id}", headers=auth)
    assert answer.status == 200
    assert answer.json()["id"] == message_id
    assert answer.json()["subject"] == "Invoice"
    assert answer.json()["submitted"] == "2026-01-01T00:00:00.000Z"
    assert client.request("GET", f"/{ACCOUNT}/messages/20260101000000000000000000000000", headers=auth).status == 404


def test_messages_list_by_reference_range_and_daterange(
    fake: FakeFlowmailer, client: RawClient, clock: FakeClock
) -> None:
    auth = client.bearer(fake.credential())
    early = _submit(client, auth)
    clock.advance(3600)
    auth = client.bearer(fake.credential())
    late = _submit(client, auth)
    everything = client.request("GET", f"/{ACCOUNT}/messages?sortorder=ASC", headers={**auth, "Range": "items=:10"})
    assert [m["id"] for m in everything.json()] == [early, late]
    daterange = "daterange=2026-01-01T00:00:00Z,2026-01-01T01:00:00Z"
    first_hour = client.request("GET", f"/{ACCOUNT}/messages;{daterange}", headers={**auth, "Range": "items=:10"})
    assert [m["id"] for m in first_hour.json()] == [early]


def test_messages_by_tag(fake: FakeFlowmailer, client: RawClient) -> None:
    auth = client.bearer(fake.credential())
    tagged = _submit(client, auth, tags=["ref:42"])
    _submit(client, auth, tags=["ref:43"])
    answer = client.request("GET", f"/{ACCOUNT}/tag/ref:42/messages", headers={**auth, "Range": "items=:10"})
    assert answer.status == 206
    assert [m["id"] for m in answer.json()] == [tagged]
    assert client.request("GET", f"/{ACCOUNT}/tag/none/messages", headers=auth).json() == []


def test_messagestats_counts_per_interval(fake: FakeFlowmailer, client: RawClient, clock: FakeClock) -> None:
    auth = client.bearer(fake.credential())
    _submit(client, auth)
    _submit(client, auth, recipientAddress="bounce@example.test")
    clock.advance(3600)
    auth = client.bearer(fake.credential())
    _submit(client, auth)
    stats = client.request(
        "GET",
        f"/{ACCOUNT}/messagestats;daterange=2026-01-01T00:00:00Z,2026-01-01T02:00:00Z?interval=3600",
        headers=auth,
    )
    assert stats.status == 200
    values = {d["name"]: [s["value"] for s in d["samples"]] for d in stats.json()["list"]}
    assert values["processed"] == [2, 1]
    assert values["delivered"] == [1, 1]
    assert values["bounced"] == [1, 0]


def test_messagestats_without_daterange_is_400(fake: FakeFlowmailer, client: RawClient) -> None:
    auth = client.bearer(fake.credential())
    answer = client.request("GET", f"/{ACCOUNT}/messagestats", headers=auth)
    assert answer.status == 400
    assert answer.json()["allErrors"][0]["field"] == "daterange"


def test_records_count_copies_per_client_reference(fake: FakeFlowmailer, client: RawClient) -> None:
    auth = client.bearer(fake.credential())
    for ref in ("ref:a", "ref:b", "ref:a"):
        _submit(client, auth, tags=[ref, "other"])
    records = fake.records()
    assert records.copies_by_reference == {"ref:a": 2, "ref:b": 1}
    assert records.duplicates == {"ref:a": 2}


def test_records_count_token_requests_per_credential(fake: FakeFlowmailer, client: RawClient) -> None:
    admin, submitter = fake.credential(), fake.credential(SUBMIT_ROLE)
    client.token(admin)
    client.token(submitter)
    client.token(submitter)
    assert fake.records().token_requests == {admin.client_id: 1, submitter.client_id: 2}


def test_unknown_path_is_404(fake: FakeFlowmailer, client: RawClient) -> None:
    auth = client.bearer(fake.credential())
    answer = client.request("GET", f"/{ACCOUNT}/nothing_here", headers=auth)
    assert answer.status == 404
    assert json.loads(answer.body)["allErrors"]


def test_token_accepts_http_basic_client_authentication(fake: FakeFlowmailer, client: RawClient) -> None:
    credential = fake.credential()
    basic = base64.b64encode(f"{credential.client_id}:{credential.client_secret}".encode()).decode()
    answer = client.request(
        "POST",
        "/oauth/token",
        host=LOGIN_HOST,
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        body=b"grant_type=client_credentials&scope=api",
    )
    assert answer.status == 200
    assert fake.records().token_requests == {credential.client_id: 1}


def test_message_events_by_receivedrange(fake: FakeFlowmailer, client: RawClient, clock: FakeClock) -> None:
    auth = client.bearer(fake.credential())
    _submit(client, auth)
    clock.advance(3600)
    auth = client.bearer(fake.credential())
    late = _submit(client, auth)
    span = "receivedrange=2026-01-01T01:00:00Z,2026-01-01T02:00:00Z"
    answer = client.request("GET", f"/{ACCOUNT}/message_events;{span}", headers={**auth, "Range": "items=:10"})
    assert {e["messageId"] for e in answer.json()} == {late}
    bad = client.request("GET", f"/{ACCOUNT}/message_events;receivedrange=yesterday", headers=auth)
    assert bad.status == 400


def test_simulate_previews_without_accepting(fake: FakeFlowmailer, client: RawClient) -> None:
    auth = client.bearer(fake.credential())
    answer = client.request("POST", f"/{ACCOUNT}/messages/simulate", headers=auth, body=message(sourceId="7"))
    assert answer.status == 200
    assert answer.json()["recipientAddress"] == "someone@example.test"
    assert fake.records().accepted == ()
    missing = client.request("POST", f"/{ACCOUNT}/messages/simulate", headers=auth, body=message())
    assert [e["field"] for e in missing.json()["allErrors"]] == ["sourceId"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
submit_fields = st.sampled_from(
    [
        "messageType",
        "senderAddress",
        "recipientAddress",
        "tags",
        "attachments",
        "headers",
        "data",
        "scheduleAt",
        "deliveryNotificationType",
        "mimedata",
        "subject",
    ]
)


@given(st.dictionaries(submit_fields, json_values, max_size=6) | json_values)
def test_validation_answers_any_json_with_errors_or_acceptance_never_a_crash(body: object) -> None:
    base = json.loads(message())
    document = {**base, **body} if isinstance(body, dict) else body
    parsed, errors = validate_submit(json.dumps(document).encode())
    assert errors or parsed == document
    for error in errors:
        assert set(error) == {"code", "defaultMessage", "field", "objectName", "rejectedValue", "arguments"}


@pytest.mark.parametrize(
    "daterange",
    [
        "2026-01-01T00:00:00Z,2026-01-01T01:00:00Z",
        "2026-01-01T00:00:00.000Z,2026-01-01T01:00:00.000Z",
        "2026-01-01T00:00:00%2B00:00,2026-01-01T01:00:00%2B00:00",
        "2026-01-01T00:00:00%2B0000,2026-01-01T01:00:00%2B0000",
        "2026-01-01T01:00:00%2B01:00,2026-01-01T02:00:00%2B01:00",
    ],
)
def test_every_iso_8601_form_of_a_daterange_is_read(
    fake: FakeFlowmailer, client: RawClient, clock: FakeClock, daterange: str
) -> None:
    auth = client.bearer(fake.credential())
    inside = _submit(client, auth)
    clock.advance(3600)
    auth = client.bearer(fake.credential())  # the first token has expired
    _submit(client, auth)
    answer = client.request("GET", f"/{ACCOUNT}/messages;daterange={daterange}", headers={**auth, "Range": "items=:10"})
    assert answer.status == 206, answer
    assert [m["id"] for m in answer.json()] == [inside]


@pytest.mark.parametrize(("value", "tagged"), [("true", True), ("1", True), ("TRUE", True), ("0", False)])
def test_boolean_parameters_read_true_and_1_as_on(
    fake: FakeFlowmailer, client: RawClient, value: str, tagged: bool
) -> None:
    auth = client.bearer(fake.credential())
    _submit(client, auth, tags=["t"])
    answer = client.request(
        "GET", f"/{ACCOUNT}/message_events?addmessagetags={value}", headers={**auth, "Range": "items=:1"}
    )
    assert ("messageTags" in answer.json()[0]) is tagged


def test_message_events_are_filtered_by_flow_source_and_daterange(
    fake: FakeFlowmailer, client: RawClient, clock: FakeClock
) -> None:
    auth = client.bearer(fake.credential())
    first = _submit(client, auth)
    clock.advance(3600)
    auth = client.bearer(fake.credential())  # the first token has expired
    _submit(client, auth)

    def events(matrix: str) -> list[str]:
        answer = client.request("GET", f"/{ACCOUNT}/message_events;{matrix}", headers={**auth, "Range": "items=:10"})
        assert answer.status == 206, answer
        return [e["messageId"] for e in answer.json()]

    assert len(events("flow_ids=1")) == 4
    assert events("flow_ids=999") == []
    assert len(events("source_ids=1,2")) == 4
    assert events("source_ids=999") == []
    assert events("daterange=2026-01-01T00:00:00Z,2026-01-01T01:00:00Z") == [first, first]


def test_a_body_that_is_not_json_is_415(fake: FakeFlowmailer, client: RawClient) -> None:
    auth = client.bearer(fake.credential())
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        answer = client.request("POST", SUBMIT, headers={**auth, "Content-Type": content_type}, body=message())
        assert answer.status == 415, content_type
    for content_type in ("application/json", "application/vnd.flowmailer.v1.12+json;charset=UTF-8"):
        answer = client.request("POST", SUBMIT, headers={**auth, "Content-Type": content_type}, body=message())
        assert answer.status == 201, content_type


def test_references_are_upper_case_base32hex_and_read_back(fake: FakeFlowmailer, client: RawClient) -> None:
    auth = client.bearer(fake.credential())
    for _ in range(40):
        _submit(client, auth)
    first = client.request("GET", f"/{ACCOUNT}/message_events?sortorder=ASC", headers={**auth, "Range": "items=:35"})
    next_range = first.headers["next-range"]
    assert re.fullmatch(r"items=[0-9A-V]{13}:35", next_range), next_range
    assert next_range == "items=0000000000012:35"  # the 35th event, position 34: "12" in base32hex
    rest = client.request("GET", f"/{ACCOUNT}/message_events?sortorder=ASC", headers={**auth, "Range": next_range})
    assert (rest.status, len(rest.json())) == (206, 35)
    lettered = "items=000000000000A:2"  # position 10: the page starts after it
    page = client.request("GET", f"/{ACCOUNT}/message_events?sortorder=ASC", headers={**auth, "Range": lettered})
    assert [int(e["id"], 16) for e in page.json()] == [11, 12]


def test_undelivered_messages_are_the_bounced_ones_filtered_by_receivedrange(
    fake: FakeFlowmailer, client: RawClient, clock: FakeClock
) -> None:
    auth = client.bearer(fake.credential())
    _submit(client, auth)
    bounced = _submit(client, auth, recipientAddress="bounce@example.test")

    def undelivered(matrix: str = "") -> list[str]:
        answer = client.request("GET", f"/{ACCOUNT}/undeliveredmessages{matrix}", headers={**auth, "Range": "items=:9"})
        assert answer.status == 206, answer
        return [m["id"] for m in answer.json()]

    assert undelivered() == [bounced]
    assert undelivered(";receivedrange=2026-01-01T00:00:00Z,2026-01-01T01:00:00Z") == [bounced]
    assert undelivered(";receivedrange=2026-01-02T00:00:00%2B01:00,2026-01-03T00:00:00Z") == []
