"""The sans-IO Flowmailer protocol: operations become WireRequests, TransportResults become typed results.

Both transports and the fake server's tests share these functions; nothing here touches a socket or a clock.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Set
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import attrs
import cattrs

from flowmailer.core._errors import ConfigurationError, ProtocolError
from flowmailer.core._http import Host, Origin, WireRequest, WireResponse
from flowmailer.core._models import AccessToken, Credentials, ErrorDetail, SubmitMessage
from flowmailer.core._outcomes import (
    Accepted,
    Ambiguous,
    CredentialsRejected,
    Outcome,
    Rejected,
    TokenInvalid,
    Transient,
    TransportResult,
)
from flowmailer.core._ranges import DateRange, ReferenceRange
from flowmailer.core._reports import DataSet, Stats, StatsQuery
from flowmailer.core._wire import dump_json, from_json, message_to_json, wire_converter

__all__ = [
    "FIRST_PAGE",
    "JSON_CONTENT_TYPE",
    "MAX_TAG_PAGES",
    "MEDIA_TYPE",
    "MESSAGE_ID",
    "SMALL_ANSWER_LIMIT",
    "Page",
    "SortField",
    "SortOrder",
    "classify_submit",
    "interpret_one",
    "interpret_page",
    "interpret_stats",
    "interpret_token",
    "message_events_request",
    "message_request",
    "message_stats_request",
    "messages_request",
    "next_page",
    "parse_retry_after",
    "simulate_request",
    "submit_request",
    "tag_messages_request",
    "token_request",
]

MEDIA_TYPE = "application/vnd.flowmailer.v1.12+json"
JSON_CONTENT_TYPE = f"{MEDIA_TYPE};charset=UTF-8"

T = TypeVar("T")

#: The start of a reference-range listing, a hundred items at a time.
FIRST_PAGE = ReferenceRange()

#: OAuth error codes that mean "these credentials are wrong": never retried, Flowmailer locks the IP.
_BAD_CREDENTIALS = frozenset({"invalid_client", "unauthorized_client", "invalid_grant"})
#: Bad Gateway and Gateway Timeout: a proxy answered for the origin, which may have accepted the request.
_GATEWAY_ERRORS = frozenset({502, 504})
#: Flowmailer's message ids: a 14-digit timestamp (yyyyMMddHHmmss) then 18 hex digits, as in its examples.
MESSAGE_ID = re.compile(r"[0-9]{14}[0-9a-fA-F]{18}")
#: A search by tag reads at most this many pages (10,000 messages) unless told otherwise: a client reference
#: tags one message, and a listing that goes on and on is a server's fault, not a reason to read for ever.
MAX_TAG_PAGES = 100
#: What a submit's or a token request's answer can hold: nothing, a token, or a list of errors.
SMALL_ANSWER_LIMIT = 64 * 1024
#: Retry-After's delta-seconds, a fraction allowed; a sign too, as int() allowed before (a negative one means 0).
_SECONDS = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


class SortOrder(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


class SortField(enum.Enum):
    """``INSERTED`` with ``ASC`` is what Flowmailer advises for keeping a complete local copy."""

    INSERTED = "INSERTED"
    SUBMITTED = "SUBMITTED"


@attrs.frozen
class Page(Generic[T]):
    """One page of a reference-range listing; ``next_range`` is None when the listing is done for now."""

    items: tuple[T, ...]
    next_range: ReferenceRange | None = None


# --- building requests ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _quoted(value: str) -> str:
    """``value`` percent-encoded as one path segment (kept: the account id is encoded for every request)."""
    return quote(value, safe="")


def _segment(field: str, value: str) -> str:
    if not value:
        raise ConfigurationError(field, "is empty", f"give a non-empty {field}")
    return _quoted(value)


def _path(account_id: str, *segments: str, matrix: Iterable[tuple[str, str | None]] = ()) -> str:
    """``/{account}/seg/seg;name=value``: matrix parameters ride on the last segment, before any query."""
    path = "/" + _segment("account_id", account_id) + "".join("/" + s for s in segments)
    return path + "".join(f";{name}={quote(value, safe=',:')}" for name, value in matrix if value is not None)


def _ids(values: Iterable[int | str]) -> str | None:
    joined = ",".join(str(v) for v in values)
    return joined or None


def _param(value: DateRange | None) -> str | None:
    return None if value is None else value.param()


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _api_headers(token: AccessToken, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (("Accept", MEDIA_TYPE), ("Authorization", f"Bearer {token.value}"), *extra)


def token_request(credentials: Credentials) -> WireRequest:
    """``POST /oauth/token`` on the login host. Repeating it is harmless, so it counts as idempotent."""
    form = urlencode(
        {
            "client_id": credentials.client_id,
            "client_secret": credentials.client_secret.reveal(),
            "grant_type": "client_credentials",
            "scope": "api",
        }
    )
    headers = (("Accept", "application/json"), ("Content-Type", "application/x-www-form-urlencoded"))
    return WireRequest(
        "POST", Host.LOGIN, "/oauth/token", headers=headers, body=form.encode("ascii"), answer_limit=SMALL_ANSWER_LIMIT
    )


def submit_request(account_id: str, token: AccessToken, message: SubmitMessage | bytes) -> WireRequest:
    """``POST messages/submit``: not idempotent, a blind resend may duplicate the message.

    ``message`` may already be its ``message_to_json`` bytes, so that a retry does not serialise it again.
    """
    return WireRequest(
        "POST",
        Host.API,
        _path(account_id, "messages", "submit"),
        headers=_api_headers(token, ("Content-Type", JSON_CONTENT_TYPE)),
        body=message if isinstance(message, bytes) else message_to_json(message),
        idempotent=False,
        answer_limit=SMALL_ANSWER_LIMIT,
    )


def simulate_request(account_id: str, token: AccessToken, message: SubmitMessage, source_id: str) -> WireRequest:
    """``POST messages/simulate``: a preview that sends nothing, so it may be repeated."""
    if not source_id:
        raise ConfigurationError("source_id", "is empty", "give the id of the source to simulate as")
    return WireRequest(
        "POST",
        Host.API,
        _path(account_id, "messages", "simulate"),
        headers=_api_headers(token, ("Content-Type", JSON_CONTENT_TYPE)),
        body=dump_json({**wire_converter.unstructure(message), "sourceId": source_id}),
    )


def _listing(
    token: AccessToken, path: str, page: ReferenceRange, query: Iterable[tuple[str, str | None]]
) -> WireRequest:
    pairs = tuple((k, v) for k, v in query if v is not None)
    return WireRequest("GET", Host.API, path, query=pairs, headers=_api_headers(token, ("Range", page.header())))


def message_events_request(
    account_id: str,
    token: AccessToken,
    *,
    page: ReferenceRange = FIRST_PAGE,
    flow_ids: Iterable[int | str] = (),
    source_ids: Iterable[int | str] = (),
    daterange: DateRange | None = None,
    receivedrange: DateRange | None = None,
    sortorder: SortOrder | None = None,
    add_message_tags: bool = False,
) -> WireRequest:
    """``GET message_events``: the one way to learn what happened to messages (never per-message polling)."""
    matrix = (
        ("flow_ids", _ids(flow_ids)),
        ("source_ids", _ids(source_ids)),
        ("daterange", _param(daterange)),
        ("receivedrange", _param(receivedrange)),
    )
    query = (
        ("sortorder", sortorder and sortorder.value),
        ("addmessagetags", _bool(True) if add_message_tags else None),
    )
    return _listing(token, _path(account_id, "message_events", matrix=matrix), page, query)


def _message_flags(
    add_events: bool, add_headers: bool, add_online_link: bool, add_tags: bool
) -> tuple[tuple[str, str | None], ...]:
    flags = {"addevents": add_events, "addheaders": add_headers, "addonlinelink": add_online_link, "addtags": add_tags}
    return tuple((name, _bool(True) if on else None) for name, on in flags.items())


def messages_request(
    account_id: str,
    token: AccessToken,
    *,
    page: ReferenceRange = FIRST_PAGE,
    flow_ids: Iterable[int | str] = (),
    daterange: DateRange | None = None,
    sortfield: SortField | None = None,
    sortorder: SortOrder | None = None,
    add_events: bool = False,
    add_headers: bool = False,
    add_online_link: bool = False,
    add_tags: bool = False,
) -> WireRequest:
    """``GET messages``, a reference-range listing."""
    matrix = (("flow_ids", _ids(flow_ids)), ("daterange", _param(daterange)))
    query = (
        ("sortfield", sortfield and sortfield.value),
        ("sortorder", sortorder and sortorder.value),
        *_message_flags(add_events, add_headers, add_online_link, add_tags),
    )
    return _listing(token, _path(account_id, "messages", matrix=matrix), page, query)


def message_request(
    account_id: str, token: AccessToken, message_id: str, *, add_events: bool = False, add_tags: bool = False
) -> WireRequest:
    """``GET messages/{id}``."""
    query = tuple((k, v) for k, v in _message_flags(add_events, False, False, add_tags) if v is not None)
    path = _path(account_id, "messages", _segment("message_id", message_id))
    return WireRequest("GET", Host.API, path, query=query, headers=_api_headers(token))


def message_stats_request(account_id: str, token: AccessToken, daterange: DateRange, query: StatsQuery) -> WireRequest:
    """``GET messagestats``: counts per interval over ``daterange`` (matrix), optionally for some flows only.

    Flowmailer documents ``interval`` without saying where it goes; it is sent as a query parameter (inferred).
    Go through a :class:`ReportBook` to ask for each settled stretch of time once.
    """
    matrix = (("daterange", daterange.param()), ("flow_ids", _ids(query.flow_ids)))
    path = _path(account_id, "messagestats", matrix=matrix)
    return WireRequest("GET", Host.API, path, (("interval", str(query.interval)),), _api_headers(token))


def tag_messages_request(
    account_id: str,
    token: AccessToken,
    tag: str,
    *,
    page: ReferenceRange = FIRST_PAGE,
    daterange: DateRange | None = None,
    add_events: bool = False,
    add_headers: bool = False,
    add_online_link: bool = False,
    add_tags: bool = False,
) -> WireRequest:
    """``GET tag/{tag}/messages``: how an ambiguous submission is reconciled by its client reference."""
    matrix = (("daterange", _param(daterange)),)
    path = _path(account_id, "tag", _segment("tag", tag), "messages", matrix=matrix)
    return _listing(token, path, page, _message_flags(add_events, add_headers, add_online_link, add_tags))


# --- interpreting responses ----------------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds, or an HTTP-date read against ``now``), never < 0.

    Liberal in what it accepts: a decimal such as ``1.5`` counts too, though RFC 9110 says whole seconds.
    """
    if value is None:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    if now is None:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _errors(body: bytes) -> tuple[ErrorDetail, ...]:
    """``allErrors`` for API refusals, or the OAuth ``error`` pair; whatever the body, never raises."""
    obj = _json_object(body)
    if isinstance(obj.get("allErrors"), list):
        try:
            return wire_converter.structure(obj["allErrors"], tuple[ErrorDetail, ...])
        except (cattrs.BaseValidationError, ValueError, TypeError):  # a malformed list must not hide the refusal
            return ()
    if isinstance(obj.get("error"), str):
        description = obj.get("error_description")
        return (ErrorDetail(code=obj["error"], default_message=description if isinstance(description, str) else None),)
    return ()


