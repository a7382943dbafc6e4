from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.core import (
    MAX_MESSAGE_BYTES,
    AccessToken,
    Attachment,
    ConfigurationError,
    Credentials,
    DeliveryNotificationType,
    Disposition,
    Header,
    MessageType,
    Secret,
    SubmitMessage,
    message_to_json,
)
from tests.strategies import submit_messages

SECRET = "s3cr3t-value-never-shown"


def email(**overrides: Any) -> SubmitMessage:
    fields: dict[str, Any] = {"sender_address": "shop@example.com", "recipient_address": "jane@example.org"}
    return SubmitMessage(**(fields | overrides))


def error(**overrides: Any) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        email(**overrides)
    return info.value


@pytest.mark.parametrize("field", ["sender_address", "recipient_address"])
@pytest.mark.parametrize("value", ["", "   "])
def test_missing_or_empty_address_names_the_field(field: str, value: str) -> None:
    assert error(**{field: value}).field == field


@pytest.mark.parametrize(
    ("field", "name_field"),
    [
        ("sender_address", "header_from_name"),
        ("header_from_address", "header_from_name"),
        ("recipient_address", "header_to_name"),
        ("header_to_address", "header_to_name"),
    ],
)
def test_address_with_a_display_name_is_refused_with_the_fix(field: str, name_field: str) -> None:
    e = error(**{field: "Bob <bob@example.com>"})
    assert e.field == field
    assert e.fix.endswith(f"put the name in {name_field}")


EMAIL_ADDRESS_FIELDS = ["sender_address", "recipient_address", "header_from_address", "header_to_address"]


@pytest.mark.parametrize("field", EMAIL_ADDRESS_FIELDS)
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not-an-address", "has no @"),
        ("a@b@example.com", "more than one @"),
        ("@example.com", "nothing before the @"),
        ("bob@", "no domain"),
        ("bob @example.com", "white space"),
        ("bob@exa<mple.com", "contains <"),
    ],
)
def test_an_email_address_of_the_wrong_shape_is_refused_naming_the_field(field: str, value: str, problem: str) -> None:
    e = error(**{field: value})
    assert e.field == field
    assert "display name" not in e.problem
    assert problem in e.problem


@given(st.text(max_size=20))
def test_every_accepted_email_address_has_one_at_between_two_parts_and_no_space(value: str) -> None:
    try:
        email(recipient_address=value)
    except ConfigurationError:
        return
    local, _, domain = value.partition("@")
    assert local
    assert domain
    assert "@" not in domain
    assert not any(c.isspace() for c in value)


@pytest.mark.parametrize("field", ["sender_address", "recipient_address"])
@pytest.mark.parametrize("value", ["bob@example.com", "06-12345678", "+", "+31 6 12345678", "++31612345678"])
def test_an_sms_number_that_is_not_digits_with_an_optional_plus_is_refused(field: str, value: str) -> None:
    numbers = {"sender_address": "+31600000000", "recipient_address": "0611111111"} | {field: value}
    with pytest.raises(ConfigurationError) as info:
        SubmitMessage(
            message_type=MessageType.SMS,
            sender_address=numbers["sender_address"],
            recipient_address=numbers["recipient_address"],
        )
    assert info.value.field == field
    assert "+31612345678" in info.value.fix


EMAIL_ONLY: dict[str, Any] = {
    "html": "<p>hi</p>",
    "header_from_address": "a@example.com",
    "header_from_name": "A",
    "header_to_address": "b@example.com",
    "header_to_name": "B",
    "mimedata": b"MIME-Version: 1.0",
    "attachments": [Attachment(b"x", "text/plain")],
    "headers": [Header("X-A", "1")],
}


@pytest.mark.parametrize("kind", [MessageType.SMS, MessageType.LETTER])
@pytest.mark.parametrize("field", sorted(EMAIL_ONLY))
def test_email_only_field_on_sms_or_letter_is_refused(kind: MessageType, field: str) -> None:
    assert error(message_type=kind, **{field: EMAIL_ONLY[field]}).field == field


@pytest.mark.parametrize("kind", [MessageType.EMAIL, MessageType.LETTER])
def test_delivery_notification_type_on_non_sms_is_refused(kind: MessageType) -> None:
    e = error(message_type=kind, delivery_notification_type=DeliveryNotificationType.FAILURE)
    assert e.field == "delivery_notification_type"


