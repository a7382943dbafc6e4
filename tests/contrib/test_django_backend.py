"""The Django email backend in process: what each message becomes, the anymail attributes, transactions."""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
from collections.abc import Iterator
from datetime import UTC, datetime
from email.mime.image import MIMEImage
from pathlib import Path

import pytest
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives, send_mail
from django.db import transaction
from django.test import override_settings
from opentelemetry.sdk.trace import TracerProvider

import tests.contrib.django_setup  # noqa: F401 - configures Django (its modules read settings lazily)
from flowmailer import ConfigurationError, SQLiteOutbox, SubmissionState
from flowmailer.contrib.django import (
    EmailBackend,
    FlowmailerStatus,
    TrackingEvent,
    close_outboxes,
    submit_messages,
    tracking,
    tracking_event,
)
from flowmailer.core import EventType, MessageEvent, TraceContext

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture
def outbox_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "outbox.db"
    with override_settings(FLOWMAILER_OUTBOX=f"sqlite://{path}"):
        yield path
    close_outboxes()


def queued(path: Path) -> int:
    outbox = SQLiteOutbox(path)
    try:
        return outbox.counts()[SubmissionState.QUEUED]
    finally:
        outbox.close()


def full_message() -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        "Your order",
        "Thanks!",
        "Shop <shop@example.com>",
        to=["Ann <ann@example.com>"],
        cc=["bob@example.com"],
        bcc=["cat@example.com"],
        reply_to=["help@example.com"],
        headers={"X-Order-Id": "42"},
    )
    message.attach_alternative('<p>Thanks! <img src="cid:logo"></p>', "text/html")
    message.attach("invoice.txt", "total: 42", "text/plain")
    logo = MIMEImage(PNG)
    logo.add_header("Content-ID", "<logo>")
    logo.add_header("Content-Disposition", "inline", filename="logo.png")
    message.attach(logo)
    return message


