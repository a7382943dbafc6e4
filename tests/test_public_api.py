"""The public namespace is curated: this test pins it, and pins what importing it loads."""

from __future__ import annotations

import subprocess
import sys

import flowmailer

EXPECTED = {
    "Accepted",
    "AddressPolicy",
    "Ambiguous",
    "AmbiguousError",
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
}


def test_all_is_pinned() -> None:
    assert set(flowmailer.__all__) == EXPECTED
    for name in flowmailer.__all__:
        assert hasattr(flowmailer, name), name


def test_import_loads_neither_trio_nor_psycopg_nor_testing() -> None:
    code = (
        "import sys, flowmailer; "
        "bad = [m for m in ('trio', 'psycopg', 'h11', 'flowmailer.testing', 'rich') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
