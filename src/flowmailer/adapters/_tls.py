"""What both transports share: the connection cap from Flowmailer's guidelines, and a context that verifies."""

from __future__ import annotations

import ssl

import truststore

from flowmailer.core import ConfigurationError
from flowmailer.core._checks import require

__all__ = [
    "MAX_CONNECTIONS",
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
    """Refuse a context that does not verify; checked again before each request, because the caller keeps the
    context and could switch verification off after handing it over."""
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        raise ConfigurationError(
            "ssl_context",
            "the context does not verify certificates and host names",
            "Flowmailer's guidelines require a verified certificate; keep verify_mode=CERT_REQUIRED and "
            "check_hostname=True",
        )
