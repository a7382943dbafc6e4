"""flowmailer: an independent Python client for Flowmailer's REST API, reliable by construction.

This is the curated public API. It imports neither anyio, trio nor psycopg: ``AsyncClient`` (the ``async`` extra)
is imported on first use, and ``flowmailer.testing`` (the fake Flowmailer and fakes of every port) and
``flowmailer.adapters.postgres_outbox`` are imported on their own.
"""

import importlib as _importlib
import logging as _logging
from typing import TYPE_CHECKING

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
    CircuitBreaker,
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
    MessageHeader,
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

if TYPE_CHECKING:
    from flowmailer.app.async_client import AsyncClient
    from flowmailer.app.async_relay import AsyncRelay

__all__ = [
    "Accepted",
    "AddressPolicy",
    "Ambiguous",
    "AmbiguousError",
    "AsyncClient",
    "AsyncRelay",
    "Attachment",
    "AuthenticationError",
    "CertificateError",
    "CircuitBreaker",
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
    "MessageHeader",
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


_LAZY = {"AsyncClient": "flowmailer.app.async_client", "AsyncRelay": "flowmailer.app.async_relay"}


def __getattr__(name: str) -> object:
    """``AsyncClient`` and ``AsyncRelay`` on first use: they need anyio (the ``async`` extra), which a sync program
    need not install."""
    if name in _LAZY:
        try:
            value = getattr(_importlib.import_module(_LAZY[name]), name)
        except ModuleNotFoundError as e:
            if e.name != "anyio":
                raise
            raise ImportError(f"flowmailer.{name} needs anyio: pip install 'flowmailer[async]'") from e
        globals()[name] = value
        return value
    raise AttributeError(f"module 'flowmailer' has no attribute {name!r}")


# A library never decides where its records go: without this, Python's last-resort handler would print warnings.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