def _oauth_error(response: WireResponse) -> str | None:
    error = _json_object(response.body).get("error")
    if isinstance(error, str):
        return error
    challenge = response.header("WWW-Authenticate") or ""
    m = re.search(r'error="([^"]*)"', challenge)
    return m[1] if m else None


def _refusal(response: WireResponse, now: float | None) -> Outcome:
    """What a non-success status means for any API request (token requests have their own reading).

    Only an expired token, overload and server trouble are worth asking again; every other status (400, 403,
    404, 413, 422, any other 401, ...) refuses a well-formed request for good: the same request gets the same answer.
    """
    status = response.status
    if status == 401 and _oauth_error(response) == "invalid_token":
        return TokenInvalid(_describe(response))
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(response.header("Retry-After"), now)
        return Transient(status, retry_after, _describe(response))
    return Rejected(status, _errors(response.body))


def _describe(response: WireResponse) -> str:
    details = "; ".join(
        e.describe() + (f" ({e.code})" if e.default_message and e.code else "") for e in _errors(response.body)
    )
    return f"HTTP {response.status}" + (f": {details}" if details else "")


def _location_id(location: str | None, origin: Origin, account_id: str) -> str | None:
    """The message id of ``https://{api host}/{account_id}/messages/{id}`` (or its path alone), else None: another
    host's or another account's Location, or an id not shaped like Flowmailer's, names no message of ours."""
    if not location:
        return None
    try:
        parts = urlsplit(location.strip())
        port = parts.port
    except ValueError:
        return None
    if (parts.scheme or parts.netloc) and (
        parts.scheme.lower() != "https"
        or parts.username is not None
        or (parts.hostname or "").rstrip(".").lower() != origin.host.rstrip(".").lower()
        or (port or 443) != origin.port
    ):
        return None
    prefix = f"/{_quoted(account_id)}/messages/"
    if parts.query or parts.fragment or not parts.path.startswith(prefix):
        return None
    message_id = parts.path.removeprefix(prefix)
    return message_id if MESSAGE_ID.fullmatch(message_id) else None


