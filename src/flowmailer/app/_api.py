"""Every method of both clients, written once: the engine's own operations (``submit``, ``message_events``, ...,
each ``engine_operation(Engine.<name>)``) and every endpoint of Flowmailer's API.

Each endpoint method is one line: it names its row of the core's table (``flowmailer.core.ENDPOINTS``) and passes
its arguments. The ``operation`` and ``listing`` descriptors give it its type per client: on :class:`Client` a
method returns its result (a listing an ``Iterator``), on ``AsyncClient`` an awaitable (a listing an
``AsyncIterator``). Each method runs the core's :func:`~flowmailer.core.perform` (or ``perform_listing``) through
the shell's ``_bind`` (``_bind_listing``), as the engine's own operations do.
"""

from __future__ import annotations

import functools
import types
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, cast, overload

from flowmailer.core import (
    Account,
    AccountUser,
    ApiCredential,
    ArchivedAttachment,
    BouncedMessage,
    DateRange,
    Endpoint,
    Engine,
    EventFlow,
    EventFlowRuleSimple,
    Filter,
    Flow,
    FlowRuleHierarchyItem,
    FlowRuleItem,
    FlowRuleSimple,
    FlowTemplate,
    Listing,
    Loop,
    Message,
    MessageArchive,
    MessageHold,
    Recipient,
    ResendMessage,
    Role,
    SenderDomain,
    SortField,
    SortOrder,
    Source,
    Stats,
    Template,
    endpoint,
    perform,
    perform_listing,
)

__all__ = ["Api", "AsyncApi", "SyncApi", "engine_listing", "engine_operation", "listing", "operation"]

P = ParamSpec("P")
T = TypeVar("T")
X = TypeVar("X")


class operation(Generic[P, T]):  # noqa: N801 - used as a decorator, named like one
    """A method that is one request: ``T`` on the sync client, an awaitable of ``T`` on the async one."""

    def __init__(self, method: Callable[Concatenate[Any, P], T]) -> None:
        self._method = method
        _wraps(self, method)

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: AsyncApi, owner: type[Any]) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __get__(self, obj: SyncApi, owner: type[Any]) -> Callable[P, T]: ...
    def __get__(self, obj: Api | None, owner: type[Any]) -> Any:
        return self if obj is None else types.MethodType(self._method, obj)


class listing(Generic[P, T]):  # noqa: N801 - used as a decorator, named like one
    """A ranged listing: an iterator of ``T`` on the sync client, an async iterator on the async one."""

    def __init__(self, method: Callable[Concatenate[Any, P], Iterator[T]]) -> None:
        self._method = method
        _wraps(self, method)

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: AsyncApi, owner: type[Any]) -> Callable[P, AsyncIterator[T]]: ...
    @overload
    def __get__(self, obj: SyncApi, owner: type[Any]) -> Callable[P, Iterator[T]]: ...
    def __get__(self, obj: Api | None, owner: type[Any]) -> Any:
        return self if obj is None else types.MethodType(self._method, obj)


