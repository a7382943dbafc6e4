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
}


def test_all_is_pinned() -> None:
    assert set(flowmailer.__all__) == EXPECTED
    for name in flowmailer.__all__:
        assert hasattr(flowmailer, name), name


def _loaded_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has loaded after ``statement``."""
    code = f"import sys; {statement}; print(','.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_import_loads_neither_anyio_trio_nor_psycopg_nor_testing() -> None:
    modules = (
        "anyio", "trio", "psycopg", "h11", "flowmailer.testing", "rich", "flowmailer.app.async_client",
        "flowmailer.app.async_relay",
    )  # fmt: skip
    assert _loaded_after("import flowmailer", modules) == []


def test_async_client_is_importable_from_flowmailer_without_trio_or_asyncio_only_code() -> None:
    modules = ("trio", "anyio._backends._trio", "anyio._backends._asyncio", "h11", "flowmailer.testing")
    assert _loaded_after("import flowmailer; flowmailer.AsyncClient", modules) == []
    assert flowmailer.AsyncClient.__module__ == "flowmailer.app.async_client"


def test_async_relay_is_importable_from_flowmailer_without_trio_or_asyncio_only_code() -> None:
    modules = ("trio", "anyio._backends._trio", "anyio._backends._asyncio", "h11", "flowmailer.testing")
    assert _loaded_after("import flowmailer; flowmailer.AsyncRelay", modules) == []
    assert flowmailer.AsyncRelay.__module__ == "flowmailer.app.async_relay"


def test_a_missing_name_is_an_attribute_error() -> None:
    assert not hasattr(flowmailer, "TrioTransport")
