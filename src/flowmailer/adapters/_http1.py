"""HTTP/1.1 request framing both transports share: the head and body in one piece, checked before any byte is sent.

One write per request: a head and body written apart cost a second TLS record and, in a threaded client, a second
release of the GIL, which under load is most of what a request costs (see docs/benchmarks.md).
"""

from __future__ import annotations

import re

from flowmailer.core import ConfigurationError, Origin, WireRequest

__all__ = ["render_request"]

#: RFC 9110 token characters: what a method and a header name may hold.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: A request target: visible ASCII only (the protocol percent-encodes everything else).
_TARGET = re.compile(r"[!-~]+")
#: A field value: visible characters, spaces and tabs, never CR, LF, NUL or another control character.
_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")
#: Methods whose requests carry no body unless they have one; others always say how long theirs is.
_BODILESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})


def render_request(request: WireRequest, origin: Origin, user_agent: str) -> bytes:
    """The request's bytes with Host, User-Agent, Accept-Encoding: identity and Content-Length framing.

    Raises ConfigurationError, naming the part, for anything that would let a value split the head (CR or LF in a
    header) or be read differently by the server; nothing is sent then.
    """
    host = origin.host if origin.port == 443 else f"{origin.host}:{origin.port}"
    headers = [("Host", host), ("User-Agent", user_agent), ("Accept-Encoding", "identity"), *request.headers]
    if request.body or request.method not in _BODILESS:
        headers.append(("Content-Length", str(len(request.body))))
    _check(_TOKEN, request.method, "request.method", "use an HTTP method such as GET or POST")
    target = request.target
    _check(_TARGET, target, "request.target", "percent-encode spaces and non-ASCII characters in the path")
    lines = [f"{request.method} {target} HTTP/1.1"]
    for name, value in headers:
        _check(_TOKEN, name, "request.headers", f"header name {name!r} may hold only letters, digits and -")
        _check(_VALUE, value, "request.headers", f"remove control characters (CR, LF, ...) from {name}'s value")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    try:
        head = "\r\n".join(lines).encode("latin-1")
    except UnicodeEncodeError as e:
        raise ConfigurationError(
            "request.headers", f"holds a character HTTP/1.1 cannot carry: {e}", "use Latin-1 text in header values"
        ) from e
    return head + request.body


def _check(pattern: re.Pattern[str], text: str, field: str, fix: str) -> None:
    if pattern.fullmatch(text) is None:
        raise ConfigurationError(field, f"{text!r} cannot be framed as HTTP/1.1", fix)
