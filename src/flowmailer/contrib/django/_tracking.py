"""Flowmailer's message events as Django signals, normalised to the event types anymail's users know."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

import attrs
from django.dispatch import Signal

from flowmailer.core import REFERENCE_PREFIX, EventType, MessageEvent, Page, ReferenceRange, SortOrder

if TYPE_CHECKING:
    from flowmailer.app import Client

__all__ = ["NORMALISED", "TrackingEvent", "WithMessageTags", "send_tracking_signal", "tracking", "tracking_event"]

#: Sent for each event with ``event=TrackingEvent(...)``; ``sender`` is TrackingEvent.
tracking = Signal()

_E = EventType
#: Each of Flowmailer's event types as one of anymail's: queued, sent, delivered, deferred, bounced, rejected,
#: complained, unsubscribed, opened, clicked; anything else (and a type Flowmailer adds later) is "unknown".
NORMALISED: Mapping[EventType, str] = {
    _E.SUBMITTED: "queued",
    _E.INSERTED: "queued",
    _E.PROCESSED: "queued",
    _E.HELD: "queued",
    _E.RESUBMITTED: "queued",
    _E.RESENT: "queued",
    _E.RESUMED: "queued",
    _E.EVENT_RESUMED: "queued",
    _E.POSTED: "sent",
    _E.ATTEMPT: "sent",
    _E.DELIVERED: "delivered",
    _E.QUEUEATTEMPT: "deferred",
    _E.SOFTBOUNCE: "deferred",
    _E.SUSPENDED: "deferred",
    _E.EVENT_SUSPENDED: "deferred",
    _E.HARDBOUNCE: "bounced",
    _E.REJECT: "rejected",
    _E.DISCARD: "rejected",
    _E.EVENT_DISCARD: "rejected",
    _E.ERROR: "rejected",
    _E.EVENT_ERROR: "rejected",
    _E.COMPLAINT: "complained",
    _E.UNSUBSCRIBE: "unsubscribed",
    _E.OPENED: "opened",
    _E.CLICKED: "clicked",
    _E.CUSTOM: "unknown",
    _E.REPLY: "unknown",
}


@attrs.frozen
class TrackingEvent:
    """One message event, normalised; ``raw`` is Flowmailer's event as the EventFollower read it."""

    event_type: str
    #: Flowmailer's own type (a plain ``str`` for one this version does not know).
    flowmailer_type: EventType | str | None
    message_id: str | None
    event_id: str | None
    timestamp: datetime | None
    #: The ``ref:`` tag's reference: the ``flowmailer_status.client_references`` entry of the copy it is about.
    client_reference: str | None
    tags: tuple[str, ...]
    click_url: str | None
    user_agent: str | None
    mta_response: str | None
    raw: MessageEvent


class WithMessageTags:
    """A Client's events with their messages' tags, for an EventFollower: the ``ref:`` tag says which copy an event
    is about (``TrackingEvent.client_reference``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def message_events(self, *, start: ReferenceRange, sortorder: SortOrder | None) -> Iterator[Page[MessageEvent]]:
        return self._client.message_events(start=start, sortorder=sortorder, add_message_tags=True)


def tracking_event(event: MessageEvent) -> TrackingEvent:
    kind = NORMALISED.get(event.type, "unknown") if isinstance(event.type, EventType) else "unknown"
    reference = next((t[len(REFERENCE_PREFIX) :] for t in event.message_tags if t.startswith(REFERENCE_PREFIX)), None)
    return TrackingEvent(
        event_type=kind,
        flowmailer_type=event.type,
        message_id=event.message_id,
        event_id=event.id,
        timestamp=event.received,
        client_reference=reference,
        tags=tuple(t for t in event.message_tags if not t.startswith(REFERENCE_PREFIX)),
        click_url=event.link_target,
        user_agent=event.user_agent,
        mta_response=event.mta,
        raw=event,
    )


def send_tracking_signal(event: MessageEvent) -> None:
    """An EventFollower's handler: ``tracking``, and anymail's ``tracking`` signal too when anymail is installed,
    so that receivers written for anymail work unchanged."""
    normalised = tracking_event(event)
    tracking.send(sender=TrackingEvent, event=normalised)
    try:
        from anymail.signals import AnymailTrackingEvent
        from anymail.signals import tracking as anymail_tracking
    except ImportError:
        return
    anymail_event = AnymailTrackingEvent(
        event_type=normalised.event_type,
        timestamp=normalised.timestamp,
        event_id=normalised.event_id,
        esp_event=event,
        message_id=normalised.message_id,
        tags=list(normalised.tags),
        click_url=normalised.click_url,
        user_agent=normalised.user_agent,
        mta_response=normalised.mta_response,
    )
    anymail_tracking.send(sender=TrackingEvent, event=anymail_event, esp_name="Flowmailer")