def test_delivery_notification_type_on_sms_is_accepted() -> None:
    sms = email(
        message_type=MessageType.SMS,
        sender_address="+31600000000",
        recipient_address="+31611111111",
        delivery_notification_type=DeliveryNotificationType.NONE,
    )
    assert sms.delivery_notification_type is DeliveryNotificationType.NONE


def test_message_type_that_is_not_the_enum_is_refused() -> None:
    assert error(message_type="EMAIL").field == "message_type"


def test_related_attachment_without_content_id_is_refused() -> None:
    with pytest.raises(ConfigurationError) as info:
        Attachment(b"png", "image/png", disposition=Disposition.RELATED)
    assert info.value.field == "attachment.content_id"


def test_related_attachment_with_content_id_is_accepted() -> None:
    assert Attachment(b"png", "image/png", disposition=Disposition.RELATED, content_id="logo").content_id == "logo"


def test_attachment_without_content_type_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="content_type"):
        Attachment(b"x", "")


@pytest.mark.parametrize(("name", "value"), [("", "v"), ("X-A", "a\r\nBcc: evil@example.com")])
def test_header_without_name_or_with_a_line_break_is_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError):
        Header(name, value)


def test_empty_tag_is_refused() -> None:
    assert error(tags=["ok", ""]).field == "tags"


def test_sequences_become_tuples() -> None:
    m = email(tags=["a", "b"], headers=[Header("X-A", "1")], attachments=[Attachment(b"x", "text/plain")])
    assert m.tags == ("a", "b")
    assert isinstance(m.headers, tuple)
    assert isinstance(m.attachments, tuple)


def test_naive_schedule_at_is_refused() -> None:
    assert error(schedule_at=datetime(2030, 1, 1, 12)).field == "schedule_at"


def test_schedule_at_is_normalised_to_utc_whole_seconds() -> None:
    cet = timezone(timedelta(hours=1))
    m = email(schedule_at=datetime(2030, 1, 1, 13, 0, 5, 999_999, tzinfo=cet))
    assert m.schedule_at == datetime(2030, 1, 1, 12, 0, 5, tzinfo=UTC)
    assert m.schedule_at is not None
    assert m.schedule_at.tzinfo is UTC


@pytest.mark.parametrize("data", [{"when": datetime(2030, 1, 1)}, {"x": float("nan")}, ["not", "an", "object"]])
def test_data_that_is_not_a_json_object_is_refused(data: Any) -> None:
    assert error(data=data).field == "data"


def test_data_is_a_private_copy() -> None:
    data: dict[str, Any] = {"items": [1, 2]}
    m = email(data=data)
    data["items"].append(3)
    assert m.data == {"items": [1, 2]}


def test_message_with_data_is_still_hashable() -> None:
    assert hash(email(data={"a": 1})) == hash(email(data={"a": 2}))


def _size_of_text(n: int) -> int:
    return len(message_to_json(email(text="a" * n)))


def test_message_of_exactly_ten_mib_as_json_is_accepted() -> None:
    overhead = _size_of_text(0)
    assert _size_of_text(MAX_MESSAGE_BYTES - overhead) == MAX_MESSAGE_BYTES


def test_message_one_byte_over_ten_mib_as_json_is_refused() -> None:
    overhead = _size_of_text(0)
    e = error(text="a" * (MAX_MESSAGE_BYTES - overhead + 1))
    assert e.field == "message"
    assert str(MAX_MESSAGE_BYTES + 1) in e.problem


def test_attachment_that_base64_pushes_over_ten_mib_is_refused() -> None:
    content = bytes(MAX_MESSAGE_BYTES * 3 // 4 + 1)
    assert error(attachments=[Attachment(content, "application/pdf")]).field == "message"


def test_with_client_reference_adds_the_tag_and_keeps_the_others() -> None:
    m = email(tags=["invoice"]).with_client_reference("abc")
    assert m.tags == ("invoice", "ref:abc")
    assert m.client_reference() == "abc"


def test_with_client_reference_replaces_an_earlier_reference() -> None:
    m = email().with_client_reference("one").with_client_reference("two")
    assert m.tags == ("ref:two",)


def test_client_reference_with_a_custom_prefix() -> None:
    m = email(tags=["ref:other"]).with_client_reference("42", prefix="cid-")
    assert m.client_reference(prefix="cid-") == "42"
    assert m.client_reference() == "other"


def test_client_reference_is_none_without_the_tag() -> None:
    assert email(tags=["invoice"]).client_reference() is None


def test_empty_client_reference_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="ref"):
        email().with_client_reference("")