def classify_submit(result: TransportResult, *, origin: Origin, account_id: str, now: float | None = None) -> Outcome:
    """How a submit to ``account_id`` at ``origin`` (the API host) ended.

    Accepted only on 201 with a Location ``https://{origin}/{account_id}/messages/{id}`` (or that path alone) and an
    id shaped like Flowmailer's (14 digits, 18 hex digits). A 201 without such a Location, or any
    other 2xx, is Ambiguous: Flowmailer may have taken the message, so it is reconciled, not resent. So is a 502
    or 504: a gateway answered after the POST went through it, and the origin may already have the message
    (reconciling costs one GET; a blind resend may cost a duplicate). 408, 429 and the other 5xx (500, 503, ...)
    are Transient (``Retry-After`` read against ``now``, epoch seconds, when it is an HTTP-date). Every other
    status (1xx, 3xx, the remaining 4xx) is Rejected: the same request to the same API gets the same answer, and
    a blind resend of a POST risks a duplicate, so it is reported rather than retried.
    """
    if not isinstance(result, WireResponse):
        return result
    if result.status == 201:
        message_id = _location_id(result.header("Location"), origin, account_id)
        if message_id is None:
            return Ambiguous(f"201 Created without a usable Location ({result.header('Location')!r})")
        return Accepted(message_id)
    if 200 <= result.status < 300:
        return Ambiguous(f"HTTP {result.status} instead of 201 Created")
    if result.status in _GATEWAY_ERRORS:
        return Ambiguous(f"HTTP {result.status} from a gateway: Flowmailer may have the message ({_describe(result)})")
    return _refusal(result, now)


