"""Answers cut from one connection's bytes, in order: the simple ones by a lean parser, the rest by h11.

Every answer Flowmailer gives is simple: ``HTTP/1.1``, a final status, header lines, a ``Content-Length`` body.
Reading those through h11 costs its per-event state machine on both sides of every exchange, which at depth 8 is
a large part of the async client's CPU (docs/benchmarks.md). The lean parser reads exactly that shape, checked at
least as strictly as h11 checks it, and hands anything else (chunked, 1xx, HEAD, another version, a
``Connection`` other than keep-alive, any line it does not match, the end of the stream) to h11 for that answer,
so whatever h11 refuses is refused with h11's own error. tests/adapters/test_answers.py holds it to h11's
reading under any chunking.
"""

from __future__ import annotations

import functools
import re

import attrs
import h11

from flowmailer.adapters._http1 import encoding_refused, too_long
from flowmailer.core import WireResponse

__all__ = ["AnswerReader", "BrokenError", "UnreadableError"]

#: Where h11 ends a head (its blank-line rule), so both cut the same head.
_HEAD_END = re.compile(rb"\n\r?\n")
#: h11 refuses a head longer than this without its end (its max_incomplete_event_size).
_MAX_HEAD = 16 * 1024
#: HTTP/1.1 and a final status that frames its body by Content-Length (1xx, 204 and 304 go to h11); the reason's
#: characters as h11's, without the controls h11 lets through (those go to h11).
_STATUS = re.compile(rb"HTTP/1\.1 ([2-5][0-9][0-9])(?: [\t !-~\x80-\xff]*)?")
#: A header line as h11 reads it (token, colon, optional whitespace, the value), the value's characters visible
#: ASCII or obs-text: stricter than h11, which allows controls but NUL, so what this refuses h11 judges.
_FIELD = re.compile(rb"([-!#$%&'*+.^_`|~0-9a-zA-Z]+):[ \t]*((?:[!-~\x80-\xff]+(?:[ \t]+[!-~\x80-\xff]+)*)?)[ \t]*")
_DIGITS = re.compile(rb"[0-9]{1,18}")
#: Framing h11 applies: an answer with it goes to h11.
_TO_H11 = frozenset({b"transfer-encoding"})
#: ``Connection: keep-alive`` (nginx sends it with every answer) says what HTTP/1.1 means anyway; any other token
#: (close, upgrade, ...) goes to h11, which ends the connection after the answer.
_KEEP_ALIVE = re.compile(rb"keep-alive(?:[ \t]*,[ \t]*keep-alive)*", re.IGNORECASE)
_BODILESS_STATUS = frozenset({204, 304})


class BrokenError(Exception):
    """The connection can carry nothing more; ``str`` says why."""


class UnreadableError(Exception):
    """The answer came and is not read (too long, or encoded as not asked); ``str`` says why."""


class _H11:
    """Not the lean parser's: h11 reads this answer (whatever was buffered handed over first)."""


_TO_H11_NOW = _H11()


@attrs.define
class _Partial:
    """An answer h11 is reading: what came of it so far."""

    reader: h11.Connection
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    body: bytearray = attrs.Factory(bytearray)


