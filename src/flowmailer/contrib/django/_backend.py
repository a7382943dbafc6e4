"""Django's email API onto the outbox: each envelope recipient becomes one SubmitMessage carrying the MIME message."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

import attrs
from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connections, transaction
from django.utils import timezone

from flowmailer._trace import current_trace_context
from flowmailer.adapters import PostgresLocation, open_outbox_url, parse_outbox
from flowmailer.core import REFERENCE_PREFIX, ConfigurationError, OutboxError, OutboxId, SubmitMessage, TraceContext
from flowmailer.ports import Outbox

__all__ = ["EmailBackend", "FlowmailerStatus", "TestEmailBackend", "close_outboxes", "submit_messages"]

#: anymail's attribute names that Flowmailer's submit API has no field for, with the reason.
_UNSUPPORTED = {
    "metadata": "Flowmailer keeps no per-message metadata; put it in merge_global_data (data) or tags",
    "merge_metadata": "Flowmailer keeps no per-message metadata; put it in merge_data (data) or tags",
    "merge_headers": "the MIME message carries one set of headers for every recipient",
    "track_opens": "open tracking is set in the Flowmailer flow, not per message",
    "track_clicks": "click tracking is set in the Flowmailer flow, not per message",
    "amp_html": "Flowmailer's submit API takes no AMP part",
}
_FIELDS = frozenset(a.name for a in attrs.fields(SubmitMessage) if not a.name.startswith("_"))
_IGNORE_SETTING = "FLOWMAILER_IGNORE_UNSUPPORTED"


@attrs.define
class FlowmailerStatus:
    """What ``send_messages`` did with one Django message; set as ``message.flowmailer_status``."""

    #: The envelope recipients, one SubmitMessage each, in the order of ``messages``.
    recipients: tuple[str, ...]
    #: Each copy's client reference (its ``ref:`` tag), by which the relay and Flowmailer's events know it.
    client_references: tuple[str, ...]
    messages: tuple[SubmitMessage, ...]
    #: The outbox rows, once written: None until then (with ``transaction.on_commit``, until the commit), and
    #: always None for the test backend.
    outbox_ids: tuple[OutboxId, ...] | None = None


def _given(message: EmailMessage, name: str) -> Any:
    """The attribute's value, or None where nobody gave it: anymail leaves its UNSET sentinel (a class)."""
    value = getattr(message, name, None)
    return None if isinstance(value, type) and value.__name__ == "UNSET" else value


def _address(text: str, field: str) -> str:
    address = parseaddr(text)[1]
    if not address:
        raise ConfigurationError(field, f"{text!r} holds no email address", "give an address such as a@example.com")
    return address


