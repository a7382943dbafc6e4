"""The fake's HTTP/1.1 framer: requests cut from a byte stream in order, however the stream is chunked."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.testing._fake._wire import HttpError, Request, RequestReader
from tests.fake.raw import request_bytes

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
