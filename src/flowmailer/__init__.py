"""flowmailer: an independent Python client for Flowmailer's REST API, reliable by construction.

This is the curated public API. It imports neither trio nor psycopg; ``flowmailer.testing`` (the fake
Flowmailer and fakes of every port) and ``flowmailer.adapters.postgres_outbox`` are imported on their own.
"""

import logging as _logging

from flowmailer._version import __version__
from flowmailer.adapters import SQLiteCursorStore, SQLiteOutbox, SQLiteReportStore
from flowmailer.app import Client, EventFollower, Relay
from flowmailer.core import (
    Accepted,
    AddressPolicy,
    Ambiguous,
    AmbiguousError,
    Attachment,
    AuthenticationError,
    CertificateError,
    ConfigurationError,
    Credentials,
    DateRange,
    DeliveryNotificationType,
    Disposition,
    ErrorDetail,
    EventType,
    FlowmailerError,
    Header,
    LeaseLostError,
    Message,
    MessageEvent,
    MessageType,
    NotSent,
    OutboxStatus,
    ProtocolError,
    Rejected,
    RejectedError,
    RelayRules,
    ReportPolicy,
    RetryBudget,
    RetryPolicy,
    Stats,
    SubmissionState,
    SubmitMessage,
    TokenPolicy,
    Transient,
    TransientError,
)

__all__ = [
    "Accepted",
    "AddressPolicy",
    "Ambiguous",
    "AmbiguousError",
    "Attachment",
    "AuthenticationError",
    "CertificateError",
    "Client",
    "ConfigurationError",
    "Credentials",
    "DateRange",
    "DeliveryNotificationType",
    "Disposition",
    "ErrorDetail",
    "EventFollower",
    "EventType",
    "FlowmailerError",
    "Header",
    "LeaseLostError",
    "Message",
    "MessageEvent",
    "MessageType",
    "NotSent",
    "OutboxStatus",
    "ProtocolError",
    "Rejected",
    "RejectedError",
    "Relay",
    "RelayRules",
    "ReportPolicy",
    "RetryBudget",
    "RetryPolicy",
    "SQLiteCursorStore",
    "SQLiteOutbox",
    "SQLiteReportStore",
    "Stats",
    "SubmissionState",
    "SubmitMessage",
    "TokenPolicy",
    "Transient",
    "TransientError",
    "__version__",
]

# A library never decides where its records go: without this, Python's last-resort handler would print warnings.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
