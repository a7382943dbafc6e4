"""HTTP as plain values: what the sans-IO protocol builds and interprets, and what transports carry."""

from __future__ import annotations

import enum
from urllib.parse import quote, urlsplit

import attrs

from flowmailer.core._errors import ConfigurationError

__all__ = ["DEFAULT_ANSWER_LIMIT", "Host", "Origin", "WireRequest", "WireResponse", "redact_headers"]

#: The largest answer body a request accepts unless its endpoint says less: a page of a hundred messages with
#: their events and headers fits many times over; an endless or runaway body stops here, not at the memory's end.
DEFAULT_ANSWER_LIMIT = 16 * 1024 * 1024


class Host(enum.Enum):
    """Which of Flowmailer's two host names a request is for."""

    LOGIN = "login"
    API = "api"


@attrs.frozen
class Origin:
    """An HTTPS origin: the DNS name TLS verifies, and the port. There is no plain-HTTP origin."""

    host: str
    port: int = 443

    @classmethod
    def parse(cls, url: str, *, field: str = "base_url") -> Origin:
        """Parse ``https://host[:port]``; anything else is refused with the fix, never quoting a password."""
        if not isinstance(url, str):
            raise ConfigurationError(field, "is not text", "give a URL like https://api.flowmailer.net")
        try:
            parts = urlsplit(url)
        except ValueError:  # its text may quote the URL, and with it a password
            raise ConfigurationError(field, "is not a URL", "give a URL like https://api.flowmailer.net") from None
        _, at, host = parts.netloc.rpartition("@")
        shown = url.replace(parts.netloc, f"***@{host}", 1) if at else url
        if at:
            raise ConfigurationError(
                field,
                f"{shown!r} carries a user name or password",
                "remove the part before @: Flowmailer takes the client id and secret as credentials, never in a URL",
            )
        if parts.scheme != "https":
            raise ConfigurationError(
                field,
                f"{url!r} is not an https:// URL",
                "Flowmailer's guidelines require HTTPS with a verified certificate; use https://",
            )
        if not parts.hostname:
            raise ConfigurationError(field, f"{url!r} has no host name", "give a URL like https://api.flowmailer.net")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigurationError(field, f"{url!r} has a path or query", "give only scheme, host and port")
        try:
            port = parts.port or 443
        except ValueError as e:
            raise ConfigurationError(field, f"{url!r} has an invalid port", "use a port from 1 to 65535") from e
        return cls(parts.hostname, port)

    def url(self) -> str:
        return f"https://{self.host}" if self.port == 443 else f"https://{self.host}:{self.port}"


_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


def find_header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    """The first value of header ``name``, whatever its case."""
    lname = name.lower()
    for k, v in headers:
        if k.lower() == lname:
            return v
    return None


def redact_headers(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The headers with credentials blanked, for logs and reprs."""
    return tuple((k, "<redacted>" if k.lower() in _SECRET_HEADERS else v) for k, v in headers)


@attrs.frozen
class WireRequest:
    """One HTTP request, built by the protocol, carried by a transport.

    ``path`` is already encoded, matrix parameters included; ``query`` pairs are encoded by ``target``.
    """

    method: str
    host: Host
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), repr=lambda hs: repr(redact_headers(hs)))
    #: Never in ``repr``: the token request's body holds the client secret.
    body: bytes = attrs.field(default=b"", repr=lambda b: f"<{len(b)} bytes>")
    #: Sending it twice does no more than sending it once (a read, the token request): after an Ambiguous outcome
    #: it is sent again. False for a submit, whose resend may duplicate a message: it is reconciled instead.
    idempotent: bool = True
    #: The most body bytes the answer may have (what the endpoint can return); a longer one is not read.
    answer_limit: int = DEFAULT_ANSWER_LIMIT
    #: Seconds the whole exchange may take, on top of the transport's own timeouts: what the retry deadline
    #: leaves for this attempt. None: only the transport's timeouts.
    timeout: float | None = None

    @property
    def target(self) -> str:
        """The request target: path and query string."""
        if not self.query:
            return self.path
        qs = "&".join(f"{quote(k, safe='')}={quote(v, safe=',')}" for k, v in self.query)
        return f"{self.path}?{qs}"

    def header(self, name: str) -> str | None:
        return find_header(self.headers, name)


@attrs.frozen
class WireResponse:
    """One HTTP response as the transport received it; header names are kept as sent."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return find_header(self.headers, name)
