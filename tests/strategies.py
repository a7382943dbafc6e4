"""Shared Hypothesis strategies: they generate only valid values, so a failure is the code's fault, not the data's."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from flowmailer.core import (
    Attachment,
    DeliveryNotificationType,
    Disposition,
    ErrorDetail,
    EventType,
    Header,
    Message,
    MessageEvent,
    MessageHeader,
    MessageType,
    ObjectRef,
    Simulation,
    SubmitMessage,
)

# --- wire models ----------------------------------------------------------------------------------------------

#: Whole seconds in UTC: Flowmailer's request dates carry nothing finer.
datetimes = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    lambda d: d.replace(microsecond=0)
)
texts = st.text(max_size=40)
optional_texts = st.none() | texts
names = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "")
addresses = st.from_regex(r"[a-z0-9._+-]{1,16}@[a-z0-9-]{1,12}\.[a-z]{2,6}", fullmatch=True)
#: Text that may go into a mail header: no control characters or line breaks (SubmitMessage refuses them).
_one_line = st.characters(exclude_categories=("Cc", "Zl", "Zp"))
header_texts = st.text(_one_line, max_size=40)
header_names = st.text(_one_line, min_size=1, max_size=20).filter(lambda s: s.strip() != "")
phone_numbers = st.from_regex(r"\+[1-9][0-9]{6,13}", fullmatch=True)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(texts, json_values, max_size=5)

_ONE_LINE = re.compile("[\\x00-\\x08\\x0a-\\x1f\\x7f\\x85\\u2028\\u2029]")
headers = st.builds(
    Header,
    names.filter(lambda s: "\r" not in s and "\n" not in s),
    texts.map(lambda s: s.replace("\r", "").replace("\n", "")),
)

#: A header SubmitMessage accepts: an RFC 5322 field name and a one-line value.
submit_headers = st.builds(
    Header, st.from_regex(r"[!-9;-~]{1,20}", fullmatch=True), texts.map(lambda s: _ONE_LINE.sub("", s))
)


@st.composite
def attachments(draw: st.DrawFn) -> Attachment:
    disposition = draw(st.none() | st.sampled_from(Disposition))
    content_id = draw(header_names if disposition is Disposition.RELATED else st.none() | header_names)
    return Attachment(
        content=draw(st.binary(max_size=64)),
        content_type=draw(st.sampled_from(["application/pdf", "image/png", "text/plain"])),
        filename=draw(st.none() | header_names),
        disposition=disposition,
        content_id=content_id,
    )


@st.composite
def submit_messages(draw: st.DrawFn, message_type: MessageType | None = None) -> SubmitMessage:
    kind = message_type or draw(st.sampled_from(MessageType))
    email = kind is MessageType.EMAIL
    address = addresses if email else phone_numbers
    email_only: dict[str, Any] = {}
    if email:
        email_only = {
            "header_from_address": draw(st.none() | addresses),
            "header_from_name": draw(st.none() | header_texts),
            "header_to_address": draw(st.none() | addresses),
            "header_to_name": draw(st.none() | header_texts),
            "html": draw(optional_texts),
            "mimedata": draw(st.none() | st.binary(max_size=64)),
            "attachments": draw(st.lists(attachments(), max_size=2)),
            "headers": draw(st.lists(submit_headers, max_size=2)),
        }
    sms_only: dict[str, Any] = {
        "delivery_notification_type": draw(st.none() | st.sampled_from(DeliveryNotificationType))
    }
    return SubmitMessage(
        message_type=kind,
        sender_address=draw(address),
        recipient_address=draw(address),
        subject=draw(st.none() | header_texts),
        text=draw(optional_texts),
        data=draw(st.none() | json_objects),
        tags=draw(st.lists(names, max_size=3)),
        flow_selector=draw(st.none() | names),
        schedule_at=draw(st.none() | datetimes),
        **email_only,
        **(sms_only if kind is MessageType.SMS else {}),
    )


error_details = st.builds(
    ErrorDetail,
    code=optional_texts,
    default_message=optional_texts,
    field=optional_texts,
    object_name=optional_texts,
    rejected_value=json_values,
    arguments=st.lists(json_values, max_size=3).map(tuple),
)

_KNOWN_EVENT_TYPES = {t.value for t in EventType}
event_types = st.none() | st.sampled_from(EventType) | names.filter(lambda s: s not in _KNOWN_EVENT_TYPES)
object_refs = st.builds(ObjectRef, id=optional_texts, description=optional_texts)
#: Headers as Flowmailer reports them: any name (folded, empty), a value or none.
message_headers = st.builds(MessageHeader, name=optional_texts, value=optional_texts)

message_events = st.builds(
    MessageEvent,
    id=optional_texts,
    message_id=optional_texts,
    type=event_types,
    received=st.none() | datetimes,
    inserted=st.none() | datetimes,
    data=st.none() | texts | json_objects,
    extra_data=st.none() | st.lists(json_values, max_size=3) | json_objects,
    snippet=optional_texts,
    mta=optional_texts,
    sub_type=optional_texts,
    tag=optional_texts,
    message_tags=st.lists(texts, max_size=3).map(tuple),
    link_name=optional_texts,
    link_target=optional_texts,
    user_agent=optional_texts,
    device_category=optional_texts,
    operating_system=optional_texts,
    remote_addr=optional_texts,
    referer=optional_texts,
)

_KNOWN_MESSAGE_TYPES = {t.value for t in MessageType}
message_types = st.none() | st.sampled_from(MessageType) | names.filter(lambda s: s not in _KNOWN_MESSAGE_TYPES)

messages = st.builds(
    Message,
    id=names,
    transaction_id=optional_texts,
    message_id_header=optional_texts,
    message_type=message_types,
    source=st.none() | object_refs,
    flow=st.none() | object_refs,
    sender_address=optional_texts,
    recipient_address=optional_texts,
    subject=optional_texts,
    status=optional_texts,
    submitted=st.none() | datetimes,
    backend_start=st.none() | datetimes,
    backend_done=st.none() | datetimes,
    online_link=optional_texts,
    tags=st.lists(texts, max_size=3).map(tuple),
    events=st.lists(message_events, max_size=2).map(tuple),
    headers_in=st.lists(message_headers, max_size=2).map(tuple),
    headers_out=st.lists(message_headers, max_size=2).map(tuple),
)

simulations = st.builds(
    Simulation,
    message_type=message_types,
    sender_address=optional_texts,
    recipient_address=optional_texts,
    subject=optional_texts,
    html=optional_texts,
    text=optional_texts,
    flow=st.none() | object_refs,
    data=st.none() | json_objects,
)

# --- ranges ---------------------------------------------------------------------------------------------------

#: Opaque references: visible ASCII without a colon (the separator in ``START:END``).
references = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"), max_size=30
)
counts = st.integers(min_value=1, max_value=999_999_999)
positions = st.integers(min_value=0, max_value=999_999_999)


# --- HTTP/1.1 header fields, as h11 renders and accepts them ----------------------------------------------------

#: RFC 9110 token characters, for header names and methods.
TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VCHAR = "".join(map(chr, [*range(0x21, 0x7F), *range(0x80, 0x100)]))
#: What h11 lets through as a field value: visible characters (obs-text too), spaces and tabs only inside.
header_values = st.builds(
    lambda first, middle, last: first + middle + last if middle else first,
    st.text(_VCHAR, min_size=1, max_size=1),
    st.text(_VCHAR + " \t", max_size=20),
    st.text(_VCHAR, min_size=1, max_size=1),
) | st.just("")
