"""HTTP/1.1 framing both transports share: head and body in one piece, checked before any byte is sent.

One write per request: a head and body written apart cost a second TLS record and, in a threaded client, a second
release of the GIL, which under load is most of what a request costs (see docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import re

from flowmailer.core import ConfigurationError, Origin, WireRequest

__all__ = ["ONE_WRITE_LIMIT", "encoding_refused", "limit_text", "render_request", "too_long"]

#: RFC 9110 token characters: what a method and a header name may hold.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: A request target: visible ASCII only (the protocol percent-encodes everything else).
_TARGET = re.compile(r"[!-~]+")
#: A field value: empty, or visible ASCII and Latin-1 letters with spaces and tabs inside, never at either end;
#: never CR, LF, NUL or another control character (C1 included).
_VISIBLE = r"[!-~\xa0-\xff]"
_VALUE = re.compile(rf"(?:{_VISIBLE}(?:[\t !-~\xa0-\xff]*{_VISIBLE})?)?")
#: Headers that frame the request or the connection: only the transport writes them.
_FRAMING = frozenset(
    {
        "host",
        "user-agent",
        "accept-encoding",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)
#: Methods whose requests carry no body unless they have one; others always say how long theirs is.
_BODILESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
#: Up to this size the body is copied behind the head and both go in one write; a larger body is written apart
#: rather than copied (an attachment-heavy message may be megabytes).
ONE_WRITE_LIMIT = 64 * 1024


def render_request(request: WireRequest, origin: Origin, user_agent: str) -> tuple[bytes, ...]:
    """The request's bytes, in the pieces to write: one piece unless the body is large.

    The transport writes Host, User-Agent, Accept-Encoding: identity and Content-Length. Raises ConfigurationError,
    naming the part, for anything that would let a value split the head (CR or LF in a header), a caller's header
    that would frame the request differently (a second Host or Content-Length, Transfer-Encoding, ...), or
    anything else the server could read differently; nothing is sent then.
    """
    host = origin.host if origin.port == 443 else f"{origin.host}:{origin.port}"
    lines = [_request_line(request.method, request.target)]
    for name, _ in request.headers:
        if name.lower() in _FRAMING:
            raise ConfigurationError(
                "request.headers", f"sets {name}, which the transport writes", "leave framing headers to the transport"
            )
    headers = [("Host", host), ("User-Agent", user_agent), ("Accept-Encoding", "identity"), *request.headers]
    if request.body or request.method not in _BODILESS:
        headers.append(("Content-Length", str(len(request.body))))
    for name, value in headers:
        # The token's header is checked every time: a cache would keep tokens long after they were replaced.
        lines.append(_header_line(name, value) if name != "Authorization" else _checked_header(name, value))
    lines.append("\r\n")
    head = "\r\n".join(lines).encode("latin-1")  # every part was checked to be Latin-1
    if len(request.body) > ONE_WRITE_LIMIT:
        return head, request.body
    return (head + request.body,)


def encoding_refused(headers: tuple[tuple[str, str], ...], body: bytes) -> str | None:
    """Why a body in its Content-Encoding is not read, or None. Only identity is asked for, so any other coding
    (a proxy's gzip, say) is refused rather than decoded: a small compressed body can decode to gigabytes."""
    coding = next((v for k, v in headers if k.lower() == "content-encoding"), "identity").strip().lower()
    if not body or coding in ("", "identity"):
        return None
    return f"an answer in Content-Encoding {coding!r}, though only identity was asked for; it was not decoded"


def too_long(limit: int) -> str:
    """The reason an answer longer than ``limit`` bytes was not read."""
    return f"an answer longer than {limit} bytes, the most this endpoint returns; it was not read"


def limit_text(seconds: float) -> str:
    """The reason an exchange ran out of time."""
    return f"timed out after {seconds:g} s (the read timeout, or what the retry deadline left)"


@functools.lru_cache(maxsize=64)
def _request_line(method: str, target: str) -> str:
    """The request line, its method and target checked (once for each: most requests repeat a few)."""
    _check(_TOKEN, method, "request.method", "use an HTTP method such as GET or POST")
    _check(_TARGET, target, "request.target", "percent-encode spaces and non-ASCII characters in the path")
    return f"{method} {target} HTTP/1.1"


def _checked_header(name: str, value: str) -> str:
    """A header line, its name and value checked."""
    _check(_TOKEN, name, "request.headers", f"header name {name!r} may hold only letters, digits and -")
    _check(_VALUE, value, "request.headers", f"remove control characters and outer spaces from {name}'s value")
    return f"{name}: {value}"


#: Checked once for each: every request repeats most of its headers. A check that fails raises: nothing is cached.
_header_line = functools.lru_cache(maxsize=256)(_checked_header)


def _check(pattern: re.Pattern[str], text: str, field: str, fix: str) -> None:
    if pattern.fullmatch(text) is None:
        raise ConfigurationError(field, f"{text!r} cannot be framed as HTTP/1.1", fix)
