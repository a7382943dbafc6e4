"""The trio client: :class:`flowmailer.app.Client`'s twin for trio programs, driving the same core functions.

Imports trio, so it is not re-exported from ``flowmailer.app``: ``from flowmailer.app.async_client import
AsyncClient``. Durations, deadlines and retry waits use trio's clock (``trio.current_time``, ``trio.sleep``), so a
``trio.testing.MockClock`` controls them; wall time (token expiry) comes from ``wall_clock``.
"""

from __future__ import annotations

import functools
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import attrs
import trio

from flowmailer.app import _defaults
from flowmailer.app._api import AsyncApi
from flowmailer.app._client import DEFAULT_API_URL, DEFAULT_LOGIN_URL
from flowmailer.core import (
    FIRST_PAGE,
    MAX_TAG_PAGES,
    Accepted,
    AccessToken,
    AddressBook,
    AddressPolicy,
    Ambiguous,
    AttemptFinished,
    ConfigurationError,
    Credentials,
    CredentialsRejected,
    DateRange,
    Endpoint,
    Event,
    GiveUp,
    Host,
    ListingPage,
    Message,
    MessageEvent,
    NotSent,
    Origin,
    Outcome,
    Page,
    Reconcile,
    ReferenceRange,
    RefreshToken,
    Rejected,
    ReportBook,
    ReportPolicy,
    RequestFinished,
    Retry,
    RetryBudget,
    RetryDecision,
    RetryPolicy,
    RetryState,
    Simulation,
    SortOrder,
    Stats,
    StatsQuery,
    SubmitMessage,
    TokenInvalid,
    Transient,
    TransportResult,
    WireRequest,
    WireResponse,
    assemble_report,
    build_request,
    classify_submit,
    error_for,
    first_range,
    following_range,
    interpret,
    interpret_listing,
    interpret_one,
    interpret_page,
    interpret_stats,
    interpret_token,
    message_events_request,
    message_request,
    message_stats_request,
    message_to_json,
    next_page,
    plan_report,
    simulate_request,
    submit_request,
    tag_messages_request,
    token_request,
)
from flowmailer.core._protocol import check_max_pages
from flowmailer.ports import AsyncTokenStore, AsyncTransport, Observer, ReportStore, Resolver

__all__ = ["AsyncClient"]

_log = logging.getLogger("flowmailer")
_OUTCOMES = (Accepted, Rejected, NotSent, Transient, Ambiguous, TokenInvalid, CredentialsRejected)
T = TypeVar("T")


