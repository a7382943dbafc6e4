"""How one attempt ended. Every attempt ends in exactly one of these; the retry policy decides from them."""

from __future__ import annotations

from typing import TypeAlias

import attrs

from flowmailer.core._http import WireResponse
from flowmailer.core._models import ErrorDetail

__all__ = [
    "Accepted",
    "Ambiguous",
    "CredentialsRejected",
    "NotSent",
    "Outcome",
    "Rejected",
    "TokenInvalid",
    "Transient",
    "TransportResult",
]


@attrs.frozen
class Accepted:
    """Flowmailer answered 201 Created with a Location: the only outcome that means 'accepted'."""

    message_id: str


@attrs.frozen
class Rejected:
    """Flowmailer refused the request for good (400/403/404/413/422). Never retried."""

    status: int
    errors: tuple[ErrorDetail, ...] = ()


@attrs.frozen
class NotSent:
    """Nothing reached Flowmailer (DNS, refused, connect timeout, TLS, closed before the request was written).

    Safe to retry at once on another address.
    """

    reason: str
    #: The cause is on this side (every connection busy, the transport closed): the address is not to blame.
    local: bool = False
    #: The server's certificate did not verify against the trust store (or the CA bundle): when that holds on
    #: every address, it is a setting to fix, not the network.
    untrusted: bool = False


@attrs.frozen
class Transient:
    """Flowmailer answered but did not accept (5xx, 429): retry later, after ``retry_after`` if given."""

    status: int
    retry_after: float | None = None
    reason: str = ""


@attrs.frozen
class Ambiguous:
    """The request was written and no answer came: Flowmailer may have accepted it. Reconcile before resending."""

    reason: str
    #: An answer came that was not read: longer than the request's ``answer_limit``, or in a Content-Encoding
    #: that was not asked for. Asking again gets the same, so only a submit is reconciled; any other request
    #: stops with a ProtocolError.
    unreadable: bool = False


@attrs.frozen
class TokenInvalid:
    """401 ``invalid_token``: the bearer token expired or was revoked; refresh it once and resend."""

    detail: str = ""


@attrs.frozen
class CredentialsRejected:
    """The token request was refused for bad credentials: stop, never retry (Flowmailer locks the IP)."""

    detail: str


#: What a transport hands back: an HTTP response, or a failure it has already classified.
TransportResult: TypeAlias = WireResponse | NotSent | Ambiguous

Outcome: TypeAlias = Accepted | Rejected | NotSent | Transient | Ambiguous | TokenInvalid | CredentialsRejected