def test_empty_client_reference_prefix_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        email(tags=["invoice"]).with_client_reference("abc", prefix="")
    with pytest.raises(ConfigurationError, match="prefix"):
        email(tags=["invoice"]).client_reference(prefix="")


@given(submit_messages())
def test_client_reference_round_trips_on_any_valid_message(message: SubmitMessage) -> None:
    assert message.with_client_reference("r-1").client_reference() == "r-1"


@given(submit_messages(), st.text(max_size=40).filter(str.strip))
def test_with_client_reference_equals_the_message_built_with_that_tag(message: SubmitMessage, ref: str) -> None:
    tags = (*(t for t in message.tags if not t.startswith("ref:")), f"ref:{ref}")
    assert message.with_client_reference(ref) == attrs.evolve(message, tags=tags)


def test_with_client_reference_refuses_a_tag_that_pushes_the_message_over_ten_mib() -> None:
    untagged = email(text="a" * (MAX_MESSAGE_BYTES - _size_of_text(0) - 4))
    with pytest.raises(ConfigurationError) as e:
        untagged.with_client_reference("abc")
    assert e.value.field == "message"


def test_credentials_secret_never_appears_in_repr_str_or_format() -> None:
    c = Credentials("acc", "client", SECRET)
    for shown in (repr(c), str(c), f"{c}", f"{c!r}", repr([c])):
        assert SECRET not in shown
    assert "client" in repr(c)


@pytest.mark.parametrize("field", ["account_id", "client_id", "client_secret"])
def test_credentials_errors_name_the_field_and_never_the_secret(field: str) -> None:
    values = {"account_id": "acc", "client_id": "client", "client_secret": SECRET} | {field: ""}
    with pytest.raises(ConfigurationError) as info:
        Credentials(**values)
    assert info.value.field == field
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.args)


def test_access_token_value_is_hidden_in_repr() -> None:
    token = AccessToken.issued("tok-value-123", 60, now=1000.0)
    assert "tok-value-123" not in repr(token)
    assert "tok-value-123" not in str(token)


def test_access_token_expires_at_is_now_plus_expires_in() -> None:
    assert AccessToken.issued("t", 60, now=1000.5).expires_at == 1060.5


def test_models_are_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        email().subject = "changed"  # type: ignore[misc]


def test_credentials_secret_does_not_travel_in_asdict_pickle_or_copies() -> None:
    c = Credentials("acc", "client", SECRET)
    assert SECRET not in repr(attrs.asdict(c))
    assert SECRET not in str(attrs.astuple(c))
    with pytest.raises(TypeError, match="secrets are not pickled"):
        pickle.dumps(c)
    assert copy.deepcopy(c) == c == attrs.evolve(c)
    assert c.client_secret.reveal() == SECRET
    assert repr(c.client_secret) == str(c.client_secret) == "'********'"


def test_credentials_take_a_secret_or_text_and_compare_by_value() -> None:
    assert Credentials("acc", "client", Secret(SECRET)) == Credentials("acc", "client", SECRET)
    assert Credentials("acc", "client", SECRET) != Credentials("acc", "client", "other")
    assert hash(Credentials("acc", "client", SECRET)) == hash(Credentials("acc", "client", Secret(SECRET)))
    with pytest.raises(AttributeError):
        Secret(SECRET)._value = "x"


COLLECTION_FIELDS = ["tags", "headers", "attachments"]
TEXT_FIELDS = [
    "sender_address",
    "recipient_address",
    "header_from_address",
    "header_from_name",
    "header_to_address",
    "header_to_name",
    "subject",
    "html",
    "text",
    "flow_selector",
]
PYTHON_WORDS = ("NoneType", "datetime.", "| None", "expected bytes", "<class", "typing.", "flowmailer.core")
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)


@given(
    st.sampled_from(COLLECTION_FIELDS),
    st.text(max_size=10) | st.binary(max_size=10) | st.dictionaries(st.text(max_size=5), _scalars, max_size=3),
)
def test_a_collection_field_given_text_bytes_or_a_mapping_is_refused_naming_it(field: str, value: Any) -> None:
    e = error(**{field: value})
    assert e.field == field
    assert "not a list" in e.problem


