"""What both transports share: the connection cap from Flowmailer's guidelines, a context that verifies, and the
count of requests in flight per address that the core's address choice reads."""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import truststore

from flowmailer.core import ConfigurationError, Origin
from flowmailer.core._checks import require

__all__ = [
    "MAX_CONNECTIONS",
    "InFlight",
    "check_connection_limit",
    "check_pool_settings",
    "require_verifying",
    "untrusted",
    "verifying_context",
]

#: Flowmailer's guidelines allow up to 10 concurrent connections; no transport opens more.
MAX_CONNECTIONS = 10


def untrusted(e: BaseException) -> bool:
    """Whether ``e``, or an error it was raised from, says the server's certificate did not verify."""
    seen: set[int] = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError | ssl.CertificateError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def check_pool_settings(max_connections: int, **seconds: float) -> None:
    """Refuse a cap outside 1..10 and any duration (connect_timeout=..., ...) that is not a positive number."""
    if not 1 <= max_connections <= MAX_CONNECTIONS:
        raise ConfigurationError(
            "max_connections",
            f"{max_connections!r} is outside 1..{MAX_CONNECTIONS}",
            f"Flowmailer's guidelines allow at most {MAX_CONNECTIONS} concurrent connections; use 1 to 10",
        )
    for name, value in seconds.items():
        if not value > 0:
            raise ConfigurationError(name, f"{value!r} is not a positive number of seconds", "use e.g. 5")


def check_connection_limit(limit: int) -> int:
    """A cap given at run time (``limit_connections``): a whole number of connections, 0 included (none open)."""
    whole = type(limit) is int and limit >= 0  # an int, not a bool
    require(whole, "limit", f"{limit!r} is not a whole number of connections", "give 0 to 10")
    return limit


def verifying_context(ca_bundle: str | None, ssl_context: ssl.SSLContext | None) -> ssl.SSLContext:
    """The caller's context, one trusting ``ca_bundle``, or the operating system's store; never one that does not
    verify certificates and host names."""
    if ca_bundle is not None and ssl_context is not None:
        raise ConfigurationError("ca_bundle", "both ca_bundle and ssl_context were given", "give one of them")
    if ssl_context is None:
        if ca_bundle is None:
            ssl_context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        else:
            try:
                ssl_context = ssl.create_default_context(cafile=ca_bundle)
            except (OSError, ssl.SSLError) as e:
                raise ConfigurationError(
                    "ca_bundle", f"cannot load {ca_bundle!r}: {e}", "give a readable PEM file of CA certificates"
                ) from e
    require_verifying(ssl_context)
    return ssl_context


def require_verifying(context: ssl.SSLContext) -> None:
    """Refuse a context that does not verify; checked again before each request (urllib3) or each handshake
    (anyio), because the caller keeps the context and could switch verification off after handing it over."""
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        raise ConfigurationError(
            "ssl_context",
            "the context does not verify certificates and host names",
            "Flowmailer's guidelines require a verified certificate; keep verify_mode=CERT_REQUIRED and "
            "check_hostname=True",
        )


_NONE: Mapping[str, int] = {}


class InFlight:
    """Requests in flight per IP address of each origin, from the moment a transport takes one until it answers
    (waiting for a connection included): what ``in_flight(origin)`` tells the core, which sends the next request
    to the least loaded address. A thread-safe transport changes it under its lock."""

    def __init__(self) -> None:
        self._by_origin: dict[tuple[str, int], dict[str, int]] = {}

    def of(self, origin: Origin) -> Mapping[str, int]:
        """The counts of ``origin``'s addresses; an address with none is left out. A live view: read, not kept."""
        return self._by_origin.get((origin.host, origin.port), _NONE)

    def add(self, origin: Origin, address: str, change: int) -> None:
        counts = self._by_origin.setdefault((origin.host, origin.port), {})
        left = counts.get(address, 0) + change
        if left:
            counts[address] = left
        else:
            del counts[address]  # an idle book reads as no load at all: the core's rotation needs no search