def test_one_submit_message_per_envelope_recipient_carrying_the_whole_mime_message() -> None:
    submits = submit_messages(full_message())

    assert [s.recipient_address for s in submits] == ["ann@example.com", "bob@example.com", "cat@example.com"]
    assert {s.sender_address for s in submits} == {"shop@example.com"}
    assert len({s.client_reference() for s in submits}) == 3
    assert len({s.mimedata for s in submits}) == 1
    assert submits[0].mimedata is not None
    parsed = email.message_from_bytes(submits[0].mimedata, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert "cat@example.com" not in submits[0].mimedata.decode()
    assert (parsed["To"], parsed["Cc"], parsed["Reply-To"]) == (
        "Ann <ann@example.com>",
        "bob@example.com",
        "help@example.com",
    )
    assert parsed["X-Order-Id"] == "42"
    parts = {part.get_content_type(): part for part in parsed.walk()}
    assert "cid:logo" in parts["text/html"].get_content()
    plain = parsed.get_body(("plain",))
    assert plain is not None
    assert plain.get_content().strip() == "Thanks!"
    assert parts["image/png"]["Content-ID"] == "<logo>"
    assert parts["image/png"].get_content() == PNG
    [attachment] = [p for p in parsed.iter_attachments() if p.get_filename() == "invoice.txt"]
    assert attachment.get_content() == "total: 42"


def test_a_bcc_given_as_an_extra_header_never_reaches_the_headers() -> None:
    message = EmailMessage("s", "b", "shop@example.com", to=["ann@example.com"], headers={"Bcc": "cat@example.com"})
    [submit] = submit_messages(message)
    assert submit.mimedata is not None
    assert b"cat@example.com" not in submit.mimedata


def test_a_recipient_given_twice_gets_one_copy() -> None:
    message = EmailMessage("s", "b", "shop@example.com", to=["ann@example.com"], cc=["Ann <ann@example.com>"])
    assert [s.recipient_address for s in submit_messages(message)] == ["ann@example.com"]


def test_anymail_attributes_map_onto_submit_message_fields() -> None:
    message = EmailMessage("s", "b", "shop@example.com", to=["ann@example.com", "bob@example.com"])
    message.tags = ["order"]
    message.template_id = "orders"
    message.merge_global_data = {"shop": "Acme", "total": 1}
    message.merge_data = {"bob@example.com": {"total": 2}}
    message.send_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    message.esp_extra = {"header_from_name": "Acme"}

    ann, bob = submit_messages(message, flow_selector="default")

    assert ann.flow_selector == bob.flow_selector == "orders"
    assert (ann.data, bob.data) == ({"shop": "Acme", "total": 1}, {"shop": "Acme", "total": 2})
    assert ann.schedule_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert ann.header_from_name == "Acme"
    assert "order" in ann.tags


def test_the_flow_selector_setting_applies_without_a_template_id() -> None:
    message = EmailMessage("s", "b", "shop@example.com", to=["ann@example.com"])
    assert submit_messages(message, flow_selector="default")[0].flow_selector == "default"


def test_anymail_messages_unset_attributes_are_not_given() -> None:
    from anymail.message import AnymailMessage

    message = AnymailMessage("s", "b", "shop@example.com", to=["ann@example.com"], tags=["t"])
    [submit] = submit_messages(message)
    assert "t" in submit.tags
    assert submit.flow_selector is None
    assert submit.data is None


@pytest.mark.parametrize("name", ["track_opens", "metadata"])
def test_an_unsupported_attribute_is_refused_by_name_unless_ignored(name: str, outbox_path: Path) -> None:
    message = EmailMessage("s", "b", "shop@example.com", to=["ann@example.com"])
    setattr(message, name, True if name == "track_opens" else {"k": "v"})

    with pytest.raises(ConfigurationError) as raised:
        message.send()
    assert raised.value.field == name
    assert "FLOWMAILER_IGNORE_UNSUPPORTED" in str(raised.value)
    assert not outbox_path.exists() or queued(outbox_path) == 0

    with override_settings(FLOWMAILER_IGNORE_UNSUPPORTED=True):
        assert message.send() == 1
    assert queued(outbox_path) == 1


def test_esp_extra_names_a_field_that_does_not_exist() -> None:
    message = EmailMessage("s", "b", "shop@example.com", to=["ann@example.com"])
    message.esp_extra = {"trackOpens": True}
    with pytest.raises(ConfigurationError, match="esp_extra"):
        submit_messages(message)


def test_send_mail_enqueues_and_the_status_names_the_rows(outbox_path: Path) -> None:
    message = full_message()
    assert message.send() == 1

    status = message.flowmailer_status
    assert isinstance(status, FlowmailerStatus)
    assert status.outbox_ids is not None
    assert len(status.outbox_ids) == len(status.client_references) == 3
    outbox = SQLiteOutbox(outbox_path)
    with contextlib.closing(outbox):
        for outbox_id, reference in zip(status.outbox_ids, status.client_references, strict=True):
            row = outbox.status(outbox_id)
            assert row is not None
            assert (row.client_reference, row.state) == (reference, SubmissionState.QUEUED)


def test_send_messages_returns_the_number_of_django_messages_handled(outbox_path: Path) -> None:
    messages = [full_message(), EmailMessage("no one", "b", "shop@example.com"), full_message()]
    assert EmailBackend().send_messages(messages) == 2
    assert queued(outbox_path) == 6


def test_a_rolled_back_transaction_enqueues_nothing(outbox_path: Path) -> None:
    class RolledBackError(Exception):
        pass

    def order() -> None:
        with transaction.atomic():
            send_mail("s", "b", None, ["ann@example.com"])
            raise RolledBackError

    with pytest.raises(RolledBackError):
        order()

    with transaction.atomic():
        send_mail("s", "b", None, ["ann@example.com"])
        assert not outbox_path.exists() or queued(outbox_path) == 0  # written on commit, not before
    assert queued(outbox_path) == 1


def test_the_senders_trace_context_is_kept_though_its_span_ended_before_the_commit(outbox_path: Path) -> None:
    tracer = TracerProvider().get_tracer("app")
    with transaction.atomic():
        with tracer.start_as_current_span("place order") as span:
            send_mail("s", "b", None, ["ann@example.com"])
        context = span.get_span_context()
    outbox = SQLiteOutbox(outbox_path)
    with contextlib.closing(outbox):
        [claim] = outbox.claim("relay", 10, 30.0)
    flags = int(context.trace_flags)
    assert claim.trace_context == TraceContext(f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}")


def test_the_outbox_setting_is_required() -> None:
    with pytest.raises(ConfigurationError) as raised:
        send_mail("s", "b", None, ["ann@example.com"])
    assert raised.value.field == "FLOWMAILER_OUTBOX"


def test_a_bad_outbox_url_is_named_by_its_setting() -> None:
    with override_settings(FLOWMAILER_OUTBOX="mysql://db/mail"), pytest.raises(ConfigurationError) as raised:
        send_mail("s", "b", None, ["ann@example.com"])
    assert raised.value.field == "FLOWMAILER_OUTBOX"


def test_joining_the_transaction_needs_a_postgresql_outbox(outbox_path: Path) -> None:
    with override_settings(FLOWMAILER_OUTBOX_DATABASE="default"), pytest.raises(ConfigurationError) as raised:
        send_mail("s", "b", None, ["ann@example.com"])
    assert raised.value.field == "FLOWMAILER_OUTBOX_DATABASE"


def test_the_test_backend_records_what_would_be_enqueued() -> None:
    mail.outbox = []
    with override_settings(EMAIL_BACKEND="flowmailer.contrib.django.TestEmailBackend"):
        assert send_mail("s", "b", None, ["ann@example.com", "bob@example.com"]) == 1
    [message] = mail.outbox
    status = message.flowmailer_status
    assert [m.recipient_address for m in status.messages] == ["ann@example.com", "bob@example.com"]
    assert status.outbox_ids is None


@pytest.mark.parametrize(
    ("kind", "normalised"),
    [
        (EventType.SUBMITTED, "queued"),
        (EventType.DELIVERED, "delivered"),
        (EventType.SOFTBOUNCE, "deferred"),
        (EventType.HARDBOUNCE, "bounced"),
        (EventType.REJECT, "rejected"),
        (EventType.COMPLAINT, "complained"),
        (EventType.UNSUBSCRIBE, "unsubscribed"),
        (EventType.OPENED, "opened"),
        (EventType.CLICKED, "clicked"),
        (EventType.POSTED, "sent"),
        (EventType.CUSTOM, "unknown"),
        ("SOMETHING_NEW", "unknown"),
    ],
)
def test_events_are_normalised_to_anymails_types(kind: EventType | str, normalised: str) -> None:
    event = tracking_event(MessageEvent(id="e1", message_id="m1", type=kind, message_tags=("ref:abc", "order")))
    assert (event.event_type, event.client_reference, event.tags) == (normalised, "abc", ("order",))


def test_every_flowmailer_event_type_has_a_normalised_one() -> None:
    from flowmailer.contrib.django import NORMALISED

    assert set(NORMALISED) == set(EventType)
    assert set(NORMALISED.values()) <= {
        "queued", "sent", "delivered", "deferred", "bounced", "rejected", "complained", "unsubscribed", "opened",
        "clicked", "unknown",
    }  # fmt: skip


def test_the_tracking_signal_and_anymails_carry_the_same_event() -> None:
    from anymail.signals import tracking as anymail_tracking

    from flowmailer.contrib.django import send_tracking_signal

    ours: list[TrackingEvent] = []
    theirs: list[tuple[str, str]] = []

    def on_ours(sender: object, event: TrackingEvent, **kwargs: object) -> None:
        ours.append(event)

    def on_theirs(sender: object, event: object, esp_name: str, **kwargs: object) -> None:
        theirs.append((getattr(event, "event_type", ""), esp_name))

    tracking.connect(on_ours)
    anymail_tracking.connect(on_theirs)
    try:
        send_tracking_signal(MessageEvent(id="e1", message_id="m1", type=EventType.DELIVERED))
    finally:
        tracking.disconnect(on_ours)
        anymail_tracking.disconnect(on_theirs)
    assert [e.event_type for e in ours] == ["delivered"]
    assert theirs == [("delivered", "Flowmailer")]
