"""Flowmailer's whole REST API as one table: each endpoint's method, path, parameters, body, answer and paging.

Requests are built and answers read by the generic functions below, from the table alone, so that no endpoint
is a copy of another; the clients' methods (``flowmailer.app._api``) and the fake server are driven by it too.
The endpoints with their own reliability rules (the token request, submit, simulate, ``messages/{id}``,
``message_events``, ``tag/{tag}/messages`` and ``messagestats``) are in the table as well, marked with the
client method that already serves them, and keep their own builders in ``flowmailer.core._protocol``.
"""

from __future__ import annotations

import enum
import functools
import re
import types
from collections.abc import Mapping, Set
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlsplit

import attrs

from flowmailer.core._errors import ConfigurationError, ProtocolError
from flowmailer.core._http import Host, WireRequest, WireResponse
from flowmailer.core._loop import Deliver, Engine, Listing, Loop
from flowmailer.core._models import AccessToken, ArchivedAttachment, Message, MessageEvent, _kind
from flowmailer.core._outcomes import Ambiguous, Outcome, Transient, TransportResult
from flowmailer.core._protocol import JSON_CONTENT_TYPE, MEDIA_TYPE, SMALL_ANSWER_LIMIT, SortField, SortOrder, _read
from flowmailer.core._ranges import DateRange, ItemContentRange, ItemRange, ReferenceRange
from flowmailer.core._reports import DataSet, Stats
from flowmailer.core._resources import (
    Account,
    AccountUser,
    ApiCredential,
    BouncedMessage,
    EventFlow,
    EventFlowRuleSimple,
    Filter,
    Flow,
    FlowRuleHierarchyItem,
    FlowRuleItem,
    FlowRuleSimple,
    FlowTemplate,
    MessageArchive,
    MessageHold,
    Recipient,
    Role,
    SenderDomain,
    Source,
    Template,
)
from flowmailer.core._wire import dump_json, from_json, wire_converter

__all__ = [
    "ENDPOINTS",
    "Answer",
    "Endpoint",
    "Kind",
    "ListingPage",
    "Paging",
    "Param",
    "ResendMessage",
    "Where",
    "build_request",
    "endpoint",
    "first_range",
    "following_range",
    "interpret",
    "interpret_listing",
    "perform",
    "perform_listing",
]

T = TypeVar("T")


class Where(enum.Enum):
    """Where a parameter travels."""

    PATH = "path"
    MATRIX = "matrix"
    QUERY = "query"


class Kind(enum.Enum):
    """What a parameter holds, and so how it is written: text, ``true``/``false``, comma-joined ids, a date range,
    a whole number, or an enum's value."""

    TEXT = "text"
    BOOL = "bool"
    IDS = "ids"
    DATERANGE = "daterange"
    INT = "int"
    ENUM = "enum"


class Paging(enum.Enum):
    """How a listing pages: not at all, by reference (``items=REF:COUNT``) or by position (``items=START-END``)."""

    NONE = "none"
    REFERENCE = "reference"
    ITEMS = "items"


class Answer(enum.Enum):
    """What a success holds: nothing, the id of what was created (``Location``), one object, a list, or stats."""

    NOTHING = "nothing"
    CREATED = "created"
    ONE = "one"
    MANY = "many"
    STATS = "stats"


@attrs.frozen
class Param:
    """One parameter: its Python name, its name on the wire, where it goes and what it holds."""

    name: str
    where: Where
    kind: Kind = Kind.TEXT
    wire: str = ""
    required: bool = False

    @property
    def wire_name(self) -> str:
        return self.wire or self.name


@attrs.frozen(kw_only=True)
class ResendMessage:
    """The body of ``POST messages/{id}/resend``: the recipient to send the message to again (None: the same)."""

    recipient_address: str | None = None


