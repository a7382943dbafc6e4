"""The fake's HTTP/1.1 framer: requests cut from a byte stream in order, however the stream is chunked."""

from __future__ import annotations

import h11
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flowmailer.testing._fake._wire import HttpError, Request, RequestReader
from tests.fake.raw import request_bytes
from tests.strategies import TCHAR, header_values

bodies = st.lists(st.binary(max_size=300), min_size=1, max_size=5)


def _drain(reader: RequestReader) -> list[Request]:
    requests = []
    while (request := reader.next_request()) is not None:
        requests.append(request)
    return requests


@given(bodies, st.lists(st.integers(1, 400), max_size=40))
def test_any_chunking_of_pipelined_requests_gives_the_same_requests_in_order(
    payloads: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(request_bytes("POST", f"/m/{i}", body=b) for i, b in enumerate(payloads))
    reader = RequestReader(max_body=1000)
    got: list[Request] = []
    position = 0
    for size in [*cuts, len(stream)]:
        reader.feed(stream[position : position + size])
        position += size
        got += _drain(reader)
    assert [(r.target, r.body) for r in got] == [(f"/m/{i}", b) for i, b in enumerate(payloads)]
    assert not reader.buffered


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n Folded: value\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nX: " + b"y" * 70_000, 431),
    ],
)
def test_unframeable_input_names_the_status_to_answer(raw: bytes, status: int) -> None:
    reader = RequestReader(max_body=1000)
    reader.feed(raw)
    with pytest.raises(HttpError) as caught:
        reader.next_request()
    assert caught.value.status == status


def test_repeated_headers_are_joined() -> None:
    reader = RequestReader(max_body=1000)
    reader.feed(b"GET / HTTP/1.1\r\nAccept: a\r\nAccept: b\r\n\r\n")
    request = reader.next_request()
    assert request is not None
    assert request.header("accept") == "a, b"


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [("HTTP/1.1", "", True), ("HTTP/1.1", "close", False), ("HTTP/1.0", "", False), ("HTTP/1.0", "keep-alive", True)],
)
def test_keep_alive_follows_the_version_and_connection_header(version: str, connection: str, keep_alive: bool) -> None:
    reader = RequestReader(max_body=1000)
    reader.feed(f"GET / {version}\r\nConnection: {connection}\r\n\r\n".encode())
    request = reader.next_request()
    assert request is not None
    assert request.keep_alive is keep_alive


_FRAMING = {"host", "content-length", "transfer-encoding", "connection", "expect"}
tokens = st.text(TCHAR, min_size=1, max_size=12)
header_names = tokens.filter(lambda name: name.lower() not in _FRAMING)
targets = st.text("".join(map(chr, range(0x21, 0x7F))), max_size=40).map(lambda path: "/" + path)


@st.composite
def h11_requests(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str]], bytes]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"]) | tokens)
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=6))
    return method, draw(targets), headers, draw(st.binary(max_size=200))


def _h11_render(method: str, target: str, headers: list[tuple[str, str]], body: bytes, *, close: bool) -> bytes:
    """The request as h11 writes it: an independent implementation of HTTP/1.1 framing."""
    connection = h11.Connection(h11.CLIENT)
    framing = [("Host", "api.flowmailer.test"), ("Content-Length", str(len(body)))]
    if close:
        framing.append(("Connection", "close"))
    latin = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in [*framing, *headers]]
    head = h11.Request(method=method.encode(), target=target.encode("latin-1"), headers=latin)
    return b"".join(connection.send(event) or b"" for event in (head, h11.Data(data=body), h11.EndOfMessage()))


@given(st.lists(h11_requests(), min_size=1, max_size=4), st.booleans(), st.lists(st.integers(1, 300), max_size=30))
@example([("GET", "/", [("X-A", ""), ("X-A", "00\x85")], b"")], False, [])  # str.strip() took the 0x85 off
def test_requests_rendered_by_h11_are_read_back_whole_under_any_chunking(
    requests: list[tuple[str, str, list[tuple[str, str]], bytes]], close_last: bool, cuts: list[int]
) -> None:
    """The fake's hand-written reader against h11's writer: the same method, target, headers (names lower-cased,
    repeats joined), body and keep-alive, for pipelined requests cut into any pieces."""
    last = len(requests) - 1
    stream = b"".join(_h11_render(*r, close=close_last and i == last) for i, r in enumerate(requests))
    reader = RequestReader(max_body=1000)
    got: list[Request] = []
    position = 0
    for size in [*cuts, len(stream)]:
        reader.feed(stream[position : position + size])
        position += size
        got += _drain(reader)
    assert not reader.buffered
    assert len(got) == len(requests)
    for i, ((method, target, headers, body), request) in enumerate(zip(requests, got, strict=True)):
        expected: dict[str, str] = {"host": "api.flowmailer.test", "content-length": str(len(body))}
        if close_last and i == last:
            expected["connection"] = "close"
        for name, value in headers:
            key = name.lower()
            expected[key] = f"{expected[key]}, {value}" if key in expected else value
        assert (request.method, request.target, request.body) == (method, target, body)
        assert request.headers == expected
        assert request.keep_alive is not (close_last and i == last)
