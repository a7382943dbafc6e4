"""Flowmailer's resources as frozen values, validated at construction."""

from __future__ import annotations

import enum
import hmac
import json
import math
import re
import typing
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from flowmailer.core._errors import ConfigurationError

__all__ = [
    "MAX_MESSAGE_BYTES",
    "AccessToken",
    "Address",
    "ArchivedAttachment",
    "Attachment",
    "Credentials",
    "DeliveryNotificationType",
    "Disposition",
    "ErrorDetail",
    "EventType",
    "Header",
    "Message",
    "MessageEvent",
    "MessageHeader",
    "MessageType",
    "ObjectRef",
    "Secret",
    "Simulation",
    "SubmitMessage",
]

#: Flowmailer refuses a message whose JSON body is larger than this ("message.toobig").
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@attrs.frozen
class ErrorDetail:
    """One entry of Flowmailer's ``allErrors`` list."""

    code: str | None = None
    default_message: str | None = None
    field: str | None = None
    object_name: str | None = None
    # Left out of the hash: Flowmailer may echo lists and objects here.
    rejected_value: object = attrs.field(default=None, hash=False)
    arguments: tuple[object, ...] = attrs.field(default=(), hash=False)

    def describe(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{where}{self.default_message or self.code or 'error'}"


class MessageType(enum.Enum):
    EMAIL = "EMAIL"
    SMS = "SMS"
    LETTER = "LETTER"


class DeliveryNotificationType(enum.Enum):
    """Which SMS delivery reports Flowmailer asks the carrier for."""

    NONE = "NONE"
    FAILURE = "FAILURE"
    DELIVERY_AND_FAILURE = "DELIVERY_AND_FAILURE"


class Disposition(enum.Enum):
    ATTACHMENT = "attachment"
    INLINE = "inline"
    RELATED = "related"


class EventType(enum.Enum):
    """The event types Flowmailer documents; a new one arrives as a plain ``str`` instead of failing."""

    SOFTBOUNCE = "SOFTBOUNCE"
    HARDBOUNCE = "HARDBOUNCE"
    COMPLAINT = "COMPLAINT"
    UNSUBSCRIBE = "UNSUBSCRIBE"
    REJECT = "REJECT"
    DISCARD = "DISCARD"
    DELIVERED = "DELIVERED"
    POSTED = "POSTED"
    ATTEMPT = "ATTEMPT"
    QUEUEATTEMPT = "QUEUEATTEMPT"
    SUBMITTED = "SUBMITTED"
    PROCESSED = "PROCESSED"
    INSERTED = "INSERTED"
    OPENED = "OPENED"
    CLICKED = "CLICKED"
    HELD = "HELD"
    CUSTOM = "CUSTOM"
    REPLY = "REPLY"
    RESENT = "RESENT"
    SUSPENDED = "SUSPENDED"
    RESUBMITTED = "RESUBMITTED"
    ERROR = "ERROR"
    RESUMED = "RESUMED"
    EVENT_SUSPENDED = "EVENT_SUSPENDED"
    EVENT_ERROR = "EVENT_ERROR"
    EVENT_RESUMED = "EVENT_RESUMED"
    EVENT_DISCARD = "EVENT_DISCARD"


def _utc_seconds(value: datetime) -> datetime:
    """Flowmailer's request dates have whole seconds in UTC; normalising here keeps wire round trips exact."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigurationError(
            "schedule_at",
            f"{value.isoformat()} has no time zone",
            "pass an aware datetime, e.g. datetime(2026, 1, 31, 12, 0, tzinfo=UTC)",
        )
    return value.astimezone(UTC).replace(microsecond=0)


def _optional_utc_seconds(value: datetime | None) -> datetime | None:
    if value is not None and not isinstance(value, datetime):
        raise ConfigurationError(
            "schedule_at",
            f"is {_kind(value)}, not a date and time",
            "pass an aware datetime such as datetime(2026, 1, 31, 12, 0, tzinfo=UTC), or None to send at once",
        )
    return None if value is None else _utc_seconds(value)


def _json_object(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Only the type: ``SubmitMessage`` then copies ``data`` through JSON, and its JSON size comes for free."""
    if value is not None and not isinstance(value, Mapping):
        raise ConfigurationError("data", f"is {_kind(value)}, not a mapping", "pass a dict (a JSON object), or None")
    return value  # type: ignore[return-value]  # a Mapping until __attrs_post_init__ makes it a dict


def _json_text(value: Mapping[str, Any]) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigurationError("data", f"is not JSON ({e})", "use only str, numbers, bools, lists, dicts") from e


def _tags(value: Iterable[str]) -> tuple[str, ...]:
    tags = _collection("tags", value, "strings, e.g. ['invoice']")
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not tag:
            raise ConfigurationError(
                "tags", f"tag {i} is {_kind(tag)}, not a non-empty string", "give non-empty strings"
            )
    return tags


def _headers(value: Iterable[Header]) -> tuple[Header, ...]:
    headers = _collection("headers", value, "Header values, e.g. [Header('X-Order', '1234')]")
    for i, header in enumerate(headers):
        if not isinstance(header, Header):
            raise ConfigurationError(
                f"headers[{i}]", f"is {_kind(header)}, not a Header", "build it with Header(name, value)"
            )
    return headers


def _attachments(value: Iterable[Attachment]) -> tuple[Attachment, ...]:
    attachments = _collection("attachments", value, "Attachment values")
    for i, attachment in enumerate(attachments):
        if not isinstance(attachment, Attachment):
            raise ConfigurationError(
                f"attachments[{i}]",
                f"is {_kind(attachment)}, not an Attachment",
                "build it with Attachment(content, content_type)",
            )
    return attachments


def _check_bytes(field: str, value: object, *, required: bool = False) -> None:
    if value is None and not required:
        return
    if not isinstance(value, bytes):
        encode = " (text: encode it, e.g. text.encode())" if isinstance(value, str) else ""
        raise ConfigurationError(field, f"is {_kind(value)}, not bytes", f"give {field} as bytes{encode}")


def _check_enum(field: str, value: object, kind: type[enum.Enum], *, required: bool = False) -> None:
    if value is None and not required:
        return
    if not isinstance(value, kind):
        names = ", ".join(f"{kind.__name__}.{m.name}" for m in kind)
        raise ConfigurationError(field, f"is {_kind(value)}, not a {kind.__name__}", f"use one of {names}")


def _kind(value: object) -> str:
    """A value as a user names it, never as a Python type (``NoneType``) or a class repr."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    if isinstance(value, bytes | bytearray | memoryview):
        return "bytes"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, Mapping):
        return "a mapping (a dict)"
    if isinstance(value, list | tuple | set | frozenset):
        return f"a {type(value).__name__}"
    return f"a {type(value).__name__} value"


def _check_text(field: str, value: object, *, required: bool = False) -> None:
    """A string field holds a string (or None where it is optional): ``str(x)`` would send a Python repr."""
    if value is None and not required:
        return
    if not isinstance(value, str):
        optional = "" if required else ", or None to leave it out"
        raise ConfigurationError(field, f"is {_kind(value)}, not text", f"give {field} as a string{optional}")


#: Characters that would end or break a mail header line: C0 controls but tab, DEL, and Unicode line breaks.
_HEADER_BREAKING = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def _check_header_text(field: str, value: str | None) -> None:
    """Text that becomes (part of) a mail header: a line break there could end it and inject another header."""
    if value is not None and (found := _HEADER_BREAKING.search(value)):
        what = "a line break" if found.group() in "\r\n\x85\u2028\u2029" else "a control character"
        raise ConfigurationError(
            field,
            f"contains {what} (U+{ord(found.group()):04X}), which would break the mail header it becomes",
            "remove line breaks and control characters; a header is one line",
        )


def _collection(field: str, value: object, element: str) -> tuple[Any, ...]:
    """A list-like field: text would be read one character at a time and a mapping as its keys, so both are refused."""
    if isinstance(value, str | bytes | bytearray | memoryview | Mapping) or not isinstance(value, Iterable):
        raise ConfigurationError(field, f"is {_kind(value)}, not a list of {element}", f"give a list of {element}")
    return tuple(value)


def _require_text(field: str, value: str | None, fix: str) -> None:
    if not value or not value.strip():
        raise ConfigurationError(field, "is missing or empty", fix)


#: ``Bob <bob@example.com>`` or ``<bob@example.com>``: what a display name looks like, and nothing else.
_DISPLAY_NAME = re.compile(r"[^<>]*<[^<>]*>\s*")
#: What no address holds: white space (``\s`` is ``str.isspace`` for text), and the characters of a display name.
_WHITE_SPACE = re.compile(r"\s")
_ANGLE_OR_QUOTE = re.compile(r'[<>"]')
_PHONE_NUMBER = re.compile(r"\+?[0-9]+")


#: Where the display name goes that an address field must not carry.
_NAME_FIELD = {"sender_address": "header_from_name", "header_from_address": "header_from_name"}


def _check_email_address(field: str, value: str) -> None:
    """The shape Flowmailer accepts (it answers 400 otherwise): one ``@`` between a local part and a domain."""
    if _DISPLAY_NAME.fullmatch(value):
        raise ConfigurationError(
            field,
            f"{value!r} carries a display name",
            f"give the bare address (bob@example.com) and put the name in {_NAME_FIELD.get(field, 'header_to_name')}",
        )
    local, at, domain = value.partition("@")
    if _WHITE_SPACE.search(value):
        problem = "contains white space"
    elif _ANGLE_OR_QUOTE.search(value):
        problem = 'contains <, > or "'
    elif not at:
        problem = "has no @"
    elif "@" in domain:
        problem = "has more than one @"
    elif not local:
        problem = "has nothing before the @"
    elif not domain:
        problem = "has no domain after the @"
    else:
        return
    raise ConfigurationError(
        field, f"{value!r} is not an email address: it {problem}", "give one address such as bob@example.com"
    )


def _check_phone_number(field: str, value: str) -> None:
    if not _PHONE_NUMBER.fullmatch(value):
        raise ConfigurationError(
            field,
            f"{value!r} is not a phone number",
            "give digits only, with an optional leading + and country code, e.g. +31612345678",
        )


@attrs.frozen
class Header:
    """An extra email header."""

    name: str
    value: str

    def __attrs_post_init__(self) -> None:
        _check_text("header.name", self.name, required=True)
        _check_text("header.value", self.value, required=True)
        _require_text("header.name", self.name, "give every extra header a name")
        if any(c in self.name + self.value for c in "\r\n"):
            raise ConfigurationError("header", f"{self.name!r} contains a line break", "remove CR and LF")


@attrs.frozen
class Attachment:
    """A file carried with an email; ``content`` is raw bytes, base64 only on the wire."""

    content: bytes
    content_type: str
    filename: str | None = None
    disposition: Disposition | None = None
    content_id: str | None = None

    def __attrs_post_init__(self) -> None:
        _check_bytes("attachment.content", self.content, required=True)
        _check_text("attachment.content_type", self.content_type, required=True)
        for name in ("filename", "content_id"):
            _check_text(f"attachment.{name}", getattr(self, name))
        _check_enum("attachment.disposition", self.disposition, Disposition)
        # Each becomes part of a MIME header (Content-Type, Content-Disposition, Content-ID).
        for name in ("content_type", "filename", "content_id"):
            _check_header_text(f"attachment.{name}", getattr(self, name))
        _require_text("attachment.content_type", self.content_type, "give the MIME type, e.g. application/pdf")
        if self.disposition is Disposition.RELATED and not self.content_id:
            raise ConfigurationError(
                "attachment.content_id",
                f"a related attachment ({self.filename or self.content_type}) has no content_id",
                "set content_id to the cid the HTML refers to",
            )


def _string_bound(value: str | None) -> int:
    # A code point costs at most 12 bytes of ASCII-escaped JSON (a surrogate pair, \\uXXXX\\uXXXX).
    return 0 if value is None else 12 * len(value) + 32


def _bytes_bound(value: bytes | None) -> int:
    return 0 if value is None else 4 * math.ceil(len(value) / 3) + 32


_EMAIL_TEXT = ("html", "header_from_address", "header_from_name", "header_to_address", "header_to_name")
_EMAIL_ONLY = (*_EMAIL_TEXT, "mimedata", "attachments", "headers")
_EMAIL_ADDRESSES = ("sender_address", "recipient_address", "header_from_address", "header_to_address")
_REQUIRED_TEXT = ("sender_address", "recipient_address")
_TEXT = (*_REQUIRED_TEXT, *_EMAIL_TEXT, "subject", "text", "flow_selector")
#: The fields that become mail headers (or the envelope): one line each.
_HEADER_TEXT = (*_EMAIL_ADDRESSES, "header_from_name", "header_to_name", "subject")
#: RFC 5322's field name: printable ASCII but the colon.
_HEADER_NAME = re.compile(r"[!-9;-~]+")


@attrs.frozen(kw_only=True)
class SubmitMessage:
    """One message for ``POST messages/submit``; everything Flowmailer would refuse is refused here first."""

    message_type: MessageType = MessageType.EMAIL
    sender_address: str
    recipient_address: str
    header_from_address: str | None = None
    header_from_name: str | None = None
    header_to_address: str | None = None
    header_to_name: str | None = None
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    mimedata: bytes | None = None
    attachments: tuple[Attachment, ...] = attrs.field(default=(), converter=_attachments)
    data: dict[str, Any] | None = attrs.field(default=None, converter=_json_object, hash=False)
    tags: tuple[str, ...] = attrs.field(default=(), converter=_tags)
    flow_selector: str | None = None
    delivery_notification_type: DeliveryNotificationType | None = None
    schedule_at: datetime | None = attrs.field(default=None, converter=_optional_utc_seconds)
    headers: tuple[Header, ...] = attrs.field(default=(), converter=_headers)
    #: An upper bound on the JSON size, kept so that re-tagging a message needs no second pass over it.
    _bound: int = attrs.field(init=False, eq=False, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        _check_enum("message_type", self.message_type, MessageType, required=True)
        for name in _TEXT:
            _check_text(name, getattr(self, name), required=name in _REQUIRED_TEXT)
        for name in _HEADER_TEXT:
            _check_header_text(name, getattr(self, name))
        for i, header in enumerate(self.headers):
            if not _HEADER_NAME.fullmatch(header.name):
                raise ConfigurationError(
                    f"headers[{i}].name",
                    f"{header.name!r} is not a header name",
                    "use printable ASCII without spaces or a colon, e.g. X-Order-Id",
                )
            _check_header_text(f"headers[{i}].value", header.value)
        _check_bytes("mimedata", self.mimedata)
        _check_enum("delivery_notification_type", self.delivery_notification_type, DeliveryNotificationType)
        _require_text("sender_address", self.sender_address, "give the sender's address (or phone number for SMS)")
        _require_text("recipient_address", self.recipient_address, "give the recipient's address or phone number")
        if self.message_type is not MessageType.EMAIL:
            kind = self.message_type.value
            for name in _EMAIL_ONLY:
                if getattr(self, name):
                    raise ConfigurationError(name, f"is for EMAIL only, not {kind}", f"remove {name} from {kind}s")
        if self.message_type is MessageType.EMAIL:
            for name in _EMAIL_ADDRESSES:
                if (value := getattr(self, name)) is not None:
                    _check_email_address(name, value)
        elif self.message_type is MessageType.SMS:
            _check_phone_number("sender_address", self.sender_address)
            _check_phone_number("recipient_address", self.recipient_address)
        if self.delivery_notification_type is not None and self.message_type is not MessageType.SMS:
            raise ConfigurationError(
                "delivery_notification_type",
                f"is for SMS only, not {self.message_type.value}",
                "remove delivery_notification_type",
            )
        data_size = 0
        if self.data is not None:
            # A private copy exactly as JSON will carry it, so the frozen message cannot change under us.
            text = _json_text(self.data)
            object.__setattr__(self, "data", json.loads(text))
            data_size = len(text)
        object.__setattr__(self, "_bound", self._size_bound(data_size))
        self._check_size()

    def _check_size(self) -> None:
        """Encode only a message whose bound is over the limit: the bound costs no encoding."""
        if self._bound > MAX_MESSAGE_BYTES:
            from flowmailer.core._wire import message_to_json

            size = len(message_to_json(self))
            if size > MAX_MESSAGE_BYTES:
                raise ConfigurationError(
                    "message",
                    f"is {size} bytes as JSON, over Flowmailer's limit of {MAX_MESSAGE_BYTES}",
                    "send large files as links, or shrink the attachments",
                )

    def _size_bound(self, data_size: int) -> int:
        """An upper bound on the JSON size that costs no encoding; only messages near the limit are encoded."""
        bound = 1024 + sum(_string_bound(getattr(self, name)) for name in (*_EMAIL_TEXT, "subject", "text"))
        bound += _string_bound(self.sender_address) + _string_bound(self.recipient_address)
        bound += _string_bound(self.flow_selector) + _bytes_bound(self.mimedata)
        bound += sum(_string_bound(t) for t in self.tags)
        bound += sum(_string_bound(h.name) + _string_bound(h.value) for h in self.headers)
        for a in self.attachments:
            bound += _bytes_bound(a.content) + _string_bound(a.content_type) + 128
            bound += _string_bound(a.filename) + _string_bound(a.content_id)
        return bound + data_size

    def with_client_reference(self, ref: str, prefix: str = "ref:") -> SubmitMessage:
        """A copy tagged ``<prefix><ref>``, so that an ambiguous submission can be found again by tag."""
        _require_text("ref", ref, "give a unique reference, e.g. str(uuid.uuid4())")
        _require_text("prefix", prefix, 'keep the default "ref:" or give another non-empty prefix')
        tag = f"{prefix}{ref}"
        kept = tuple(t for t in self.tags if not t.startswith(prefix))
        # Only the tags change, to valid ones: copy the checked fields as they are instead of checking them again.
        tagged: SubmitMessage = object.__new__(SubmitMessage)
        for name in _FIELDS:
            object.__setattr__(tagged, name, getattr(self, name))
        object.__setattr__(tagged, "tags", (*kept, tag))
        dropped = sum(_string_bound(t) for t in self.tags if t.startswith(prefix))
        object.__setattr__(tagged, "_bound", self._bound - dropped + _string_bound(tag))
        tagged._check_size()
        return tagged

    def client_reference(self, prefix: str = "ref:") -> str | None:
        _require_text("prefix", prefix, 'keep the default "ref:" or give another non-empty prefix')
        for tag in self.tags:
            if tag.startswith(prefix):
                return tag[len(prefix) :]
        return None


_FIELDS = tuple(a.name for a in attrs.fields(SubmitMessage) if a.name not in ("tags", "_bound"))


#: What a response model keeps of the answer that none of its fields holds: keys it does not know (Flowmailer
#: adds fields) and values of a kind its field cannot hold, each under its JSON key, as Flowmailer sent it.
def _extra() -> Any:
    return attrs.field(factory=dict, hash=False, kw_only=True, repr=lambda v: repr(v) if v else "{}")


@attrs.frozen
class ObjectRef:
    """A flow, source or account as another resource names it (Flowmailer's ObjectDescription)."""

    id: str | None = None
    description: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class MessageHeader:
    """A header as Flowmailer reports it on a message: it saw the mail, so name and value may be anything (a folded
    name, no value); :class:`Header` is the one a submitted message carries, and is checked."""

    name: str | None = None
    value: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class MessageEvent:
    """One entry of ``message_events``; tolerant, because Flowmailer adds fields and event types.

    ``data`` and ``extra_data`` are typed ``object``: Flowmailer describes ``data`` as text and ``extraData`` as a
    list, and answers objects in both, so each is kept as the JSON value it is.
    """

    id: str | None = None
    message_id: str | None = None
    type: EventType | str | None = None
    received: datetime | None = None
    inserted: datetime | None = None
    data: object = attrs.field(default=None, hash=False)
    extra_data: object = attrs.field(default=None, hash=False)
    snippet: str | None = None
    mta: str | None = None
    sub_type: str | None = None
    tag: str | None = None
    message_tags: tuple[str, ...] = ()
    link_name: str | None = None
    link_target: str | None = None
    user_agent: str | None = None
    user_agent_display_name: str | None = None
    user_agent_string: str | None = None
    user_agent_type: str | None = None
    user_agent_version: str | None = None
    device_category: str | None = None
    operating_system: str | None = None
    operating_system_version: str | None = None
    remote_addr: str | None = None
    referer: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class Address:
    """An address with its display name, as a message's ``fromAddress`` and ``toAddressList`` carry them."""

    address: str | None = None
    name: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class Message:
    """A message as ``GET messages/{id}`` and the message listings return it; every field may be absent."""

    id: str | None = None
    transaction_id: str | None = None
    message_id_header: str | None = None
    message_type: MessageType | str | None = None
    source: ObjectRef | None = None
    flow: ObjectRef | None = None
    sender_address: str | None = None
    recipient_address: str | None = None
    #: The header From as Flowmailer read it (``from``, a keyword in Python).
    from_: str | None = None
    from_address: Address | None = None
    to_address_list: tuple[Address, ...] = ()
    subject: str | None = None
    status: str | None = None
    submitted: datetime | None = None
    backend_start: datetime | None = None
    backend_done: datetime | None = None
    online_link: str | None = None
    message_details_link: str | None = None
    tags: tuple[str, ...] = ()
    events: tuple[MessageEvent, ...] = ()
    headers_in: tuple[MessageHeader, ...] = ()
    headers_out: tuple[MessageHeader, ...] = ()
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class ArchivedAttachment:
    """An attachment as Flowmailer shows it back (an archive, a simulation): ``content`` may be left out."""

    content: bytes | None = None
    content_type: str | None = None
    filename: str | None = None
    disposition: str | None = None
    content_id: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class Simulation:
    """What ``POST messages/simulate`` previews: the message as the flow would send it."""

    message_type: MessageType | str | None = None
    sender_address: str | None = None
    recipient_address: str | None = None
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    flow: ObjectRef | None = None
    data: object = attrs.field(default=None, hash=False)
    attachments: tuple[ArchivedAttachment, ...] = ()
    extra: Mapping[str, Any] = _extra()


@typing.final
class Secret:
    """A secret that shows as ``'********'`` and is not pickled; ``reveal()`` is read only where a request is built.

    ``attrs.asdict`` and ``copy`` keep this object as it is, so neither carries the plain text.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'********'"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Secret cannot be changed")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: object) -> Secret:
        return self

    def __reduce__(self) -> typing.NoReturn:
        raise TypeError("secrets are not pickled: pass the credentials to the other process another way")


def _secret(value: Secret | str) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise ConfigurationError("client_secret", "is not text", "give the client secret as a string")
    return Secret(value)


@attrs.frozen
class Credentials:
    """One source system's API credentials. The secret never shows in repr, str, ``attrs.asdict``, pickles or errors."""

    account_id: str
    client_id: str
    client_secret: Secret = attrs.field(repr=False, converter=_secret)

    def __attrs_post_init__(self) -> None:
        where = "the credentials page of the Flowmailer dashboard"
        for name in ("account_id", "client_id"):
            _check_text(name, getattr(self, name), required=True)
        _require_text("account_id", self.account_id, f"copy the account id from {where}")
        _require_text("client_id", self.client_id, f"copy the client id from {where}")
        _require_text("client_secret", self.client_secret.reveal(), f"copy the client secret from {where}")


@attrs.frozen
class AccessToken:
    """A bearer token and the epoch second it stops working; the value never shows in repr."""

    value: str = attrs.field(repr=False)
    expires_at: float
    #: Seconds it was issued for, when known: a short-lived token is refreshed a fraction of this ahead.
    lifetime: float | None = attrs.field(default=None, eq=False)

    @classmethod
    def issued(cls, value: str, expires_in: float, now: float) -> AccessToken:
        """The token Flowmailer issued at ``now`` (epoch seconds) for ``expires_in`` seconds."""
        return cls(value, now + expires_in, expires_in)