@attrs.frozen
class Endpoint(Generic[T]):
    """One of Flowmailer's endpoints. ``T`` is what the client's method returns for one answer (for a listing, the
    type of one item); ``path`` names its path parameters ``{like_this}``, after ``/{account_id}`` unless
    ``account`` is False."""

    name: str
    method: str
    path: str
    answer: Answer
    item: type[Any] | None = None
    params: tuple[Param, ...] = ()
    body: type[Any] | None = None
    paging: Paging = Paging.NONE
    #: Sending it twice does no more than once: every GET, PUT and DELETE, and the POSTs that only check.
    idempotent: bool = True
    #: The client method that serves it, where that is not ``name`` (an endpoint with its own rules).
    served_by: str | None = None
    account: bool = True

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(re.findall(r"\{(\w+)\}", self.path))


def _endpoint(
    name: str,
    method: str,
    path: str,
    answer: Answer,
    item: type[T] | None = None,
    *params: Param,
    body: type[Any] | None = None,
    paging: Paging = Paging.NONE,
    served_by: str | None = None,
    idempotent: bool | None = None,
    account: bool = True,
) -> Endpoint[T]:
    writes = method == "POST"
    return Endpoint(
        name,
        method,
        path,
        answer,
        item,
        params,
        body,
        paging,
        (not writes) if idempotent is None else idempotent,
        served_by,
        account,
    )


def _matrix(name: str, kind: Kind = Kind.TEXT, *, required: bool = False) -> Param:
    return Param(name, Where.MATRIX, kind, name, required)


def _query(name: str, kind: Kind = Kind.BOOL, wire: str = "") -> Param:
    return Param(name, Where.QUERY, kind, wire or name.replace("_", ""))


_DATERANGE = _matrix("daterange", Kind.DATERANGE)
_RECEIVEDRANGE = _matrix("receivedrange", Kind.DATERANGE)
_SORTORDER = _query("sortorder", Kind.ENUM)
_MESSAGE_FLAGS = (_query("add_headers"), _query("add_online_link"), _query("add_tags"))
_ALL_MESSAGE_FLAGS = (_query("add_events"), *_MESSAGE_FLAGS)
_STATS = (_matrix("daterange", Kind.DATERANGE, required=True), _matrix("interval", Kind.INT))
_ONE, _MANY, _NOTHING, _CREATED = Answer.ONE, Answer.MANY, Answer.NOTHING, Answer.CREATED
_REF, _ITEMS = Paging.REFERENCE, Paging.ITEMS


def _crud(plural: str, singular: str, model: type[Any], path: str, *list_params: Param) -> tuple[Endpoint[Any], ...]:
    """The five endpoints of a collection: list, create, delete, get and update one."""
    one = f"{path}/{{{singular}_id}}"
    return (
        _endpoint(plural, "GET", path, _MANY, model, *list_params),
        _endpoint(f"create_{singular}", "POST", path, _CREATED, body=model),
        _endpoint(f"delete_{singular}", "DELETE", one, _NOTHING),
        _endpoint(singular, "GET", one, _ONE, model),
        _endpoint(f"update_{singular}", "PUT", one, _ONE, model, body=model),
    )