class AsyncClient(AsyncApi):
    """Flowmailer's REST API from trio tasks, reliably: ``await submit`` returns the message id only after a 201
    and otherwise raises the same errors as :class:`flowmailer.app.Client`.

    Every request goes through the core's retry policy, to the next healthy IP address, with one token shared by
    all tasks. Adapters left out are built by default: a ``TrioTransport`` (trust from the operating system, or
    ``ca_bundle``), a ``TrioTokenStore`` on ``wall_clock``, and the system resolver, run in a worker thread.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        api_url: str = DEFAULT_API_URL,
        login_url: str = DEFAULT_LOGIN_URL,
        policy: RetryPolicy | None = None,
        budget: RetryBudget | None = None,
        address_policy: AddressPolicy | None = None,
        report_policy: ReportPolicy | None = None,
        report_store: ReportStore | None = None,
        reference_prefix: str = "ref:",
        ca_bundle: str | None = None,
        max_connections: int = _defaults.MAX_CONNECTIONS,
        transport: AsyncTransport | None = None,
        token_store: AsyncTokenStore | None = None,
        resolver: Resolver | None = None,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        observer: Observer | None = None,
    ) -> None:
        if not reference_prefix:
            raise ConfigurationError("reference_prefix", "is empty", 'use a tag prefix such as "ref:"')
        self._origins = {
            Host.API: Origin.parse(api_url, field="api_url"),
            Host.LOGIN: Origin.parse(login_url, field="login_url"),
        }
        self._credentials = credentials
        self._policy = policy if policy is not None else RetryPolicy()
        self._budget = budget if budget is not None else RetryBudget()
        self._address_policy = address_policy if address_policy is not None else AddressPolicy()
        self._prefix = reference_prefix
        if transport is None:
            transport = _defaults.async_transport(
                ca_bundle=ca_bundle,
                max_connections=max_connections,
                max_connection_age=self._address_policy.max_connection_age,
            )
        elif ca_bundle is not None or max_connections != _defaults.MAX_CONNECTIONS:
            field = "ca_bundle" if ca_bundle is not None else "max_connections"
            raise ConfigurationError(field, "was given with a transport", f"set {field} on the transport itself")
        self._transport = transport
        self._tokens = token_store if token_store is not None else _defaults.async_token_store(wall_clock)
        self._resolver = resolver if resolver is not None else _defaults.resolver()
        self._now = wall_clock
        self._rng = rng if rng is not None else random.Random()
        self._observer = observer
        self._books: dict[Host, AddressBook] = {}
        self._resolving: dict[Host, trio.Lock] = {}
        self._report_policy = report_policy if report_policy is not None else ReportPolicy()
        self._reports: ReportStore = report_store if report_store is not None else ReportBook()
        #: One report at a time: Flowmailer's guidelines ask for no overlapping report requests.
        self._reporting = trio.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: object) -> AsyncClient:
        """Credentials and URLs from the same variables as :meth:`flowmailer.app.Client.from_env`; ``kwargs`` as
        for the constructor."""
        settings = _defaults.settings_from_env(environ)
        return cls(**{**settings, **kwargs})  # type: ignore[arg-type]

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    # --- operations ------------------------------------------------------------------------------------------

    async def submit(self, message: SubmitMessage) -> str:
        """Flowmailer's message id, after a 201; the message is tagged with a client reference first, as by
        :meth:`Client.submit`, so an :class:`AmbiguousError` can be reconciled with ``messages_by_tag``."""
        reference = message.client_reference(self._prefix)
        if reference is None:
            reference = secrets.token_hex(16)
            message = message.with_client_reference(reference, self._prefix)
        account = self._credentials.account_id
        origin = self._origins[Host.API]
        body = message_to_json(message)  # once: a retry sends the same bytes
        accepted: Accepted = await self._call(
            "submit",
            Host.API,
            lambda token: submit_request(account, token, body),
            lambda result, now: classify_submit(result, origin=origin, account_id=account, now=now),
            reference=f"{self._prefix}{reference}",
        )
        return accepted.message_id

    async def check_credentials(self) -> float:
        """When the token expires (epoch seconds): proof that the credentials work, without showing the token."""
        return (await self._token()).expires_at

    async def simulate(self, message: SubmitMessage, source_id: str) -> Simulation:
        """What the flow would make of ``message``; nothing is sent."""
        account = self._credentials.account_id
        return await self._call(
            "simulate",
            Host.API,
            lambda token: simulate_request(account, token, message, source_id),
            lambda result, now: interpret_one(result, Simulation, now=now),
        )

    async def message(self, message_id: str, *, add_events: bool = False, add_tags: bool = False) -> Message:
        account = self._credentials.account_id
        return await self._call(
            "message",
            Host.API,
            lambda token: message_request(account, token, message_id, add_events=add_events, add_tags=add_tags),
            lambda result, now: interpret_one(result, Message, now=now),
        )

    async def message_events(
        self,
        *,
        start: ReferenceRange = FIRST_PAGE,
        flow_ids: Iterable[int | str] = (),
        source_ids: Iterable[int | str] = (),
        daterange: DateRange | None = None,
        receivedrange: DateRange | None = None,
        sortorder: SortOrder | None = None,
        add_message_tags: bool = False,
    ) -> AsyncIterator[Page[MessageEvent]]:
        """Pages of events from ``start``, fetched as the caller iterates; store a page's ``next_range`` as the
        cursor to resume from later."""
        account = self._credentials.account_id
        flows, sources = tuple(flow_ids), tuple(source_ids)
        page_range: ReferenceRange | None = start
        seen = {start.reference}
        while page_range is not None:
            page = await self._call(
                "message_events",
                Host.API,
                functools.partial(
                    message_events_request,
                    account,
                    page=page_range,
                    flow_ids=flows,
                    source_ids=sources,
                    daterange=daterange,
                    receivedrange=receivedrange,
                    sortorder=sortorder,
                    add_message_tags=add_message_tags,
                ),
                lambda result, now: interpret_page(result, MessageEvent, now=now),
            )
            page_range = next_page("message_events", page, seen)  # before the page: its cursor must be sound
            yield page
            if page_range is not None:
                seen.add(page_range.reference)

    async def messages_by_tag(
        self, tag: str, *, daterange: DateRange | None = None, max_pages: int = MAX_TAG_PAGES
    ) -> AsyncIterator[Message]:
        """Every message carrying ``tag``, page by page as the caller iterates (how an ambiguous submit is found);
        a listing longer than ``max_pages`` pages raises ProtocolError rather than go on."""
        check_max_pages(max_pages)
        account = self._credentials.account_id
        page_range: ReferenceRange | None = FIRST_PAGE
        seen = {FIRST_PAGE.reference}
        while page_range is not None:
            page = await self._call(
                "messages_by_tag",
                Host.API,
                functools.partial(_tag_request, account, tag, page=page_range, daterange=daterange),
                lambda result, now: interpret_page(result, Message, now=now),
            )
            page_range = next_page("messages_by_tag", page, seen, max_pages=max_pages)
            for item in page.items:
                yield item
            if page_range is not None:
                seen.add(page_range.reference)

    async def message_stats(
        self, daterange: DateRange, *, interval: int = 86400, flow_ids: Iterable[int | str] = ()
    ) -> Stats:
        """As :meth:`flowmailer.app.Client.message_stats`: settled stretches of time are asked for once."""
        query = StatsQuery(interval, flow_ids)
        account = self._credentials.account_id
        async with self._reporting:
            # The store may block (SQLite waits for locks and syncs to disk): its calls run in a worker thread.
            store = self._reports
            stretches = await trio.to_thread.run_sync(store.stretches, query)
            start, end = query.span(daterange)
            held = await trio.to_thread.run_sync(store.held, query, start, end)  # before keeping, as Client does
            fetched = {}
            for piece in plan_report(query, daterange, self._now(), self._report_policy, stretches):
                fetched[piece] = await self._call(
                    "message_stats",
                    Host.API,
                    functools.partial(message_stats_request, account, daterange=piece.daterange, query=query),
                    functools.partial(interpret_stats, query=query, daterange=piece.daterange),
                )
                await trio.to_thread.run_sync(store.keep, query, piece, fetched[piece])  # a failure later loses nothing
            return assemble_report(query, daterange, held, fetched)

    # --- the one request loop --------------------------------------------------------------------------------

    # --- every other endpoint (flowmailer.app._api): one request, or a ranged listing -------------------------

    async def _perform(self, endpoint: Endpoint[Any], args: Mapping[str, object]) -> Any:
        account = self._credentials.account_id
        return await self._call(
            endpoint.name,
            Host.API,
            functools.partial(build_request, endpoint, account, args=args),
            functools.partial(interpret, endpoint),
        )

    async def _pages(self, endpoint: Endpoint[Any], args: Mapping[str, object]) -> AsyncIterator[Any]:
        account = self._credentials.account_id
        page_range, seen = first_range(endpoint), set[str]()
        while page_range is not None:
            seen.add(page_range.header())
            page: ListingPage[Any] = await self._call(
                endpoint.name,
                Host.API,
                functools.partial(build_request, endpoint, account, args=args, page=page_range),
                functools.partial(interpret_listing, endpoint, requested=page_range),
            )
            page_range = following_range(endpoint, page, seen)
            for item in page.items:
                yield item

    async def _call(
        self,
        operation: str,
        host: Host,
        build: Callable[[AccessToken], WireRequest] | WireRequest,
        interpret: Callable[[TransportResult, float], T | Outcome],
        *,
        reference: str | None = None,
    ) -> T:
        """Attempts until the core's retry policy is done; the answer, or the error its last decision calls for."""
        started = trio.current_time()
        state = RetryState()
        avoid: str | None = None
        while True:
            token = None
            if isinstance(build, WireRequest):
                request = build
            else:
                token = await self._token()
                request = build(token)
            # The retry deadline bounds this attempt too, not only the wait before the next one.
            request = attrs.evolve(request, timeout=self._policy.attempt_timeout(trio.current_time() - started))
            address, result, duration = await self._send(host, request, avoid)
            got = interpret(result, self._now())
            attempt = state.attempts + 1
            if isinstance(got, Accepted) or not isinstance(got, _OUTCOMES):
                self._succeeded(operation, address, result, got, duration, attempt)
                return got  # type: ignore[return-value]  # Accepted is the T of submit
            outcome: Outcome = got
            self._emit(AttemptFinished(operation, address, outcome, duration, attempt))
            _log.debug("%s attempt %d to %s: %s (%.3f s)", operation, attempt, address, outcome, duration)
            book = self._books.get(host)
            decision: RetryDecision
            decision, state = self._policy.decide(
                outcome,
                state,
                elapsed=trio.current_time() - started,
                u=self._rng.random(),
                addresses=len(book) if book is not None else 1,
                idempotent=request.idempotent,
            )
            decision, self._budget = self._budget.admit(decision, trio.current_time())
            if isinstance(outcome, TokenInvalid) and token is not None:
                self._tokens.invalidate(self._credentials, token)  # refused: never sent again, whatever follows
            if isinstance(decision, Retry):
                _log.debug("%s: retrying in %.3f s, avoiding %s", operation, decision.delay, address)
                await trio.sleep(decision.delay)
                avoid = address
            elif not isinstance(decision, RefreshToken):
                assert isinstance(decision, Reconcile | GiveUp)
                raise error_for(
                    decision,
                    operation=operation,
                    host=host,
                    hostname=self._origins[host].host,
                    attempts=state.attempts,
                    client_id=self._credentials.client_id,
                    reference=reference,
                )

    def _succeeded(
        self, operation: str, address: str, result: TransportResult, got: object, duration: float, attempt: int
    ) -> None:
        if self._budget.tokens < self._budget.capacity:
            self._budget = self._budget.deposit(trio.current_time())
        if isinstance(got, Accepted):
            self._emit(AttemptFinished(operation, address, got, duration, attempt))
        else:
            status = result.status if isinstance(result, WireResponse) else 0
            self._emit(RequestFinished(operation, address, status, duration, attempt))

    def _token(self) -> Awaitable[AccessToken]:
        return self._tokens.token(self._credentials, self._fetch_token)

    async def _fetch_token(self) -> AccessToken:
        return await self._call("token", Host.LOGIN, token_request(self._credentials), interpret_token)

    def _emit(self, event: Event) -> None:
        """Tell the observer; a failing observer is logged, never raised: an accepted submit must return its id."""
        if self._observer is None:
            return
        try:
            self._observer.on_event(event)
        except Exception:  # noqa: BLE001 - a metrics backend going down must not turn an accepted submit into an error
            _log.exception("the observer failed on %s; the request goes on", type(event).__name__)

    # --- addresses -------------------------------------------------------------------------------------------

    async def _send(self, host: Host, request: WireRequest, avoid: str | None) -> tuple[str, TransportResult, float]:
        origin = self._origins[host]
        book = await self._book(host)
        if isinstance(book, NotSent):
            return origin.host, book, 0.0
        now = trio.current_time()
        address, self._books[host] = self._books[host].pick(now, avoid)
        result = await self._transport.send(request, origin, address)
        done = trio.current_time()
        self._books[host] = self._books[host].record(address, result, done)
        return address, result, done - now

    async def _book(self, host: Host) -> AddressBook | NotSent:
        """The host's address book, resolved again when its TTL ran out, by one task while the others use the old."""
        book = self._books.get(host)
        if book is not None and not book.needs_resolve(trio.current_time()):
            return book
        resolving = self._resolving.setdefault(host, trio.Lock())
        if book is not None and resolving.locked():
            return book
        async with resolving:
            book = self._books.get(host)
            if book is not None and not book.needs_resolve(trio.current_time()):
                return book
            origin = self._origins[host]
            # The resolver port is blocking (getaddrinfo): it must not stall the other tasks.
            resolution = await trio.to_thread.run_sync(self._resolver.resolve, origin.host, origin.port)
            now = trio.current_time()
            book = self._books.get(host)
            if isinstance(resolution, NotSent):
                if book is None:
                    return resolution
                self._books[host] = book.resolve_failed(now)
            elif book is None:
                self._books[host] = AddressBook.from_resolution(resolution, now, self._address_policy)
            else:
                self._books[host] = book.updated(resolution, now)
            return self._books[host]


def _tag_request(
    account: str, tag: str, token: AccessToken, *, page: ReferenceRange, daterange: DateRange | None
) -> WireRequest:
    return tag_messages_request(account, token, tag, page=page, daterange=daterange)