@given(
    st.sampled_from(TEXT_FIELDS),
    st.lists(st.text(max_size=5), max_size=3)
    | st.dictionaries(st.text(max_size=5), _scalars, max_size=2)
    | st.integers()
    | st.floats()
    | st.binary(max_size=5),
)
def test_a_text_field_given_a_list_a_dict_or_a_number_is_refused_naming_it(field: str, value: Any) -> None:
    e = error(**{field: value})
    assert e.field == field
    assert "not text" in e.problem


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("tags", ["ok", 5], "tags"),
        ("headers", [("X-A", "1")], "headers[0]"),
        ("attachments", [Attachment(b"x", "text/plain"), b"raw"], "attachments[1]"),
    ],
)
def test_a_collection_holding_the_wrong_kind_names_the_position(field: str, value: Any, where: str) -> None:
    assert error(**{field: value}).field == where


ALL_FIELDS = [
    *TEXT_FIELDS,
    *COLLECTION_FIELDS,
    "message_type",
    "mimedata",
    "data",
    "delivery_notification_type",
    "schedule_at",
]


@pytest.mark.parametrize("field", ALL_FIELDS)
@pytest.mark.parametrize("value", [None, 5, 2.5, True, "x", b"x", [1], {"a": 1}, datetime(2030, 1, 1), object()])
def test_no_model_error_speaks_python(field: str, value: Any) -> None:
    try:
        email(**{field: value})
        said = ""
    except ConfigurationError as e:
        said = str(e)
    assert not any(word in said for word in PYTHON_WORDS), said


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda v: Header(v, "1"), "header.name"),
        (lambda v: Header("X-A", v), "header.value"),
        (lambda v: Attachment(v, "text/plain"), "attachment.content"),
        (lambda v: Attachment(b"x", v), "attachment.content_type"),
        (lambda v: Attachment(b"x", "text/plain", filename=v), "attachment.filename"),
        (lambda v: Attachment(b"x", "text/plain", disposition=v), "attachment.disposition"),
        (lambda v: Attachment(b"x", "text/plain", content_id=v), "attachment.content_id"),
        (lambda v: Credentials(v, "client", SECRET), "account_id"),
        (lambda v: Credentials("acc", v, SECRET), "client_id"),
        (lambda v: Credentials("acc", "client", v), "client_secret"),
    ],
)
@pytest.mark.parametrize("value", [5, [1], {"a": 1}, object()])
def test_nested_models_refuse_the_wrong_type_naming_the_field_in_plain_words(
    build: Callable[[object], object], field: str, value: object
) -> None:
    with pytest.raises(ConfigurationError) as info:
        build(value)
    assert info.value.field == field
    assert not any(word in str(info.value) for word in PYTHON_WORDS), str(info.value)


HEADER_FIELDS = ["subject", "header_from_name", "header_to_name"]


@pytest.mark.parametrize("field", HEADER_FIELDS)
@pytest.mark.parametrize("bad", ["\r", "\n", "\r\n", "\x00", "\x1b", "\x7f", "\u2028"])
def test_text_that_becomes_a_mail_header_refuses_line_breaks_and_control_characters(field: str, bad: str) -> None:
    e = error(**{field: f"Hello{bad}Bcc: evil@example.com"})
    assert e.field == field
    assert "break the mail header" in e.problem


@pytest.mark.parametrize("field", EMAIL_ADDRESS_FIELDS)
def test_an_address_with_a_line_break_is_refused(field: str) -> None:
    assert error(**{field: "bob@example.com\r\nBcc: evil@example.com"}).field == field


def test_a_tab_in_a_subject_is_kept() -> None:
    assert email(subject="a\tb").subject == "a\tb"


@pytest.mark.parametrize(
    ("header", "field"),
    [
        (Header("X-A", "1\x00"), "headers[0].value"),
        (Header("X A", "1"), "headers[0].name"),
        (Header("X-A:", "1"), "headers[0].name"),
        (Header("X-\u00c4", "1"), "headers[0].name"),
    ],
)
def test_a_custom_header_must_be_one_valid_header_line(header: Header, field: str) -> None:
    assert error(headers=[header]).field == field


@pytest.mark.parametrize("name", ["filename", "content_id", "content_type"])
def test_attachment_text_that_becomes_a_mime_header_refuses_line_breaks(name: str) -> None:
    values: dict[str, Any] = {"content_type": "text/plain", name: "a\r\nX-Evil: 1"}
    with pytest.raises(ConfigurationError) as info:
        Attachment(b"x", **values)
    assert info.value.field == f"attachment.{name}"