#: Every endpoint of Flowmailer's API (flowmailer-endpoints.md, 73), in its order.
ENDPOINTS: tuple[Endpoint[Any], ...] = (
    _endpoint("token", "POST", "oauth/token", _ONE, served_by="check_credentials", idempotent=True, account=False),
    _endpoint("create_account", "POST", "accounts", _CREATED, body=Account, account=False),
    *_crud("api_credentials", "api_credential", ApiCredential, "api_credentials", _matrix("source_id")),
    _endpoint("event_flow_rules", "GET", "event_flow_rules", _MANY, EventFlowRuleSimple),
    _endpoint("event_flow_rules_hierarchy", "GET", "event_flow_rules/hierarchy", _MANY, FlowRuleHierarchyItem),
    *_crud("event_flows", "event_flow", EventFlow, "event_flows"),
    _endpoint("event_flow_rule", "GET", "event_flows/{event_flow_id}/rule", _ONE, EventFlowRuleSimple),
    _endpoint(
        "update_event_flow_rule",
        "PUT",
        "event_flows/{event_flow_id}/rule",
        _NOTHING,
        body=EventFlowRuleSimple,
    ),
    _endpoint("filters", "GET", "filters", _MANY, Filter, _DATERANGE, _SORTORDER, paging=_REF),
    _endpoint("delete_filter", "DELETE", "filters/{filter_id}", _NOTHING),
    _endpoint("flow_rules", "GET", "flow_rules", _MANY, FlowRuleItem),
    _endpoint("flow_templates", "GET", "flow_templates", _MANY, FlowTemplate),
    *_crud("flows", "flow", Flow, "flows", _query("statistics")),
    _endpoint(
        "flow_messages", "GET", "flows/{flow_id}/messages", _MANY, Message, _DATERANGE, *_MESSAGE_FLAGS, paging=_ITEMS
    ),
    _endpoint("flow_rule", "GET", "flows/{flow_id}/rule", _ONE, FlowRuleSimple),
    _endpoint("update_flow_rule", "PUT", "flows/{flow_id}/rule", _NOTHING, body=FlowRuleSimple),
    _endpoint("flow_stats", "GET", "flows/{flow_id}/stats", Answer.STATS, DataSet, *_STATS),
    _endpoint("message_events", "GET", "message_events", _MANY, MessageEvent, paging=_REF, served_by="message_events"),
    _endpoint("message_holds", "GET", "message_hold", _MANY, MessageHold, _DATERANGE, paging=_ITEMS),
    _endpoint("message_hold", "GET", "message_hold/{message_id}", _ONE, MessageHold),
    _endpoint(
        "messages",
        "GET",
        "messages",
        _MANY,
        Message,
        _matrix("flow_ids", Kind.IDS),
        _DATERANGE,
        _query("sortfield", Kind.ENUM),
        _SORTORDER,
        *_ALL_MESSAGE_FLAGS,
        paging=_REF,
    ),
    _endpoint("simulate", "POST", "messages/simulate", _ONE, served_by="simulate", idempotent=True),
    _endpoint("submit", "POST", "messages/submit", _CREATED, served_by="submit"),
    _endpoint("message", "GET", "messages/{message_id}", _ONE, Message, served_by="message"),
    _endpoint(
        "message_archive",
        "GET",
        "messages/{message_id}/archive",
        _MANY,
        MessageArchive,
        _query("add_attachments"),
        _query("add_data"),
    ),
    _endpoint(
        "message_archive_attachment",
        "GET",
        "messages/{message_id}/archive/{flow_step_id}/attachment/{content_id}",
        _ONE,
        ArchivedAttachment,
    ),
    _endpoint(
        "message_error_archive",
        "GET",
        "messages/{message_id}/error_archive",
        _ONE,
        MessageArchive,
        _query("add_attachments"),
        _query("add_data"),
    ),
    _endpoint("resend_message", "POST", "messages/{message_id}/resend", _NOTHING, body=ResendMessage),
    _endpoint("message_stats", "GET", "messagestats", Answer.STATS, DataSet, served_by="message_stats"),
    _endpoint("recipient", "GET", "recipient/{recipient}", _ONE, Recipient, _DATERANGE),
    _endpoint(
        "recipient_messages",
        "GET",
        "recipient/{recipient}/messages",
        _MANY,
        Message,
        _DATERANGE,
        _SORTORDER,
        *_MESSAGE_FLAGS,
        paging=_REF,
    ),
    _endpoint("roles", "GET", "roles", _MANY, Role),
    _endpoint(
        "sender_messages",
        "GET",
        "sender/{sender}/messages",
        _MANY,
        Message,
        _DATERANGE,
        _SORTORDER,
        *_MESSAGE_FLAGS,
        paging=_REF,
    ),
    _endpoint("sender_domains", "GET", "sender_domains", _MANY, SenderDomain),
    _endpoint("create_sender_domain", "POST", "sender_domains", _CREATED, body=SenderDomain),
    _endpoint(
        "sender_domain_by_domain", "GET", "sender_domains/by_domain/{domain}", _ONE, SenderDomain, _query("validate")
    ),
    _endpoint(
        "validate_sender_domain",
        "POST",
        "sender_domains/validate",
        _ONE,
        SenderDomain,
        body=SenderDomain,
        idempotent=True,  # a check: it changes nothing
    ),
    _endpoint("delete_sender_domain", "DELETE", "sender_domains/{sender_domain_id}", _NOTHING),
    _endpoint("sender_domain", "GET", "sender_domains/{sender_domain_id}", _ONE, SenderDomain, _query("validate")),
    _endpoint(
        "update_sender_domain", "PUT", "sender_domains/{sender_domain_id}", _ONE, SenderDomain, body=SenderDomain
    ),
    *_crud("sources", "source", Source, "sources", _query("statistics")),
    _endpoint(
        "source_messages",
        "GET",
        "sources/{source_id}/messages",
        _MANY,
        Message,
        _DATERANGE,
        *_MESSAGE_FLAGS,
        paging=_ITEMS,
    ),
    _endpoint("source_stats", "GET", "sources/{source_id}/stats", Answer.STATS, DataSet, *_STATS),
    _endpoint("source_users", "GET", "sources/{source_id}/users", _MANY, ApiCredential),
    _endpoint("create_source_user", "POST", "sources/{source_id}/users", _CREATED, body=ApiCredential),
    _endpoint("delete_source_user", "DELETE", "sources/{source_id}/users/{user_id}", _NOTHING),
    _endpoint("source_user", "GET", "sources/{source_id}/users/{user_id}", _ONE, ApiCredential),
    _endpoint(
        "update_source_user", "PUT", "sources/{source_id}/users/{user_id}", _ONE, ApiCredential, body=ApiCredential
    ),
    _endpoint("messages_by_tag", "GET", "tag/{tag}/messages", _MANY, Message, paging=_REF, served_by="messages_by_tag"),
    *_crud("templates", "template", Template, "templates"),
    _endpoint(
        "undelivered_messages",
        "GET",
        "undeliveredmessages",
        _MANY,
        BouncedMessage,
        _DATERANGE,
        _RECEIVEDRANGE,
        _SORTORDER,
        *_ALL_MESSAGE_FLAGS,
        paging=_REF,
    ),
    _endpoint("users", "GET", "users", _MANY, AccountUser),
    _endpoint("add_user", "POST", "users", _CREATED, body=AccountUser),
)

