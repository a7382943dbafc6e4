from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.core import (
    Attachment,
    ConfigurationError,
    DeliveryNotificationType,
    Disposition,
    ErrorDetail,
    EventType,
    Message,
    MessageEvent,
    MessageHeader,
    MessageType,
    ObjectRef,
    Simulation,
    SubmitMessage,
    dump_json,
    format_date,
    from_json,
    message_from_json,
    message_to_json,
    parse_date,
    wire_converter,
)
from tests import strategies


def through_the_wire(value: Any) -> Any:
    """Unstructure, encode, decode and structure again, as a response or stored value would travel."""
    return from_json(dump_json(wire_converter.unstructure(value)), type(value), what="test", fix="")


@given(strategies.submit_messages())
def test_submit_message_round_trips(message: SubmitMessage) -> None:
    assert message_from_json(message_to_json(message)) == message


@given(
    st.one_of(
        strategies.attachments(),
        strategies.headers,
        strategies.error_details,
        strategies.object_refs,
        strategies.message_events,
        strategies.messages,
        strategies.simulations,
    )
)
def test_every_wire_model_round_trips(value: Any) -> None:
    assert through_the_wire(value) == value


def test_submit_message_is_camel_case_with_absent_fields_left_out() -> None:
    m = SubmitMessage(
        sender_address="shop@example.com",
        recipient_address="jane@example.org",
        header_from_name="Shop",
        flow_selector="invoice",
        tags=("invoice",),
        schedule_at=datetime(2021, 12, 30, 13, 4, 7, tzinfo=UTC),
    )
    assert json.loads(message_to_json(m)) == {
        "messageType": "EMAIL",
        "senderAddress": "shop@example.com",
        "recipientAddress": "jane@example.org",
        "headerFromName": "Shop",
        "flowSelector": "invoice",
        "tags": ["invoice"],
        "scheduleAt": "2021-12-30T13:04:07Z",
    }


def test_sms_fields_on_the_wire() -> None:
    sms = SubmitMessage(
        message_type=MessageType.SMS,
        sender_address="+31600000000",
        recipient_address="+31611111111",
        text="hi",
        delivery_notification_type=DeliveryNotificationType.DELIVERY_AND_FAILURE,
    )
    body = json.loads(message_to_json(sms))
    assert body["messageType"] == "SMS"
    assert body["deliveryNotificationType"] == "DELIVERY_AND_FAILURE"


def test_bytes_are_base64_on_the_wire() -> None:
    attachment = Attachment(b"\x00\xffhello", "application/pdf", "a.pdf", Disposition.RELATED, "cid1")
    m = SubmitMessage(sender_address="a@x.nl", recipient_address="b@x.nl", mimedata=b"MIME", attachments=[attachment])
    body = json.loads(message_to_json(m))
    assert body["mimedata"] == "TUlNRQ=="
    assert body["attachments"] == [
        {
            "content": "AP9oZWxsbw==",
            "contentType": "application/pdf",
            "filename": "a.pdf",
            "disposition": "related",
            "contentId": "cid1",
        }
    ]


def test_message_to_json_is_ascii_even_with_a_lone_surrogate() -> None:
    m = SubmitMessage(sender_address="a@x.nl", recipient_address="b@x.nl", subject="caf\u00e9 \ud800")
    assert message_to_json(m).isascii()
    assert message_from_json(message_to_json(m)).subject == "caf\u00e9 \ud800"


def test_request_dates_have_whole_seconds_and_z() -> None:
    assert format_date(datetime(2021, 12, 30, 14, 4, 7, 500, tzinfo=UTC)) == "2021-12-30T14:04:07Z"


@pytest.mark.parametrize("text", ["2021-12-30T13:04:07.000Z", "2021-12-30T13:04:07Z", "2021-12-30T14:04:07+01:00"])
def test_response_dates_parse_with_or_without_milliseconds(text: str) -> None:
    assert parse_date(text) == datetime(2021, 12, 30, 13, 4, 7, tzinfo=UTC)


def test_response_date_without_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        parse_date("2021-12-30T13:04:07")


def test_event_with_unknown_fields_and_an_unknown_type_is_kept() -> None:
    raw = {
        "id": "e1",
        "messageId": "m1",
        "type": "TELEPORTED",
        "received": "2021-12-30T13:04:07.123Z",
        "brandNewField": {"x": 1},
        "messageTags": ["ref:abc"],
    }
    event = from_json(json.dumps(raw).encode(), MessageEvent, what="event", fix="")
    assert event.type == "TELEPORTED"
    assert event.message_tags == ("ref:abc",)
    assert event.received == datetime(2021, 12, 30, 13, 4, 7, 123000, tzinfo=UTC)


def test_known_event_type_becomes_the_enum() -> None:
    event = from_json(b'{"type": "HARDBOUNCE", "subType": "5.1.1"}', MessageEvent, what="event", fix="")
    assert event.type is EventType.HARDBOUNCE
    assert event.sub_type == "5.1.1"


