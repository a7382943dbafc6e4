"""HTTP/1.1 framing both transports share: head and body in one piece, checked before any byte is sent.

One write per request: a head and body written apart cost a second TLS record and, in a threaded client, a second
release of the GIL, which under load is most of what a request costs (see docs/benchmarks.md).
"""

from __future__ import annotations

import re
import zlib

from flowmailer.core import ConfigurationError, Origin, WireRequest

__all__ = ["ONE_WRITE_LIMIT", "decode_body", "render_request"]

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
    _check(_TOKEN, request.method, "request.method", "use an HTTP method such as GET or POST")
    target = request.target
    _check(_TARGET, target, "request.target", "percent-encode spaces and non-ASCII characters in the path")
    for name, _ in request.headers:
        if name.lower() in _FRAMING:
            raise ConfigurationError(
                "request.headers", f"sets {name}, which the transport writes", "leave framing headers to the transport"
            )
    headers = [("Host", host), ("User-Agent", user_agent), ("Accept-Encoding", "identity"), *request.headers]
    if request.body or request.method not in _BODILESS:
        headers.append(("Content-Length", str(len(request.body))))
    lines = [f"{request.method} {target} HTTP/1.1"]
    for name, value in headers:
        _check(_TOKEN, name, "request.headers", f"header name {name!r} may hold only letters, digits and -")
        _check(_VALUE, value, "request.headers", f"remove control characters and outer spaces from {name}'s value")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    head = "\r\n".join(lines).encode("latin-1")  # every part was checked to be Latin-1
    if len(request.body) > ONE_WRITE_LIMIT:
        return head, request.body
    return (head + request.body,)


def decode_body(headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
    """The body without a gzip or deflate Content-Encoding, which a proxy may add although identity was asked
    for; any other coding, or one that does not decode, is left as it came (reading it then fails visibly)."""
    coding = next((v.strip().lower() for k, v in headers if k.lower() == "content-encoding"), "identity")
    try:
        if coding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if coding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some servers send it
    except zlib.error:
        return body
    return body


def _check(pattern: re.Pattern[str], text: str, field: str, fix: str) -> None:
    if pattern.fullmatch(text) is None:
        raise ConfigurationError(field, f"{text!r} cannot be framed as HTTP/1.1", fix)
