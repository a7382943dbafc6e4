from __future__ import annotations

import pytest

from flowmailer.core import ConfigurationError, Host, Origin, WireRequest, WireResponse


def test_request_repr_hides_the_body_and_the_bearer_token() -> None:
    request = WireRequest(
        "POST",
        Host.LOGIN,
        "/oauth/token",
        headers=(("Authorization", "Bearer tok-123"), ("Accept", "application/json")),
        body=b"client_secret=s3cr3t",
    )
    text = repr(request)
    assert "s3cr3t" not in text
    assert "tok-123" not in text
    assert "<20 bytes>" in text
    assert "application/json" in text


def test_target_encodes_the_query_and_keeps_commas() -> None:
    request = WireRequest("GET", Host.API, "/1/messages", query=(("flow_ids", "1,2"), ("q", "a b&c")))
    assert request.target == "/1/messages?flow_ids=1,2&q=a%20b%26c"
    assert WireRequest("GET", Host.API, "/1/x").target == "/1/x"


def test_header_lookup_ignores_case() -> None:
    response = WireResponse(201, headers=(("Location", "https://x/1/messages/9"),))
    assert response.header("location") == "https://x/1/messages/9"
    assert response.header("Retry-After") is None
    assert WireRequest("GET", Host.API, "/", headers=(("Accept", "a"),)).header("ACCEPT") == "a"
    assert WireRequest("GET", Host.API, "/").header("Accept") is None


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://api.flowmailer.net", Origin("api.flowmailer.net", 443)),
        ("https://api.flowmailer.test:8443/", Origin("api.flowmailer.test", 8443)),
    ],
)
def test_origin_parses_https_urls(url: str, origin: Origin) -> None:
    assert Origin.parse(url) == origin
    assert Origin.parse(origin.url()) == origin


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://api.flowmailer.net", "not an https:// URL"),
        ("https://", "no host name"),
        ("https://api.flowmailer.net/v1", "path or query"),
        ("https://api.flowmailer.net:99999", "invalid port"),
    ],
)
def test_origin_refuses_anything_but_plain_https_with_the_fix(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words) as info:
        Origin.parse(url, field="api_url")
    assert info.value.field == "api_url"


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pw-s3cr3t@api.flowmailer.net",
        "https://pw-s3cr3t@api.flowmailer.net",
        "https://user:pw-s3cr3t@api.flowmailer.net:8443/v1?x=1",
        "http://user:pw-s3cr3t@api.flowmailer.net",
        "https://user:pw-s3cr3t@@api.flowmailer.net",
        "https://user:pw-s3cr3t@",
    ],
)
def test_origin_refuses_a_user_name_or_password_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigurationError, match="user name or password") as info:
        Origin.parse(url, field="login_url")
    assert info.value.field == "login_url"
    assert "pw-s3cr3t" not in str(info.value)
    assert "pw-s3cr3t" not in repr(info.value.args)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


def test_origin_refuses_a_url_that_does_not_parse_without_quoting_it() -> None:
    with pytest.raises(ConfigurationError, match="is not a URL") as info:
        Origin.parse("https://user:pw-s3cr3t@[api", field="api_url")
    assert "pw-s3cr3t" not in str(info.value)
