"""HTTP/1.1 framing for the fake server: requests cut out of a byte stream in order, responses rendered to bytes.

Hand-written rather than h11 because the fake must sustain thousands of submits per second on one core; it
speaks only what Flowmailer's clients send (Content-Length bodies, keep-alive, pipelining).
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import NamedTuple

__all__ = ["HttpError", "Request", "RequestReader", "Response", "json_response"]

_MAX_HEAD = 65536
#: The whitespace around a field value (RFC 9110's OWS): not str.strip()'s, which also takes obs-text such as
#: 0x85 and 0xA0 off the value's ends.
_OWS = " \t"


class HttpError(Exception):
    """The byte stream is not an HTTP/1.1 request the fake can frame; answer ``status`` and close."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{status}: {detail}")


class Request(NamedTuple):
    """One request as it arrived; header names are lower-cased (a tuple, not attrs: it is made per request)."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def path(self) -> str:
        """The path without the query string (matrix parameters included)."""
        return self.target.partition("?")[0]


_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n" for s in HTTPStatus}


class Response(NamedTuple):
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def render(self, *, close: bool) -> bytes:
        head = _STATUS_LINES.get(self.status) or f"HTTP/1.1 {self.status} Unknown\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in self.headers)
        head += f"Content-Length: {len(self.body)}\r\n"
        if close:
            head += "Connection: close\r\n"
        return (head + "\r\n").encode("latin-1") + self.body


def json_response(
    status: int,
    payload: object,
    headers: tuple[tuple[str, str], ...] = (),
    content_type: str = "application/vnd.flowmailer.v1.12+json;charset=UTF-8",
) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, (("Content-Type", content_type), *headers), body)


class RequestReader:
    """Cuts complete requests out of the bytes fed to it, oldest first, so pipelined requests keep their order."""

    def __init__(self, max_body: int) -> None:
        self._buf = bytearray()
        self._max_body = max_body
        #: The request waiting for its body asked ``Expect: 100-continue`` and has not been told to go on.
        self.continue_due = False
        self._continued = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> bool:
        """Bytes of a further request have already arrived."""
        return bool(self._buf)

    def next_request(self) -> Request | None:
        """The next complete request, or None until more bytes arrive."""
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > _MAX_HEAD:
                raise HttpError(431, "request head too large")
            return None
        lines = self._buf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HttpError(400, f"malformed request line {lines[0]!r}")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            name = name.lower()
            if not sep or not name or name.strip() != name:
                raise HttpError(400, f"malformed header line {line!r}")
            if name in headers:
                if name == "content-length":
                    raise HttpError(400, "repeated Content-Length")
                headers[name] += ", " + value.strip(_OWS)
            else:
                headers[name] = value.strip(_OWS)
        length = 0
        if "content-length" in headers:
            if not headers["content-length"].isdigit():
                raise HttpError(400, "invalid Content-Length")
            length = int(headers["content-length"])
            if length > self._max_body:
                raise HttpError(413, f"body of {length} bytes is over {self._max_body}")
        if "transfer-encoding" in headers:
            raise HttpError(501, "the fake reads only Content-Length bodies, not Transfer-Encoding")
        start = end + 4
        if len(self._buf) < start + length:
            if headers.get("expect", "").lower() == "100-continue" and not self._continued:
                self.continue_due = self._continued = True
            return None
        self._continued = False
        body = bytes(self._buf[start : start + length])
        del self._buf[: start + length]
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        return Request(method, target, headers, body, keep_alive)