def interpret_token(result: TransportResult, now: float) -> AccessToken | Outcome:
    """Read a token response given ``now`` (epoch seconds). Any 401, or a 400 naming bad credentials, stops."""
    if not isinstance(result, WireResponse):
        return result
    if result.status == 200:
        body = _json_object(result.body)
        value, expires_in = body.get("access_token"), body.get("expires_in")
        if isinstance(expires_in, str) and _SECONDS.fullmatch(expires_in.strip()):
            expires_in = float(expires_in)  # a number sent as text, as some OAuth servers do
        if not isinstance(value, str) or not value or isinstance(expires_in, bool):
            return Transient(200, None, "token response without an access_token")
        if not isinstance(expires_in, int | float) or not 0 < expires_in < math.inf:
            return Transient(200, None, "token response without a positive expires_in")
        return AccessToken.issued(value, float(expires_in), now)
    error = _oauth_error(result)
    if result.status == 401 or (result.status == 400 and error in _BAD_CREDENTIALS):
        return CredentialsRejected(_describe(result))
    return _refusal(result, now)


def _read(result: TransportResult, parse: Callable[[WireResponse], T], now: float | None) -> T | Outcome:
    if not isinstance(result, WireResponse):
        return result
    if result.status not in (200, 206):
        return _refusal(result, now)
    try:
        return parse(result)
    except ConfigurationError as e:
        return Transient(result.status, None, f"unreadable answer: {e}")