def test_event_type_that_is_not_a_string_is_kept_raw_in_extra() -> None:
    event = from_json(b'{"type": 5, "id": "e1"}', MessageEvent, what="event", fix="")
    assert (event.id, event.type, event.extra) == ("e1", None, {"type": 5})


def test_response_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r'list of MessageEvent: \[0\] is the string "DELIVERED", not a JSON'):
        from_json(b'["DELIVERED"]', tuple[MessageEvent, ...], what="events", fix="")


def test_message_as_flowmailer_returns_it() -> None:
    raw = {
        "id": "20211230130407e3b36e2e92fdbefc86",
        "messageType": "EMAIL",
        "flow": {"id": "12", "description": "invoice"},
        "submitted": "2021-12-30T13:04:07.000Z",
        "headersOut": [{"name": "Subject", "value": "Hi"}],
        "events": [{"type": "DELIVERED"}],
        "somethingNew": True,
    }
    message = from_json(json.dumps(raw).encode(), Message, what="message", fix="")
    assert message.flow == ObjectRef("12", "invoice")
    assert message.headers_out == (MessageHeader(name="Subject", value="Hi"),)
    assert message.extra == {"somethingNew": True}
    assert message.events[0].type is EventType.DELIVERED


def test_error_detail_with_a_list_value_is_still_hashable() -> None:
    assert hash(ErrorDetail("c", rejected_value=[1], arguments=([2],))) == hash(ErrorDetail("c"))


def test_error_details_keep_their_rejected_value() -> None:
    raw = b'[{"code": "message.toobig", "defaultMessage": "too big", "field": "x", "rejectedValue": [1], '
    raw += b'"arguments": [1], "somethingNew": 1}]'
    (detail,) = from_json(raw, tuple[ErrorDetail, ...], what="allErrors", fix="")
    assert detail == ErrorDetail("message.toobig", "too big", "x", None, [1], (1,))


def test_stored_message_is_validated_again() -> None:
    stored = b'{"messageType": "EMAIL", "senderAddress": "Bob <bob@x.nl>", "recipientAddress": "b@x.nl"}'
    with pytest.raises(ConfigurationError) as info:
        message_from_json(stored)
    assert info.value.field == "senderAddress"


@pytest.mark.parametrize("stored", [b"{not json", b"[]"])
def test_damaged_stored_message_is_a_configuration_error(stored: bytes) -> None:
    with pytest.raises(ConfigurationError) as info:
        message_from_json(stored)
    assert info.value.field == "message"
    assert "enqueue it again" in info.value.fix


@pytest.mark.parametrize(
    ("extra", "field", "problem"),
    [
        ({"messageType": "FAX"}, "messageType", 'the string "FAX", not one of "EMAIL", "SMS", "LETTER"'),
        ({"recipientAddress": None}, "recipientAddress", "is null, not a string"),
        ({"mimedata": "@@"}, "mimedata", 'the string "@@", not base64 text or null (not base64'),
        ({"scheduleAt": "2021"}, "scheduleAt", "not an ISO 8601 date-time such as 2026-01-31T12:00:00Z"),
        ({"scheduleAt": "2021-01-01T12:00:00"}, "scheduleAt", "has no time zone"),
    ],
)
def test_a_damaged_stored_message_names_the_key_and_what_belongs_there(
    extra: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        message_from_json(json.dumps({**_VALID, **extra}).encode())
    assert info.value.field == field
    assert problem in info.value.problem


def test_a_missing_key_is_named_with_the_fix() -> None:
    with pytest.raises(ConfigurationError) as info:
        message_from_json(b'{"messageType": "EMAIL", "senderAddress": "a@x.nl"}')
    assert (info.value.field, info.value.problem, info.value.fix) == (
        "recipientAddress",
        "is missing",
        "add recipientAddress",
    )


def test_simulation_preview_is_read_tolerantly() -> None:
    sim = from_json(b'{"messageType": "EMAIL", "subject": "Hi", "unknown": 1}', Simulation, what="body", fix="")
    assert sim == Simulation(message_type=MessageType.EMAIL, subject="Hi", extra={"unknown": 1})


_VALID = {"messageType": "EMAIL", "senderAddress": "a@x.nl", "recipientAddress": "b@x.nl"}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"subject": 5}, "subject"),
        ({"subject": {"x": 1}}, "subject"),
        ({"senderAddress": None}, "senderAddress"),
        ({"headerFromName": True}, "headerFromName"),
        ({"flowSelector": ["a"]}, "flowSelector"),
        ({"tags": ["a", 3]}, "tags[1]"),
        ({"headers": [{"name": "X-A", "value": "1"}, {"name": "X-B", "value": 2.5}]}, "headers[1].value"),
        ({"attachments": [{"content": "aGk=", "contentType": 7}]}, "attachments[0].contentType"),
    ],
)
def test_a_submit_message_with_a_non_string_where_text_belongs_is_refused_naming_the_key(
    extra: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        message_from_json(json.dumps({**_VALID, **extra}).encode())
    assert info.value.field == field
    assert "not a string" in info.value.problem
    assert "double quotes" in info.value.fix


def test_a_response_takes_a_number_where_text_belongs_as_its_text() -> None:
    raw = b'{"type": "HARDBOUNCE", "subType": 511, "messageTags": [7]}'
    event = from_json(raw, MessageEvent, what="event", fix="")
    assert (event.sub_type, event.message_tags) == ("511", ("7",))


#: Every key of a SubmitMessage file, with its kind, and a value for each nested model.
_INPUT_FIELDS = {
    "senderAddress": "text",
    "recipientAddress": "text",
    "headerFromAddress": "text",
    "headerFromName": "text",
    "headerToAddress": "text",
    "headerToName": "text",
    "subject": "text",
    "html": "text",
    "text": "text",
    "flowSelector": "text",
    "tags": "list",
    "headers": "list",
    "attachments": "list",
    "data": "object",
    "mimedata": "text",
    "scheduleAt": "text",
    "messageType": "text",
    "deliveryNotificationType": "text",
}
_COLLECTION_KEYS = sorted(k for k, kind in _INPUT_FIELDS.items() if kind == "list")
_TEXT_KEYS = sorted(k for k, kind in _INPUT_FIELDS.items() if kind == "text")
_PYTHON_WORDS = ("NoneType", "datetime.", "| None", "expected bytes", "<class", "typing.", "flowmailer.core")
_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)