class AnswerReader:
    """The answers of one connection to ``host``, read in the order the requests were written.

    ``feed`` the bytes as they come (``b""`` at the end of the stream); ``next_answer`` gives the next answer, or
    None when it needs more bytes. ``closing`` turns true once an answer says the server ends the connection.
    """

    def __init__(self, host: str) -> None:
        self._host = host
        self._buffer = bytearray()
        self._eof = False
        self._h11: _Partial | None = None
        self.closing = False

    def feed(self, data: bytes) -> None:
        if self._h11 is not None:
            self._h11.reader.receive_data(data)
        elif data:
            self._buffer += data
        else:
            self._eof = True

    def next_answer(self, method: str, cap: int) -> WireResponse | None:
        """The answer to the next request (its method, and the most body bytes taken), or None: feed more.

        Raises UnreadableError (too long, or encoded), BrokenError (closed before an answer), h11.ProtocolError.
        """
        if self._h11 is None:
            got = self._lean(cap) if method != "HEAD" else _TO_H11_NOW
            if got is None and self._eof:
                got = _TO_H11_NOW  # h11 says what the end of the stream means here
            if not isinstance(got, _H11):
                return got
            self._to_h11(method)
        return self._step_h11(cap)

    def ahead(self, method: str, cap: int) -> WireResponse | None:
        """The next answer if it is already here in full and simple and fine, else None with nothing consumed:
        read ahead for a request further down the pipeline, whose own task reads whatever this leaves."""
        if not self._buffer or self._h11 is not None or method == "HEAD":
            return None
        try:
            got = self._lean(cap)
        except UnreadableError:
            return None
        return got if isinstance(got, WireResponse) else None

    def _lean(self, cap: int) -> WireResponse | _H11 | None:
        """A simple answer from the buffer, or None (it is not all here yet), or _TO_H11_NOW. Consumes only what
        it returns; raises UnreadableError before consuming anything."""
        buffer = self._buffer
        end_of_head = _HEAD_END.search(buffer)
        if end_of_head is None:
            if buffer and (buffer[0] < 0x21 or len(buffer) > _MAX_HEAD):
                return _TO_H11_NOW  # what h11 refuses before the head is complete
            return None
        end = end_of_head.end()
        if end > _MAX_HEAD:
            return _TO_H11_NOW
        lines = bytes(buffer[:end]).split(b"\r\n")
        if len(lines) < 3 or lines[-1] or lines[-2]:
            return _TO_H11_NOW  # a line ended by a bare LF
        status_line = _STATUS.fullmatch(lines[0])
        if status_line is None:
            return _TO_H11_NOW
        status = int(status_line[1])
        if status in _BODILESS_STATUS:
            return _TO_H11_NOW
        headers: list[tuple[str, str]] = []
        length = -1
        for line in lines[1:-2]:
            field = _FIELD.fullmatch(line)
            if field is None:
                return _TO_H11_NOW
            name, value = field[1], field[2]
            lower = name.lower()
            if lower == b"content-length":
                if length >= 0 or _DIGITS.fullmatch(value) is None:
                    return _TO_H11_NOW  # a second length, or one h11 checks (commas, too many digits)
                length = int(value)
            elif lower in _TO_H11 or (lower == b"connection" and _KEEP_ALIVE.fullmatch(value) is None):
                return _TO_H11_NOW
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if length < 0:
            return _TO_H11_NOW  # framed by the connection's end
        if length > cap:
            raise UnreadableError(too_long(cap))
        if len(buffer) < end + length:
            return None
        body = bytes(buffer[end : end + length])
        framed = tuple(headers)
        refused = encoding_refused(framed, body)
        if refused is not None:
            raise UnreadableError(refused)
        del buffer[: end + length]
        return WireResponse(status, framed, body)

    def _to_h11(self, method: str) -> None:
        reader = h11.Connection(h11.CLIENT)
        # The reader learns of the request's method, which is all h11 needs to frame the answer (HEAD has no body).
        reader.send(_framing(method, self._host))
        reader.send(h11.EndOfMessage())
        if self._buffer:  # (b"" would tell h11 the stream ended)
            reader.receive_data(bytes(self._buffer))
            self._buffer.clear()
        if self._eof:
            reader.receive_data(b"")
        self._h11 = _Partial(reader)

    def _step_h11(self, cap: int) -> WireResponse | None:
        partial = self._h11
        assert partial is not None
        reader = partial.reader
        while True:
            event = reader.next_event()
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Response):
                partial.status = event.status_code
                raw = event.headers.raw_items()
                partial.headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw)
                length = next((v for k, v in partial.headers if k.lower() == "content-length"), None)
                if length is not None and length.strip().isdigit() and int(length) > cap:
                    raise UnreadableError(too_long(cap))
            elif isinstance(event, h11.Data):
                partial.body += event.data
                if len(partial.body) > cap:
                    raise UnreadableError(too_long(cap))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                raise BrokenError("the server closed the connection")
        if reader.their_state is h11.DONE and reader.our_state is h11.DONE:
            rest, self._eof = reader.trailing_data
            self._buffer = bytearray(rest)
            self._h11 = None  # the next answer is the lean parser's again
        else:
            self.closing = True
        data = bytes(partial.body)
        refused = encoding_refused(partial.headers, data)
        if refused is not None:
            raise UnreadableError(refused)
        return WireResponse(partial.status, partial.headers, data)


@functools.lru_cache(maxsize=64)
def _framing(method: str, host: str) -> h11.Request:
    """The request h11 is told of, made once per method and host (h11 validates an event as it is made; its
    events are immutable, so one serves every request)."""
    return h11.Request(method=method, target="/", headers=[("Host", host)])
