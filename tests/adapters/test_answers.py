"""The async transport's answer reader against h11's reading: the same answers, the same refusals (h11's own
errors), for pipelined answers h11 renders (simple ones, chunked, 1xx, close-delimited, 204, HEAD) cut into any
pieces, and for the same bytes damaged anywhere."""

from __future__ import annotations

from collections.abc import Iterator

import h11
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flowmailer.adapters._answers import AnswerReader, BrokenError, UnreadableError
from flowmailer.adapters._http1 import encoding_refused, too_long
from flowmailer.core import WireResponse
from tests.strategies import TCHAR, header_values

HOST = "api.flowmailer.test"
CAP = 250

_FRAMING = {"content-length", "transfer-encoding", "connection", "content-encoding"}
header_names = st.text(TCHAR, min_size=1, max_size=12).filter(lambda name: name.lower() not in _FRAMING)
#: How the answer frames its body: Content-Length (Flowmailer's), chunked, or the connection's end.
framings = st.sampled_from(["length", "length", "length", "chunked", "close"])


@st.composite
def answers(draw: st.DrawFn) -> tuple[str, int, list[tuple[str, str]], bytes, str, bool, str]:
    method = draw(st.sampled_from(["POST", "GET", "HEAD"]))
    status = draw(st.sampled_from([200, 201, 202, 204, 304, 400, 401, 404, 429, 500, 503]) | st.integers(200, 599))
    body = b"" if status in (204, 304) or method == "HEAD" else draw(st.binary(max_size=300))
    extra = draw(st.lists(st.tuples(header_names, header_values), max_size=5))
    if draw(st.booleans()):
        extra.append(("Content-Encoding", draw(st.sampled_from(["identity", "gzip", ""]))))
    if draw(st.booleans()):  # nginx says keep-alive with every answer
        keep = ["keep-alive", "Keep-Alive", "keep-alive ,keep-alive", "keep-alive, close", "close", "upgrade"]
        extra.append(("Connection", draw(st.sampled_from(keep))))
    reason = draw(st.sampled_from(["", "OK", "Created", "Too Many\tRequests"]))
    return method, status, extra, body, draw(framings), draw(st.booleans()), reason


def _render(script: list[tuple[str, int, list[tuple[str, str]], bytes, str, bool, str]]) -> tuple[bytes, list[str]]:
    """The answers as an h11 server writes them (an independent implementation of the framing), and the methods
    of the requests they answer; up to the first one that ends the connection."""
    server = h11.Connection(h11.SERVER)
    stream, methods = b"", []
    for method, status, extra, body, framing, informational, reason in script:
        length = b"Content-Length: 0\r\n" if method == "POST" else b""
        server.receive_data(b"%s /m HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (method.encode(), HOST.encode(), length))
        assert isinstance(server.next_event(), h11.Request)
        assert isinstance(server.next_event(), h11.EndOfMessage)
        methods.append(method)
        if informational:
            stream += server.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra]
        if framing == "length" or status in (204, 304) or method == "HEAD":
            headers.append((b"Content-Length", str(len(body)).encode()))
        elif framing == "chunked":
            headers.append((b"Transfer-Encoding", b"chunked"))
        else:
            headers.append((b"Connection", b"close"))
        stream += server.send(h11.Response(status_code=status, headers=headers, reason=reason.encode())) or b""
        if body:
            stream += server.send(h11.Data(data=body)) or b""
        stream += server.send(h11.EndOfMessage()) or b""
        if server.our_state is not h11.DONE:
            break
        server.start_next_cycle()
    return stream, methods


def _by_h11(stream: bytes, methods: list[str], cuts: list[int]) -> list[object]:
    """What the transport read before the lean parser: one h11 reader for the connection, every answer by it."""
    reader = h11.Connection(h11.CLIENT)
    pieces = _pieces(stream, cuts)
    outcomes: list[object] = []
    for method in methods:
        reader.send(h11.Request(method=method, target="/", headers=[("Host", HOST)]))
        reader.send(h11.EndOfMessage())
        status, body = 0, bytearray()
        headers: tuple[tuple[str, str], ...] = ()
        try:
            while True:
                event = reader.next_event()
                if event is h11.NEED_DATA:
                    reader.receive_data(next(pieces))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers.raw_items())
                    length = next((v for k, v in headers if k.lower() == "content-length"), None)
                    if length is not None and length.strip().isdigit() and int(length) > CAP:
                        raise UnreadableError(too_long(CAP))
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > CAP:
                        raise UnreadableError(too_long(CAP))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    raise BrokenError("the server closed the connection")
            refused = encoding_refused(headers, bytes(body))
            if refused is not None:
                raise UnreadableError(refused)
        except (UnreadableError, BrokenError, h11.ProtocolError) as e:
            outcomes.append((type(e).__name__, str(e)))
            break
        outcomes.append(WireResponse(status, headers, bytes(body)))
        if reader.their_state is h11.DONE and reader.our_state is h11.DONE:
            reader.start_next_cycle()
        else:
            outcomes.append("closing")
            break
    return outcomes