def _schedule(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if timezone.is_aware(value) else timezone.make_aware(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    raise ConfigurationError("send_at", f"{value!r} is not a datetime", "give a datetime (or a POSIX timestamp)")


def submit_messages(
    message: EmailMessage, *, flow_selector: str | None = None, ignore_unsupported: bool = False
) -> list[SubmitMessage]:
    """One SubmitMessage per envelope recipient (to, cc and bcc, each address once), each carrying the same MIME
    message as ``mimedata`` (Bcc never among its headers) and its own client reference."""
    for name, why in _UNSUPPORTED.items():
        if _given(message, name) is not None and not ignore_unsupported:
            raise ConfigurationError(
                name, f"is not supported: {why}", f"remove it, or set {_IGNORE_SETTING} = True to drop it"
            )
    recipients: dict[str, None] = {}
    for text in message.recipients():
        recipients.setdefault(_address(text, "recipients"), None)
    if not recipients:
        return []
    mime = message.message()
    del mime["Bcc"]  # the envelope carries them; a header would show them to everyone
    mimedata = mime.as_bytes(linesep="\r\n")
    envelope = _given(message, "envelope_sender")
    sender = _address(envelope if envelope is not None else message.from_email, "from_email")
    template = _given(message, "template_id")
    selector = template if template is not None else flow_selector
    tags = _given(message, "tags") or ()
    send_at = _given(message, "send_at")
    shared: Mapping[str, Any] = _given(message, "merge_global_data") or {}
    per_recipient: Mapping[str, Mapping[str, Any]] = _given(message, "merge_data") or {}
    extra: Mapping[str, Any] = _given(message, "esp_extra") or {}
    for key in extra:
        if key not in _FIELDS or key in ("sender_address", "recipient_address", "mimedata"):
            raise ConfigurationError(
                f"esp_extra[{key!r}]",
                "is not a SubmitMessage field that esp_extra may set",
                f"use SubmitMessage's field names: {', '.join(sorted(_FIELDS - {'mimedata'}))}",
            )
    submits = []
    for recipient in recipients:
        data = {**shared, **per_recipient.get(recipient, {})}
        submit = SubmitMessage(
            sender_address=sender,
            recipient_address=recipient,
            mimedata=mimedata,
            tags=tuple(tags),
            flow_selector=selector,
            data=data or None,
            schedule_at=None if send_at is None else _schedule(send_at),
        )
        if extra:
            submit = attrs.evolve(submit, **extra)
        submits.append(submit.with_client_reference(uuid.uuid4().hex, REFERENCE_PREFIX))
    return submits


_outboxes: dict[str, Outbox] = {}
_outboxes_lock = threading.Lock()


def _outbox(url: str) -> Outbox:
    """One outbox per URL for the process: Django makes a backend for every send_mail, the outbox is costlier."""
    with _outboxes_lock:
        if url not in _outboxes:
            _outboxes[url] = open_outbox_url(url)
        return _outboxes[url]


def close_outboxes() -> None:
    """Close the outboxes the backends opened (for tests, and processes that fork after sending)."""
    with _outboxes_lock:
        for outbox in _outboxes.values():
            outbox.close()
        _outboxes.clear()


def outbox_url() -> str:
    url = getattr(settings, "FLOWMAILER_OUTBOX", None)
    if not isinstance(url, str) or not url:
        raise ConfigurationError(
            "FLOWMAILER_OUTBOX",
            "is not set in Django's settings",
            'set FLOWMAILER_OUTBOX = "sqlite:///abs/path/outbox.db" (or "postgresql://...") in settings.py',
        )
    try:
        parse_outbox(url)
    except ConfigurationError as e:
        raise ConfigurationError("FLOWMAILER_OUTBOX", e.problem, e.fix) from None
    return url


class _Converting(BaseEmailBackend):
    """What both backends share: the settings, and each message turned into its SubmitMessages."""

    def _convert(self, email_messages: Sequence[EmailMessage]) -> list[tuple[EmailMessage, FlowmailerStatus]]:
        """Every message converted before any is written: a bad one (an unsupported attribute) enqueues nothing."""
        selector = getattr(settings, "FLOWMAILER_FLOW_SELECTOR", None)
        ignore = bool(getattr(settings, _IGNORE_SETTING, False))
        converted = []
        for message in email_messages:
            submits = submit_messages(message, flow_selector=selector, ignore_unsupported=ignore)
            if submits:
                status = FlowmailerStatus(
                    recipients=tuple(s.recipient_address for s in submits),
                    client_references=tuple(s.client_reference(REFERENCE_PREFIX) or "" for s in submits),
                    messages=tuple(submits),
                )
                message.flowmailer_status = status
                converted.append((message, status))
        return converted


class EmailBackend(_Converting):
    """``EMAIL_BACKEND = "flowmailer.contrib.django.EmailBackend"``: messages go into the outbox, a relay sends them.

    With ``FLOWMAILER_OUTBOX_DATABASE`` naming the Django database that holds the PostgreSQL outbox, the rows are
    written on that database's connection, inside the caller's transaction: they exist if and only if it commits.
    Otherwise they are written by ``transaction.on_commit`` of the default database: never for a transaction that
    rolls back, at once outside one, and lost if the process dies between the commit and the write.
    """

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        converted = self._convert(email_messages)
        if not converted:
            return 0
        url = outbox_url()
        alias = getattr(settings, "FLOWMAILER_OUTBOX_DATABASE", None)
        trace = current_trace_context()  # now: on commit, the span that sent the mail may have ended
        if alias is not None:
            self._write(url, converted, trace, self._joined(url, alias))
        else:
            transaction.on_commit(lambda: self._write(url, converted, trace, None))
        return len(converted)

    @staticmethod
    def _joined(url: str, alias: str) -> Callable[[Outbox, list[SubmitMessage], TraceContext | None], list[OutboxId]]:
        if not isinstance(parse_outbox(url), PostgresLocation):
            raise ConfigurationError(
                "FLOWMAILER_OUTBOX_DATABASE",
                "is set, but FLOWMAILER_OUTBOX is not a PostgreSQL outbox",
                "unset FLOWMAILER_OUTBOX_DATABASE (the SQLite outbox is written on commit), or use the PostgreSQL one",
            )
        if alias not in settings.DATABASES:
            raise ConfigurationError(
                "FLOWMAILER_OUTBOX_DATABASE", f"{alias!r} is not in DATABASES", "name one of DATABASES' aliases"
            )
        django_connection = connections[alias]
        import psycopg

        django_connection.ensure_connection()
        connection = django_connection.connection
        if django_connection.vendor != "postgresql" or not isinstance(connection, psycopg.Connection):
            raise ConfigurationError(
                "FLOWMAILER_OUTBOX_DATABASE",
                f"database {alias!r} is not PostgreSQL through psycopg 3",
                "install psycopg 3 (Django's PostgreSQL backend uses it when present), or unset the setting",
            )

        def enqueue(outbox: Outbox, messages: list[SubmitMessage], trace: TraceContext | None) -> list[OutboxId]:
            return outbox.enqueue_many(messages, trace_context=trace, connection=connection)  # type: ignore[call-arg]

        return enqueue

    def _write(
        self,
        url: str,
        converted: list[tuple[EmailMessage, FlowmailerStatus]],
        trace: TraceContext | None,
        enqueue: Callable[[Outbox, list[SubmitMessage], TraceContext | None], list[OutboxId]] | None,
    ) -> None:
        """All of the batch's copies in one transaction, with the sender's trace context, each status told its rows."""
        messages = [m for _, status in converted for m in status.messages]
        try:
            outbox = _outbox(url)
            if enqueue is not None:
                ids = enqueue(outbox, messages, trace)
            else:
                ids = outbox.enqueue_many(messages, trace_context=trace)
        except OutboxError:
            if not self.fail_silently:
                raise
            return
        for _, status in converted:
            status.outbox_ids, ids = tuple(ids[: len(status.messages)]), ids[len(status.messages) :]


class TestEmailBackend(_Converting):
    """Records what would be enqueued, like Django's locmem backend: each message in ``django.core.mail.outbox``,
    its SubmitMessages in ``message.flowmailer_status.messages``. Nothing is written anywhere."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        from django.core import mail

        converted = self._convert(email_messages)
        if not hasattr(mail, "outbox"):
            mail.outbox = []
        mail.outbox.extend(message for message, _ in converted)
        return len(converted)