def interpret_page(result: TransportResult, item_type: type[T], *, now: float | None = None) -> Page[T] | Outcome:
    """A reference-range page of ``item_type`` (MessageEvent, Message), or the Outcome that stopped it.

    A garbled body or ``Next-Range`` is Transient: reading again is harmless.
    """

    def parse(response: WireResponse) -> Page[T]:
        items = from_json(response.body, tuple[item_type, ...], what="body", fix="report this answer")  # type: ignore[valid-type]
        next_header = response.header("Next-Range")
        if not items or next_header is None:
            return Page(items)
        return Page(items, ReferenceRange.parse(next_header, header="Next-Range"))

    return _read(result, parse, now)


def check_max_pages(max_pages: object) -> int:
    """``max_pages`` if it allows a page; a clear error, before any request, if not."""
    if isinstance(max_pages, bool) or not isinstance(max_pages, int) or max_pages < 1:
        raise ConfigurationError("max_pages", f"{max_pages!r} allows no page", "give a whole number of 1 or more")
    return max_pages


def next_page(endpoint: str, page: Page[Any], seen: Set[str], *, max_pages: int | None = None) -> ReferenceRange | None:
    """The range to ask for after ``page``, given the references this listing was already at (its start too);
    None when the listing is done.

    Raises ProtocolError, naming ``endpoint``, for a ``Next-Range`` that points at a page already read (itself or
    one before: following it would read the same pages for ever) or that leads past ``max_pages`` pages.
    """
    following = page.next_range
    if following is None:
        return None
    if following.reference in seen:
        raise ProtocolError(
            f"{endpoint}: the answer's Next-Range {following.header()!r} points at a page this listing already read; "
            "stopped rather than read the same pages again. Flowmailer's cursors only move on: a proxy in between, "
            "or a server that is not Flowmailer, sent it."
        )
    if max_pages is not None and len(seen) >= max_pages:
        raise ProtocolError(
            f"{endpoint}: the listing goes on past {max_pages} pages; stopped there. Narrow it (a daterange) or "
            "raise max_pages."
        )
    return following


def interpret_one(result: TransportResult, item_type: type[T], *, now: float | None = None) -> T | Outcome:
    """A single resource (``messages/{id}``, a simulation), or the Outcome that stopped it."""
    return _read(result, lambda r: from_json(r.body, item_type, what="body", fix="report this answer"), now)


@attrs.frozen
class _DataSets:
    """``messagestats``' answer as Flowmailer spells it: ``{"list": [DataSet, ...]}``.

    ``list`` has no default: a report read as empty would be kept as counts of zero, so an answer without a
    readable list is refused (and asked again), never taken for "no messages".
    """

    list: tuple[DataSet, ...]


def interpret_stats(
    result: TransportResult, now: float | None = None, *, query: StatsQuery, daterange: DateRange
) -> Stats | Outcome:
    """The answer to ``message_stats_request(..., daterange, query)``, or the Outcome that stopped it.

    Every sample must start an interval of the request (``daterange.start + k * interval``, before its end), once
    per counter: samples on other boundaries (buckets in another time zone, say) cannot be merged with other
    answers, so such an answer is Transient ("unreadable answer"), never a report with counts silently misplaced.
    """
    start, end = query.span(daterange)

    def parse(response: WireResponse) -> Stats:
        stats = Stats(from_json(response.body, _DataSets, what="body", fix="report this answer").list)
        for d in stats.datasets:
            seen: set[float] = set()
            for sample in d.samples:
                t = sample.timestamp.timestamp()
                if not start <= t < end or (t - start) % query.interval or t in seen:
                    raise ConfigurationError(
                        "body",
                        f"{d.name} has a sample at {sample.timestamp.isoformat()}, not once on a {query.interval} s "
                        f"boundary of {daterange.param()}",
                        "report this answer",
                    )
                seen.add(t)
        return stats

    return _read(result, parse, now)