_BY_NAME = {e.name: e for e in ENDPOINTS}


def endpoint(name: str) -> Endpoint[Any]:
    """The table's entry called ``name``."""
    return _BY_NAME[name]


# --- building requests ---------------------------------------------------------------------------------------


def _text(param: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(param, f"is {_kind(value)}, not a non-empty string", f"give {param} as text")
    return value


def _write(param: Param, value: object) -> str:
    """A parameter's value as the wire carries it; a value of the wrong kind is refused, naming the parameter."""
    if param.kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise ConfigurationError(param.name, f"is {_kind(value)}, not True or False", "pass True or False")
        return "true" if value else "false"
    if param.kind is Kind.IDS:
        if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
            raise ConfigurationError(param.name, f"is {_kind(value)}, not a list of ids", "pass a list, e.g. ['1']")
        return ",".join(str(v) for v in value)
    if param.kind is Kind.DATERANGE:
        if not isinstance(value, DateRange):
            raise ConfigurationError(param.name, f"is {_kind(value)}, not a DateRange", "pass DateRange(start, end)")
        return value.param()
    if param.kind is Kind.INT:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(
                param.name, f"is {_kind(value)}, not a whole number of 1 or more", "pass e.g. 3600"
            )
        return str(value)
    if param.kind is Kind.ENUM:
        if not isinstance(value, SortOrder | SortField):
            raise ConfigurationError(param.name, f"is {_kind(value)}, not a SortOrder or SortField", "pass the enum")
        return str(value.value)
    return _text(param.name, value)


def build_request(
    endpoint: Endpoint[Any],
    account_id: str,
    token: AccessToken,
    args: Mapping[str, object],
    *,
    page: ReferenceRange | ItemRange | None = None,
) -> WireRequest:
    """The request for ``endpoint`` with ``args`` (path parameters, the others by name, ``body``); parameters left
    None are left out. A missing path parameter or body, or a value of the wrong kind, is a ConfigurationError
    naming it, before anything is sent."""
    path = endpoint.path
    for name in endpoint.path_params:
        path = path.replace(f"{{{name}}}", quote(_text(name, args.get(name)), safe=""))
    matrix: list[str] = []
    query: list[tuple[str, str]] = []
    for param in endpoint.params:
        value = args.get(param.name)
        if value is None:
            if param.required:
                raise ConfigurationError(param.name, "is missing", f"give {param.name}")
            continue
        if param.where is Where.MATRIX:
            matrix.append(f";{param.wire_name}={quote(_write(param, value), safe=',:')}")
        else:
            query.append((param.wire_name, _write(param, value)))
    prefix = f"/{quote(_text('account_id', account_id), safe='')}" if endpoint.account else ""
    headers: list[tuple[str, str]] = [("Accept", MEDIA_TYPE), ("Authorization", f"Bearer {token.value}")]
    body = b""
    if endpoint.body is not None:
        value = args.get("body")
        if not isinstance(value, endpoint.body):
            raise ConfigurationError(
                "body", f"is {_kind(value)}, not a {endpoint.body.__name__}", f"pass a {endpoint.body.__name__}"
            )
        body = dump_json(wire_converter.unstructure(value))
        headers.append(("Content-Type", JSON_CONTENT_TYPE))
    if page is not None:
        headers.append(("Range", page.header()))
    small = endpoint.answer in (Answer.NOTHING, Answer.CREATED)
    return WireRequest(
        endpoint.method,
        Host.API,
        prefix + "/" + path + "".join(matrix),
        query=tuple(query),
        headers=tuple(headers),
        body=body,
        idempotent=endpoint.idempotent,
        **({"answer_limit": SMALL_ANSWER_LIMIT} if small else {}),
    )


# --- reading answers -----------------------------------------------------------------------------------------


@attrs.frozen
class _DataSetList:
    list: tuple[DataSet, ...]


def _created_id(response: WireResponse) -> str | None:
    """The last path segment of ``Location``: the id of what was created."""
    location = response.header("Location")
    if not location:
        return None
    try:
        path = urlsplit(location.strip()).path
    except ValueError:
        return None
    last: str = path.rstrip("/").rpartition("/")[2]
    return last or None


def interpret(endpoint: Endpoint[Any], result: TransportResult, now: float | None = None) -> Any:
    """The answer to a request ``build_request(endpoint, ...)`` built (for a listing, one page's items), or the
    Outcome that stopped it.

    A write that is not idempotent (a POST) is read like a submit: a 502 or 504 from a gateway, or a 2xx without
    the ``Location`` of what it created, is Ambiguous, since Flowmailer may have done it.
    """
    if not isinstance(result, WireResponse):
        return result
    status = result.status
    if not endpoint.idempotent and status in (502, 504):
        return Ambiguous(f"HTTP {status} from a gateway: Flowmailer may have done {endpoint.name}")
    if 200 <= status < 300 and endpoint.answer is Answer.NOTHING:
        return None
    if 200 <= status < 300 and endpoint.answer is Answer.CREATED:
        created = _created_id(result)
        return created if created is not None else Ambiguous(f"HTTP {status} without the Location of what it made")
    what = f"{endpoint.name}'s answer"

    def parse(response: WireResponse) -> Any:
        if endpoint.answer is Answer.STATS:
            return Stats(from_json(response.body, _DataSetList, what=what, fix="report this answer").list)
        assert endpoint.item is not None
        if endpoint.answer is Answer.MANY:
            many: Any = types.GenericAlias(tuple, (endpoint.item, ...))
            return from_json(response.body, many, what=what, fix=_FIX)
        return from_json(response.body, endpoint.item, what=what, fix=_FIX)

    return _read(result, parse, now)


_FIX = "report this answer"


@attrs.frozen
class ListingPage(Generic[T]):
    """One page of a listing and the range to ask for next (None: the listing is done)."""

    items: tuple[T, ...]
    next_range: ReferenceRange | ItemRange | None = None


def first_range(endpoint: Endpoint[Any], page_size: int = 100) -> ReferenceRange | ItemRange | None:
    """The first page's ``Range``; None for an endpoint that does not page."""
    if endpoint.paging is Paging.REFERENCE:
        return ReferenceRange("", page_size)
    if endpoint.paging is Paging.ITEMS:
        return ItemRange(0, page_size - 1)
    return None


def interpret_listing(
    endpoint: Endpoint[Any], result: TransportResult, now: float | None = None, *, requested: ReferenceRange | ItemRange
) -> ListingPage[Any] | Outcome:
    """A page of a ranged listing and the range after it, from ``Next-Range`` (reference ranges) or from
    ``Content-Range`` and the page's length (item ranges: a page shorter than asked for, or the total reached,
    is the last), or the Outcome that stopped it."""
    items = interpret(endpoint, result, now)
    if not isinstance(items, tuple):
        return items  # type: ignore[no-any-return]
    assert isinstance(result, WireResponse)
    if not items:
        return ListingPage(items)
    try:
        if isinstance(requested, ReferenceRange):
            header = result.header("Next-Range")
            return ListingPage(items, None if header is None else ReferenceRange.parse(header, header="Next-Range"))
        asked = requested.end - requested.start + 1
        end = requested.start + len(items) - 1
        header = result.header("Content-Range")
        total = None
        if header is not None:
            content = ItemContentRange.parse(header)
            end, total = content.end, None if content.total_is_lower_bound else content.total
        if len(items) < asked or (total is not None and end + 1 >= total):
            return ListingPage(items)
        return ListingPage(items, ItemRange(end + 1, end + asked))
    except ConfigurationError as e:
        return Transient(result.status, None, f"unreadable answer: {e}")


def following_range(
    endpoint: Endpoint[Any], page: ListingPage[Any], seen: Set[str], *, max_pages: int | None = None
) -> ReferenceRange | ItemRange | None:
    """The range after ``page``, given where this listing already was (``ReferenceRange.header()`` of each);
    ProtocolError, naming the endpoint, for one that points back (it would read the same pages for ever) or that
    leads past ``max_pages`` pages."""
    following = page.next_range
    if following is None:
        return None
    key = following.header()
    if key in seen:
        raise ProtocolError(
            f"{endpoint.name}: the answer points at a page this listing already read ({key!r}); stopped rather "
            "than read the same pages again."
        )
    if max_pages is not None and len(seen) >= max_pages:
        raise ProtocolError(f"{endpoint.name}: the listing goes on past {max_pages} pages; stopped there.")
    return following


# --- the calls, as the core's request loop runs them -------------------------------------------------------


def perform(engine: Engine, endpoint: Endpoint[Any], args: Mapping[str, object]) -> Loop[Any]:
    """One request for ``endpoint`` with ``args``, through ``engine``'s request loop: what a client's method for
    an endpoint of the table runs."""
    account = engine.credentials.account_id
    build = functools.partial(build_request, endpoint, account, args=args)
    return (yield from engine.call(endpoint.name, Host.API, build, functools.partial(interpret, endpoint)))


def _listing(engine: Engine, endpoint: Endpoint[Any], args: Mapping[str, object]) -> Loop[None]:
    account = engine.credentials.account_id
    page_range, seen = first_range(endpoint), set[str]()
    while page_range is not None:
        seen.add(page_range.header())
        page: ListingPage[Any] = yield from engine.call(
            endpoint.name,
            Host.API,
            functools.partial(build_request, endpoint, account, args=args, page=page_range),
            functools.partial(interpret_listing, endpoint, requested=page_range),
        )
        page_range = following_range(endpoint, page, seen)  # before the items: the cursor must be sound
        for item in page.items:
            yield Deliver(item)


def perform_listing(engine: Engine, endpoint: Endpoint[Any], args: Mapping[str, object]) -> Listing[Any]:
    """Every item of a ranged listing, a page at a time as the caller asks for the next (each a Deliver)."""
    return Listing(_listing(engine, endpoint, args))
