"""The HTTP/1.1 framing both transports write: h11, an independent parser, reads back exactly what was meant."""

from __future__ import annotations

import gzip

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmailer.adapters._http1 import ONE_WRITE_LIMIT, _header_line, encoding_refused, render_request
from flowmailer.core import ConfigurationError, Host, Origin, WireRequest

_TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TOKEN = st.text(st.sampled_from(_TCHAR), min_size=1)
_VISIBLE = st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f", exclude_categories=["Cc"])
_VALUE = st.one_of(
    st.just(""),
    st.tuples(_VISIBLE, st.text(st.one_of(_VISIBLE, st.sampled_from(" \t")), max_size=40), _VISIBLE).map("".join),
)
_SEGMENT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#"), min_size=1)
_AROUND_THE_LIMIT = st.binary(min_size=ONE_WRITE_LIMIT - 2, max_size=ONE_WRITE_LIMIT + 2)
_FRAMING = ["Host", "user-agent", "Accept-Encoding", "Content-Length", "Transfer-Encoding", "Connection", "TE"]
_FRAMING += ["Keep-Alive", "Proxy-Connection", "Trailer", "Upgrade", "Expect"]


@st.composite
def requests(draw: st.DrawFn) -> WireRequest:
    framing = {n.lower() for n in _FRAMING}
    names = draw(st.lists(_TOKEN.filter(lambda n: n.lower() not in framing), max_size=5, unique_by=str.lower))
    return WireRequest(
        draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"])),
        Host.API,
        "/" + "/".join(draw(st.lists(_SEGMENT, min_size=1, max_size=4))),
        query=tuple(draw(st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)), max_size=3))),
        headers=tuple((n, draw(_VALUE)) for n in names),
        body=draw(
            st.one_of(st.binary(max_size=300), st.binary(min_size=ONE_WRITE_LIMIT - 2, max_size=ONE_WRITE_LIMIT + 2))
        ),
    )


def _parse(data: bytes) -> tuple[h11.Request, bytes]:
    server = h11.Connection(h11.SERVER)
    server.receive_data(data)
    request = server.next_event()
    assert isinstance(request, h11.Request)
    body = b""
    while not isinstance(event := server.next_event(), h11.EndOfMessage):
        assert isinstance(event, h11.Data), event
        body += event.data
    assert server.trailing_data == (b"", False)  # nothing after the message: no request smuggled in
    return request, body


@given(requests())
def test_what_is_written_reads_back_as_the_request(request: WireRequest) -> None:
    pieces = render_request(request, Origin("api.example.test", 8443), "tests/1")
    assert len(pieces) == (1 if len(request.body) <= ONE_WRITE_LIMIT else 2)
    parsed, body = _parse(b"".join(pieces))
    assert parsed.method.decode() == request.method
    assert parsed.target.decode() == request.target
    assert body == request.body
    headers = [(k.decode(), v.decode("latin-1")) for k, v in parsed.headers.raw_items()]
    ours = [("Host", "api.example.test:8443"), ("User-Agent", "tests/1"), ("Accept-Encoding", "identity")]
    assert headers[:3] == ours
    assert headers[3 : 3 + len(request.headers)] == list(request.headers)


def test_the_default_port_is_left_out_of_host_and_a_bodiless_get_has_no_length() -> None:
    (data,) = render_request(WireRequest("GET", Host.API, "/a"), Origin("api.example.test"), "ua")
    assert data == b"GET /a HTTP/1.1\r\nHost: api.example.test\r\nUser-Agent: ua\r\nAccept-Encoding: identity\r\n\r\n"


def test_an_empty_post_says_its_length_is_zero() -> None:
    (data,) = render_request(WireRequest("POST", Host.API, "/a"), Origin("api.example.test"), "ua")
    assert data.endswith(b"Content-Length: 0\r\n\r\n")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (WireRequest("GET", Host.API, "/a", headers=(("X", "a\r\nEvil: 1"),)), "request.headers"),
        (WireRequest("GET", Host.API, "/a", headers=(("X", "a\nb"),)), "request.headers"),
        (WireRequest("GET", Host.API, "/a", headers=(("X", "a\x00b"),)), "request.headers"),
        (WireRequest("GET", Host.API, "/a", headers=(("X Y", "a"),)), "request.headers"),
        (WireRequest("GET", Host.API, "/a", headers=(("X:", "a"),)), "request.headers"),
        (WireRequest("GET", Host.API, "/a", headers=(("X", "\u20ac"),)), "request.headers"),
        (WireRequest("GET", Host.API, "/a", headers=(("X", "a\x85b"),)), "request.headers"),
        (WireRequest("GET", Host.API, "/a", headers=(("X", " a"),)), "request.headers"),
        (WireRequest("GET", Host.API, "/a", headers=(("X", "a\t"),)), "request.headers"),
        (WireRequest("GET", Host.API, "/a b"), "request.target"),
        (WireRequest("GET", Host.API, "/a\r\nHost: evil"), "request.target"),
        (WireRequest("GET", Host.API, "/caf\u00e9"), "request.target"),
        (WireRequest("GET /x", Host.API, "/a"), "request.method"),
    ],
)
def test_anything_that_could_split_or_change_the_head_is_refused(request_: WireRequest, field: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        render_request(request_, Origin("api.example.test"), "ua")
    assert e.value.field == field


def test_a_refused_header_is_refused_again_the_checks_cache_only_what_passed() -> None:
    request = WireRequest("GET", Host.API, "/a", headers=(("X", "a\r\nEvil: 1"),))
    for _ in range(2):
        with pytest.raises(ConfigurationError):
            render_request(request, Origin("api.example.test"), "ua")


def test_no_token_is_kept_in_the_cache_of_checked_header_lines() -> None:
    """The cache spares the regexes for headers every request repeats; a token's line is checked every time, so
    no token outlives its use in it."""
    origin = Origin("api.example.test")
    render_request(WireRequest("GET", Host.API, "/a", headers=(("Authorization", "Bearer one"),)), origin, "ua")
    before = _header_line.cache_info()
    render_request(WireRequest("GET", Host.API, "/a", headers=(("Authorization", "Bearer two"),)), origin, "ua")
    after = _header_line.cache_info()
    assert (after.currsize, after.misses) == (before.currsize, before.misses)


def test_a_user_agent_with_a_line_break_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="User-Agent"):
        render_request(WireRequest("GET", Host.API, "/a"), Origin("api.example.test"), "ua\r\nX: 1")


@pytest.mark.parametrize("name", _FRAMING)
def test_a_header_that_frames_the_request_is_left_to_the_transport(name: str) -> None:
    request = WireRequest("POST", Host.API, "/a", headers=((name, "1"),), body=b"x")
    with pytest.raises(ConfigurationError) as e:
        render_request(request, Origin("api.example.test"), "ua")
    assert e.value.field == "request.headers"
    assert name in e.value.problem


@pytest.mark.parametrize("coding", ["gzip", "X-Gzip", "deflate", "br"])
def test_a_body_in_a_coding_that_was_not_asked_for_is_refused_not_decoded(coding: str) -> None:
    refused = encoding_refused((("Content-Encoding", coding),), gzip.compress(b'{"a": 1}'))
    assert refused is not None
    assert coding.lower() in refused


@pytest.mark.parametrize(
    ("headers", "body"),
    [((), b"{}"), ((("Content-Encoding", "identity"),), b"{}"), ((("Content-Encoding", "gzip"),), b"")],
)
def test_identity_or_an_empty_body_is_read(headers: tuple[tuple[str, str], ...], body: bytes) -> None:
    assert encoding_refused(headers, body) is None
