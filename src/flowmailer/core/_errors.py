"""One error root, split by blame. Every message says what to do next."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowmailer.core._models import ErrorDetail

__all__ = [
    "AmbiguousError",
    "AuthenticationError",
    "CertificateError",
    "ConfigurationError",
    "FlowmailerError",
    "ProtocolError",
    "RejectedError",
    "TransientError",
]


class FlowmailerError(Exception):
    """Root of every error this package raises; transport exceptions never leak past it."""


class ConfigurationError(FlowmailerError, ValueError):
    """The caller's input or configuration is wrong; fix it, retrying will not help."""

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{field}: {problem}. {fix}")

    def __reduce__(self) -> tuple[type[ConfigurationError], tuple[str, str, str]]:
        return (type(self), (self.field, self.problem, self.fix))


class CertificateError(ConfigurationError):
    """Flowmailer's certificate did not verify on any of its addresses: the CA bundle or the trust store is wrong
    (or the clock is), not the network; retrying will not help."""

    def __init__(self, hostname: str, attempts: int, reason: str) -> None:
        self.hostname = hostname
        self.attempts = attempts
        self.reason = reason
        super().__init__(
            "ca_bundle",
            f"the certificate of {hostname} did not verify on any of its addresses ({attempts} attempt(s); last: "
            f"{reason})",
            "if a private CA signs it, name that CA's PEM file with ca_bundle (--ca-bundle, FLOWMAILER_CA_BUNDLE); "
            "with no ca_bundle the operating system's trust store is used: check that it is current and that this "
            "machine's clock is right. Certificates are never skipped or pinned",
        )

    def __reduce__(self) -> tuple[type[CertificateError], tuple[str, int, str]]:  # type: ignore[override]
        return (type(self), (self.hostname, self.attempts, self.reason))


class RejectedError(FlowmailerError):
    """Flowmailer refused the request for good (400/403/404/413/422); resending the same thing fails again."""

    def __init__(self, status: int, errors: Sequence[ErrorDetail], message: str | None = None) -> None:
        self.status = status
        self.errors = tuple(errors)
        if message is None:
            listed = "; ".join(e.describe() for e in self.errors) or "no error details were given"
            message = f"Flowmailer rejected the request with HTTP {status}: {listed}. Fix the request; do not retry it."
        super().__init__(message)

    def __reduce__(self) -> tuple[type[RejectedError], tuple[int, tuple[ErrorDetail, ...], str]]:
        return (type(self), (self.status, self.errors, str(self)))


class AuthenticationError(FlowmailerError):
    """Flowmailer refused the credentials; never retried, because Flowmailer locks the IP for ten minutes."""

    def __init__(self, client_id: str, detail: str) -> None:
        self.client_id = client_id
        self.detail = detail
        super().__init__(
            f"Flowmailer refused the credentials of client id {client_id!r} ({detail}). Check the client id "
            "and secret for this source system; no further token request is made, because Flowmailer locks "
            "the calling IP address for ten minutes after bad credentials."
        )

    def __reduce__(self) -> tuple[type[AuthenticationError], tuple[str, str]]:
        return (type(self), (self.client_id, self.detail))


class TransientError(FlowmailerError):
    """Flowmailer was unreachable or answered 'not now' until the retry policy gave up; nothing was accepted."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), str(self), {"retry_after": self.retry_after}))


class ProtocolError(TransientError):
    """The server answered as Flowmailer's API never does: an answer larger than the endpoint can return, a page
    cursor that goes back or stands still. Nothing more is read or followed; a proxy in between, or a server that
    is not Flowmailer, is the likely cause. A :class:`TransientError`, so an outbox tries again later."""


class AmbiguousError(FlowmailerError):
    """The request was written but no answer came: Flowmailer may have accepted the message.

    Reconcile with ``Client.messages_by_tag(client_reference)`` before resending; the outbox's relay does this.
    """

    def __init__(self, message: str, *, client_reference: str | None = None) -> None:
        self.client_reference = client_reference
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), str(self), {"client_reference": self.client_reference}))


def _rebuild(cls: type[FlowmailerError], message: str, keywords: dict[str, object]) -> FlowmailerError:
    """Unpickle an error whose constructor takes keywords (errors cross process boundaries in relays)."""
    return cls(message, **keywords)