def _by_reader(stream: bytes, methods: list[str], cuts: list[int], ahead: bool) -> list[object]:
    """The transport's reader; with ``ahead``, each answer also reads those behind it that are already here, as
    the task reading an answer does for the requests behind it on the pipeline."""
    reader = AnswerReader(HOST)
    pieces = _pieces(stream, cuts)
    outcomes: list[object] = []
    early: dict[int, WireResponse] = {}
    for i, method in enumerate(methods):
        try:
            got = early.pop(i, None)
            while got is None and (got := reader.next_answer(method, CAP)) is None:
                reader.feed(next(pieces))
        except (UnreadableError, BrokenError, h11.ProtocolError) as e:
            outcomes.append((type(e).__name__, str(e)))
            break
        outcomes.append(got)
        if reader.closing:
            outcomes.append("closing")
            break
        for j in range(i + 1, len(methods)) if ahead and not early else ():
            answer = reader.ahead(methods[j], CAP)
            if answer is None:
                break
            early[j] = answer
    return outcomes


def _pieces(stream: bytes, cuts: list[int]) -> Iterator[bytes]:
    position = 0
    for size in cuts:
        yield stream[position : position + size]
        position += size
    if position < len(stream):
        yield stream[position:]
    while True:
        yield b""  # the end of the stream, as often as asked


@given(st.lists(answers(), min_size=1, max_size=4), st.lists(st.integers(1, 300), max_size=30), st.booleans())
@example([("POST", 201, [], b"", "length", False, "Created")], [], False)
@example([("POST", 201, [("Connection", "keep-alive")], b"{}", "length", False, "")] * 2, [40], True)  # nginx's
@example([("POST", 201, [("X-A", "\xff")], b"x" * 251, "length", False, "")], [3], True)  # too long
def test_the_reader_gives_what_h11_gives_for_any_answers_h11_renders_under_any_chunking(
    script: list[tuple[str, int, list[tuple[str, str]], bytes, str, bool, str]], cuts: list[int], ahead: bool
) -> None:
    stream, methods = _render(script)
    assert _by_reader(stream, methods, cuts, ahead) == _by_h11(stream, methods, cuts)


@given(
    st.lists(answers(), min_size=1, max_size=3),
    st.lists(st.tuples(st.integers(0, 2000), st.binary(min_size=0, max_size=3)), min_size=1, max_size=4),
    st.lists(st.integers(1, 300), max_size=20),
    st.booleans(),
)
@example([("POST", 201, [], b"ok", "length", False, "")], [(14, b"\n")], [], False)  # a bare LF in the head
@example([("POST", 201, [], b"ok", "length", False, "")], [(0, b" ")], [], False)  # a space before the status
def test_the_reader_refuses_what_h11_refuses_and_reads_what_it_reads_in_damaged_answers(
    script: list[tuple[str, int, list[tuple[str, str]], bytes, str, bool, str]],
    damage: list[tuple[int, bytes]],
    cuts: list[int],
    ahead: bool,
) -> None:
    stream, methods = _render(script)
    for position, replacement in damage:
        at = position % (len(stream) + 1)
        stream = stream[:at] + replacement + stream[at + 1 :]
    assert _by_reader(stream, methods, cuts, ahead) == _by_h11(stream, methods, cuts)


def test_a_simple_answer_is_read_without_h11(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flowmailer's answers take the lean path: h11's state machine is not built for them at all."""

    def no_h11(*args: object) -> None:
        raise AssertionError("h11 was used for a simple answer")

    monkeypatch.setattr(h11, "Connection", no_h11)
    reader = AnswerReader(HOST)
    reader.feed(b"HTTP/1.1 201 Created\r\nLocation: /m/1\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n")
    reader.feed(b"okHTTP/1.1 2")
    headers = (("Location", "/m/1"), ("Content-Length", "2"), ("Connection", "keep-alive"))
    assert reader.next_answer("POST", CAP) == WireResponse(201, headers, b"ok")
    assert reader.ahead("POST", CAP) is None  # the next one is not all here: nothing consumed
    reader.feed(b"02 Accepted\r\nContent-Length: 0\r\n\r\n")
    assert reader.ahead("POST", CAP) == WireResponse(202, (("Content-Length", "0"),), b"")


def test_reading_ahead_leaves_an_answer_it_does_not_take_whole_for_its_own_reader() -> None:
    reader = AnswerReader(HOST)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    too_long_answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (CAP + 1)
    reader.feed(chunked + too_long_answer)
    assert reader.ahead("GET", CAP) is None  # chunked: for h11, read by its own task
    assert reader.next_answer("GET", CAP) == WireResponse(200, (("Transfer-Encoding", "chunked"),), b"ok")
    assert reader.ahead("GET", CAP) is None  # too long: refused by its own task, with the reason
    with pytest.raises(UnreadableError, match="longer than"):
        reader.next_answer("GET", CAP)
