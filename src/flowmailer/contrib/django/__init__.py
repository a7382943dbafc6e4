"""Django: ``EMAIL_BACKEND = "flowmailer.contrib.django.EmailBackend"`` sends through the outbox (extra ``django``).

Add ``"flowmailer.contrib.django"`` to ``INSTALLED_APPS`` for the ``flowmailer_relay`` and ``flowmailer_events``
management commands. See docs/django.md.
"""

from flowmailer.contrib.django._backend import (
    EmailBackend,
    FlowmailerStatus,
    TestEmailBackend,
    close_outboxes,
    submit_messages,
)
from flowmailer.contrib.django._tracking import (
    NORMALISED,
    TrackingEvent,
    WithMessageTags,
    send_tracking_signal,
    tracking,
    tracking_event,
)

__all__ = [
    "NORMALISED",
    "EmailBackend",
    "FlowmailerStatus",
    "TestEmailBackend",
    "TrackingEvent",
    "WithMessageTags",
    "close_outboxes",
    "send_tracking_signal",
    "submit_messages",
    "tracking",
    "tracking_event",
]