def engine_operation(start: Callable[Concatenate[Engine, P], Loop[T]], *, exclusive: bool = False) -> operation[P, T]:
    """An ``Engine`` call (``submit``, ``message_stats``, ...) as a method of both clients; ``exclusive`` calls run
    one at a time per client (reports: Flowmailer asks for no overlapping ones)."""

    def method(self: Api, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return cast("T", self._bind(start, exclusive)(*args, **kwargs))

    functools.update_wrapper(method, start)
    return operation(method)


def engine_listing(start: Callable[Concatenate[Engine, P], Listing[X]]) -> listing[P, X]:
    """An ``Engine`` listing (``message_events``, ``messages_by_tag``) as a method of both clients."""

    def method(self: Api, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[X]:
        return cast("Iterator[X]", self._bind_listing(start)(*args, **kwargs))

    functools.update_wrapper(method, start)
    return listing(method)


def _wraps(descriptor: object, method: Callable[..., Any]) -> None:
    """The method's name and docstring on its descriptor, for help() and the API reference."""
    for name in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(descriptor, name, getattr(method, name))
    descriptor.__wrapped__ = method  # type: ignore[attr-defined]


class Api:
    """The methods both clients share; a client subclasses :class:`SyncApi` or :class:`AsyncApi`."""

    def _bind(self, start: Callable[..., Loop[Any]], exclusive: bool) -> Callable[..., Any]:
        """The shell's: ``start(engine)`` run to its end (on the async client, a coroutine function)."""
        raise NotImplementedError

    def _bind_listing(self, start: Callable[..., Listing[Any]]) -> Callable[..., Any]:
        """The shell's: the items ``start(engine)`` delivers, as an iterator (or an async iterator)."""
        raise NotImplementedError

    def _endpoint_call(self, endpoint: Endpoint[Any], args: Mapping[str, object]) -> Any:
        return self._bind(functools.partial(perform, endpoint=endpoint, args=args), False)()

    def _endpoint_pages(self, endpoint: Endpoint[Any], args: Mapping[str, object]) -> Any:
        return self._bind_listing(functools.partial(perform_listing, endpoint=endpoint, args=args))()

    def _do(self, name: str, _: type[T], args: Mapping[str, object]) -> T:
        # On the async client this is an awaitable of T: the descriptors below type it for the caller.
        return cast("T", self._endpoint_call(endpoint(name), args))

    def _each(self, name: str, _: type[T], args: Mapping[str, object]) -> Iterator[T]:
        return cast("Iterator[T]", self._endpoint_pages(endpoint(name), args))

    # --- the engine's own operations, with their own reliability rules (core/_loop.py) ----------------------

    submit = engine_operation(Engine.submit)
    check_credentials = engine_operation(Engine.check_credentials)
    simulate = engine_operation(Engine.simulate)
    message = engine_operation(Engine.message)
    message_stats = engine_operation(Engine.message_stats, exclusive=True)
    message_events = engine_listing(Engine.message_events)
    messages_by_tag = engine_listing(Engine.messages_by_tag)

    # The endpoint methods are in the table's order (flowmailer-endpoints.md).

    # --- accounts and credentials ----------------------------------------------------------------------------

    @operation
    def create_account(self, body: Account) -> str:
        """Create an account (for resellers); the new account's id."""
        return self._do("create_account", str, {"body": body})

    @operation
    def api_credentials(self, *, source_id: str | None = None) -> tuple[ApiCredential, ...]:
        """The account's API credentials, or those of one source."""
        return self._do("api_credentials", tuple, {"source_id": source_id})

    @operation
    def create_api_credential(self, body: ApiCredential) -> str:
        """Create an API credential; its id. Not resent after a lost answer: see AmbiguousError."""
        return self._do("create_api_credential", str, {"body": body})

    @operation
    def delete_api_credential(self, api_credential_id: str) -> None:
        return self._do("delete_api_credential", type(None), {"api_credential_id": api_credential_id})

    @operation
    def api_credential(self, api_credential_id: str) -> ApiCredential:
        return self._do("api_credential", ApiCredential, {"api_credential_id": api_credential_id})

    @operation
    def update_api_credential(self, api_credential_id: str, body: ApiCredential) -> ApiCredential:
        return self._do("update_api_credential", ApiCredential, {"api_credential_id": api_credential_id, "body": body})

    # --- event flows -----------------------------------------------------------------------------------------

    @operation
    def event_flow_rules(self) -> tuple[EventFlowRuleSimple, ...]:
        return self._do("event_flow_rules", tuple, {})

    @operation
    def event_flow_rules_hierarchy(self) -> tuple[FlowRuleHierarchyItem, ...]:
        return self._do("event_flow_rules_hierarchy", tuple, {})

    @operation
    def event_flows(self) -> tuple[EventFlow, ...]:
        return self._do("event_flows", tuple, {})

    @operation
    def create_event_flow(self, body: EventFlow) -> str:
        return self._do("create_event_flow", str, {"body": body})

    @operation
    def delete_event_flow(self, event_flow_id: str) -> None:
        return self._do("delete_event_flow", type(None), {"event_flow_id": event_flow_id})

    @operation
    def event_flow(self, event_flow_id: str) -> EventFlow:
        return self._do("event_flow", EventFlow, {"event_flow_id": event_flow_id})

    @operation
    def update_event_flow(self, event_flow_id: str, body: EventFlow) -> EventFlow:
        return self._do("update_event_flow", EventFlow, {"event_flow_id": event_flow_id, "body": body})

    @operation
    def event_flow_rule(self, event_flow_id: str) -> EventFlowRuleSimple:
        return self._do("event_flow_rule", EventFlowRuleSimple, {"event_flow_id": event_flow_id})

    @operation
    def update_event_flow_rule(self, event_flow_id: str, body: EventFlowRuleSimple) -> None:
        return self._do("update_event_flow_rule", type(None), {"event_flow_id": event_flow_id, "body": body})

    # --- filters ---------------------------------------------------------------------------------------------

    @listing
    def filters(self, *, daterange: DateRange | None = None, sortorder: SortOrder | None = None) -> Iterator[Filter]:
        """Recipients Flowmailer no longer sends to (bounces, complaints), every page as the caller iterates."""
        return self._each("filters", Filter, {"daterange": daterange, "sortorder": sortorder})

    @operation
    def delete_filter(self, filter_id: str) -> None:
        """Send to the filtered recipient again."""
        return self._do("delete_filter", type(None), {"filter_id": filter_id})

    # --- flows -----------------------------------------------------------------------------------------------

    @operation
    def flow_rules(self) -> tuple[FlowRuleItem, ...]:
        return self._do("flow_rules", tuple, {})

    @operation
    def flow_templates(self) -> tuple[FlowTemplate, ...]:
        return self._do("flow_templates", tuple, {})

    @operation
    def flows(self, *, statistics: bool = False) -> tuple[Flow, ...]:
        return self._do("flows", tuple, {"statistics": statistics})

    @operation
    def create_flow(self, body: Flow) -> str:
        return self._do("create_flow", str, {"body": body})

    @operation
    def delete_flow(self, flow_id: str) -> None:
        return self._do("delete_flow", type(None), {"flow_id": flow_id})

    @operation
    def flow(self, flow_id: str) -> Flow:
        return self._do("flow", Flow, {"flow_id": flow_id})

    @operation
    def update_flow(self, flow_id: str, body: Flow) -> Flow:
        return self._do("update_flow", Flow, {"flow_id": flow_id, "body": body})

    @listing
    def flow_messages(
        self,
        flow_id: str,
        *,
        daterange: DateRange | None = None,
        add_headers: bool = False,
        add_online_link: bool = False,
        add_tags: bool = False,
    ) -> Iterator[Message]:
        """The flow's messages, every page (by position) as the caller iterates."""
        args = {"flow_id": flow_id, "daterange": daterange}
        return self._each("flow_messages", Message, args | _flags(add_headers, add_online_link, add_tags))

    @operation
    def flow_rule(self, flow_id: str) -> FlowRuleSimple:
        return self._do("flow_rule", FlowRuleSimple, {"flow_id": flow_id})

    @operation
    def update_flow_rule(self, flow_id: str, body: FlowRuleSimple) -> None:
        return self._do("update_flow_rule", type(None), {"flow_id": flow_id, "body": body})

    @operation
    def flow_stats(self, flow_id: str, daterange: DateRange, *, interval: int | None = None) -> Stats:
        return self._do("flow_stats", Stats, {"flow_id": flow_id, "daterange": daterange, "interval": interval})

    # --- messages --------------------------------------------------------------------------------------------

    @listing
    def message_holds(self, *, daterange: DateRange | None = None) -> Iterator[MessageHold]:
        """Messages Flowmailer holds back, every page (by position) as the caller iterates."""
        return self._each("message_holds", MessageHold, {"daterange": daterange})

    @operation
    def message_hold(self, message_id: str) -> MessageHold:
        return self._do("message_hold", MessageHold, {"message_id": message_id})

    @listing
    def messages(
        self,
        *,
        flow_ids: Iterable[int | str] | None = None,
        daterange: DateRange | None = None,
        sortfield: SortField | None = None,
        sortorder: SortOrder | None = None,
        add_events: bool = False,
        add_headers: bool = False,
        add_online_link: bool = False,
        add_tags: bool = False,
    ) -> Iterator[Message]:
        """Messages, every page as the caller iterates; ``SortField.INSERTED`` with ``SortOrder.ASC`` keeps a local
        copy complete, as Flowmailer advises."""
        args = {"flow_ids": flow_ids, "daterange": daterange, "sortfield": sortfield, "sortorder": sortorder}
        return self._each("messages", Message, args | _flags(add_headers, add_online_link, add_tags, add_events))

    @operation
    def message_archive(
        self, message_id: str, *, add_attachments: bool = False, add_data: bool = False
    ) -> tuple[MessageArchive, ...]:
        """The message as each flow step archived it."""
        args = {"message_id": message_id, "add_attachments": add_attachments, "add_data": add_data}
        return self._do("message_archive", tuple, args)

    @operation
    def message_archive_attachment(self, message_id: str, flow_step_id: str, content_id: str) -> ArchivedAttachment:
        args = {"message_id": message_id, "flow_step_id": flow_step_id, "content_id": content_id}
        return self._do("message_archive_attachment", ArchivedAttachment, args)

    @operation
    def message_error_archive(
        self, message_id: str, *, add_attachments: bool = False, add_data: bool = False
    ) -> MessageArchive:
        """The message as it was when processing it failed."""
        args = {"message_id": message_id, "add_attachments": add_attachments, "add_data": add_data}
        return self._do("message_error_archive", MessageArchive, args)

    @operation
    def resend_message(self, message_id: str, *, recipient_address: str | None = None) -> None:
        """Send the message again, to ``recipient_address`` or its own recipient. Not resent after a lost answer:
        an AmbiguousError means it may have been."""
        body = ResendMessage(recipient_address=recipient_address)
        return self._do("resend_message", type(None), {"message_id": message_id, "body": body})

    @operation
    def recipient(self, recipient: str, *, daterange: DateRange | None = None) -> Recipient:
        """A recipient address: its filters and message counts."""
        return self._do("recipient", Recipient, {"recipient": recipient, "daterange": daterange})

    @listing
    def recipient_messages(
        self,
        recipient: str,
        *,
        daterange: DateRange | None = None,
        sortorder: SortOrder | None = None,
        add_headers: bool = False,
        add_online_link: bool = False,
        add_tags: bool = False,
    ) -> Iterator[Message]:
        args = {"recipient": recipient, "daterange": daterange, "sortorder": sortorder}
        return self._each("recipient_messages", Message, args | _flags(add_headers, add_online_link, add_tags))

    @operation
    def roles(self) -> tuple[Role, ...]:
        return self._do("roles", tuple, {})

    @listing
    def sender_messages(
        self,
        sender: str,
        *,
        daterange: DateRange | None = None,
        sortorder: SortOrder | None = None,
        add_headers: bool = False,
        add_online_link: bool = False,
        add_tags: bool = False,
    ) -> Iterator[Message]:
        args = {"sender": sender, "daterange": daterange, "sortorder": sortorder}
        return self._each("sender_messages", Message, args | _flags(add_headers, add_online_link, add_tags))

    @listing
    def undelivered_messages(
        self,
        *,
        daterange: DateRange | None = None,
        receivedrange: DateRange | None = None,
        sortorder: SortOrder | None = None,
        add_events: bool = False,
        add_headers: bool = False,
        add_online_link: bool = False,
        add_tags: bool = False,
    ) -> Iterator[BouncedMessage]:
        """Messages that were not delivered, with their bounces, every page as the caller iterates."""
        args = {"daterange": daterange, "receivedrange": receivedrange, "sortorder": sortorder}
        flags = _flags(add_headers, add_online_link, add_tags, add_events)
        return self._each("undelivered_messages", BouncedMessage, args | flags)

    # --- sender domains --------------------------------------------------------------------------------------

    @operation
    def sender_domains(self) -> tuple[SenderDomain, ...]:
        return self._do("sender_domains", tuple, {})

    @operation
    def create_sender_domain(self, body: SenderDomain) -> str:
        return self._do("create_sender_domain", str, {"body": body})

    @operation
    def sender_domain_by_domain(self, domain: str, *, validate: bool = False) -> SenderDomain:
        """The sender domain named ``domain``; with ``validate``, its DNS records checked now."""
        return self._do("sender_domain_by_domain", SenderDomain, {"domain": domain, "validate": validate})

    @operation
    def validate_sender_domain(self, body: SenderDomain) -> SenderDomain:
        """The DNS records ``body``'s domain needs, and whether each is in place; nothing is stored."""
        return self._do("validate_sender_domain", SenderDomain, {"body": body})

    @operation
    def delete_sender_domain(self, sender_domain_id: str) -> None:
        return self._do("delete_sender_domain", type(None), {"sender_domain_id": sender_domain_id})

    @operation
    def sender_domain(self, sender_domain_id: str, *, validate: bool = False) -> SenderDomain:
        return self._do("sender_domain", SenderDomain, {"sender_domain_id": sender_domain_id, "validate": validate})

    @operation
    def update_sender_domain(self, sender_domain_id: str, body: SenderDomain) -> SenderDomain:
        return self._do("update_sender_domain", SenderDomain, {"sender_domain_id": sender_domain_id, "body": body})

    # --- sources ---------------------------------------------------------------------------------------------

    @operation
    def sources(self, *, statistics: bool = False) -> tuple[Source, ...]:
        return self._do("sources", tuple, {"statistics": statistics})

    @operation
    def create_source(self, body: Source) -> str:
        return self._do("create_source", str, {"body": body})

    @operation
    def delete_source(self, source_id: str) -> None:
        return self._do("delete_source", type(None), {"source_id": source_id})

    @operation
    def source(self, source_id: str) -> Source:
        return self._do("source", Source, {"source_id": source_id})

    @operation
    def update_source(self, source_id: str, body: Source) -> Source:
        return self._do("update_source", Source, {"source_id": source_id, "body": body})

    @listing
    def source_messages(
        self,
        source_id: str,
        *,
        daterange: DateRange | None = None,
        add_headers: bool = False,
        add_online_link: bool = False,
        add_tags: bool = False,
    ) -> Iterator[Message]:
        """The source's messages, every page (by position) as the caller iterates."""
        args = {"source_id": source_id, "daterange": daterange}
        return self._each("source_messages", Message, args | _flags(add_headers, add_online_link, add_tags))

    @operation
    def source_stats(self, source_id: str, daterange: DateRange, *, interval: int | None = None) -> Stats:
        return self._do("source_stats", Stats, {"source_id": source_id, "daterange": daterange, "interval": interval})

    @operation
    def source_users(self, source_id: str) -> tuple[ApiCredential, ...]:
        """The source's SMTP users."""
        return self._do("source_users", tuple, {"source_id": source_id})

    @operation
    def create_source_user(self, source_id: str, body: ApiCredential) -> str:
        return self._do("create_source_user", str, {"source_id": source_id, "body": body})

    @operation
    def delete_source_user(self, source_id: str, user_id: str) -> None:
        return self._do("delete_source_user", type(None), {"source_id": source_id, "user_id": user_id})

    @operation
    def source_user(self, source_id: str, user_id: str) -> ApiCredential:
        return self._do("source_user", ApiCredential, {"source_id": source_id, "user_id": user_id})

    @operation
    def update_source_user(self, source_id: str, user_id: str, body: ApiCredential) -> ApiCredential:
        args = {"source_id": source_id, "user_id": user_id, "body": body}
        return self._do("update_source_user", ApiCredential, args)

    # --- templates and users ---------------------------------------------------------------------------------

    @operation
    def templates(self) -> tuple[Template, ...]:
        return self._do("templates", tuple, {})

    @operation
    def create_template(self, body: Template) -> str:
        return self._do("create_template", str, {"body": body})

    @operation
    def delete_template(self, template_id: str) -> None:
        return self._do("delete_template", type(None), {"template_id": template_id})

    @operation
    def template(self, template_id: str) -> Template:
        return self._do("template", Template, {"template_id": template_id})

    @operation
    def update_template(self, template_id: str, body: Template) -> Template:
        return self._do("update_template", Template, {"template_id": template_id, "body": body})

    @operation
    def users(self) -> tuple[AccountUser, ...]:
        return self._do("users", tuple, {})

    @operation
    def add_user(self, body: AccountUser) -> str:
        return self._do("add_user", str, {"body": body})


def _flags(
    add_headers: bool, add_online_link: bool, add_tags: bool, add_events: bool | None = None
) -> dict[str, object]:
    flags: dict[str, object] = {"add_headers": add_headers, "add_online_link": add_online_link, "add_tags": add_tags}
    return flags if add_events is None else flags | {"add_events": add_events}


class SyncApi(Api):
    """The base of :class:`flowmailer.app.Client`: each method returns its answer."""


class AsyncApi(Api):
    """The base of ``AsyncClient``: each method returns an awaitable, each listing an async iterator."""