def _error_text(decode: Callable[[], object]) -> str:
    """What the error says, or "" when the value was accepted."""
    try:
        decode()
    except ConfigurationError as e:
        return str(e)
    return ""


def _refusal(body: dict[str, Any]) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        message_from_json(json.dumps(body).encode())
    return info.value


@given(st.sampled_from(_COLLECTION_KEYS), st.text(max_size=10) | st.dictionaries(st.text(max_size=5), _json_scalars))
def test_a_list_key_given_a_string_or_an_object_is_refused_naming_the_key(key: str, value: Any) -> None:
    error = _refusal({**_VALID, key: value})
    assert error.field == key
    assert "not an array" in error.problem


@given(
    st.sampled_from(_TEXT_KEYS),
    st.lists(st.text(max_size=5), max_size=3)
    | st.dictionaries(st.text(max_size=5), _json_scalars, max_size=2)
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans(),
)
def test_a_text_key_given_a_list_an_object_or_a_number_is_refused_naming_the_key(key: str, value: Any) -> None:
    error = _refusal({**_VALID, key: value})
    assert error.field == key
    assert "not " in error.problem


@pytest.mark.parametrize("key", sorted(_INPUT_FIELDS))
@pytest.mark.parametrize("value", [None, 5, True, "x", [], [1], {}, {"a": 1}])
def test_no_input_error_speaks_python(key: str, value: Any) -> None:
    said = _error_text(lambda: message_from_json(json.dumps({**_VALID, key: value}).encode()))
    assert not any(word in said for word in _PYTHON_WORDS), said


@pytest.mark.parametrize("nested", ["headers", "attachments"])
@pytest.mark.parametrize("key", ["name", "value", "content", "contentType", "filename", "disposition", "contentId"])
@pytest.mark.parametrize("value", [None, 5, "x", [1], {"a": 1}])
def test_no_nested_input_error_speaks_python(nested: str, key: str, value: Any) -> None:
    item = {"name": "X-A", "value": "1"} if nested == "headers" else {"content": "aGk=", "contentType": "text/plain"}
    said = _error_text(lambda: message_from_json(json.dumps({**_VALID, nested: [{**item, key: value}]}).encode()))
    assert not any(word in said for word in _PYTHON_WORDS), said


@pytest.mark.parametrize("cls", [Message, MessageEvent, Simulation, ObjectRef, ErrorDetail])
@pytest.mark.parametrize("value", [None, 5, "x", [1], {"a": 1}])
def test_no_response_error_speaks_python(cls: type, value: Any) -> None:
    for field in attrs.fields(cls):
        key = "".join(p if i == 0 else p.title() for i, p in enumerate(field.name.split("_")))
        body = json.dumps({"id": "m1", key: value}).encode()
        said = _error_text(lambda: from_json(body, cls, what="body", fix="report it"))  # noqa: B023
        assert not any(word in said for word in _PYTHON_WORDS), said


def test_a_response_list_given_text_is_kept_raw_not_read_one_character_at_a_time() -> None:
    message = from_json(b'{"id": "m1", "tags": "ab"}', Message, what="body", fix="")
    assert (message.tags, message.extra) == ((), {"tags": "ab"})
