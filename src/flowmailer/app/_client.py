"""The synchronous client: an application calls it directly, from as many threads as it likes."""

from __future__ import annotations

import functools
import logging
import random
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

import attrs

from flowmailer.app import _defaults
from flowmailer.app._api import SyncApi
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
from flowmailer.ports import Clock, Observer, ReportStore, Resolver, TokenStore, Transport

__all__ = ["DEFAULT_API_URL", "DEFAULT_LOGIN_URL", "Client"]

DEFAULT_API_URL = "https://api.flowmailer.net"
DEFAULT_LOGIN_URL = "https://login.flowmailer.net"

_log = logging.getLogger("flowmailer")
_OUTCOMES = (Accepted, Rejected, NotSent, Transient, Ambiguous, TokenInvalid, CredentialsRejected)
T = TypeVar("T")


class Client(SyncApi):
    """Flowmailer's REST API, reliably: ``submit`` returns the message id only after a 201 and otherwise raises an
    error that says what happened and whether the message may have been accepted.

    Every request goes through the core's retry policy, to the next healthy IP address of the host, with a token
    shared by all threads. Adapters left out are built by default: urllib3 over the system resolver, trust from
    the operating system (or ``ca_bundle``), an in-memory token store, the real clock.
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
        transport: Transport | None = None,
        resolver: Resolver | None = None,
        token_store: TokenStore | None = None,
        clock: Clock | None = None,
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
        self._clock = clock if clock is not None else _defaults.clock()
        if transport is None:
            transport = _defaults.transport(
                ca_bundle=ca_bundle,
                max_connections=max_connections,
                max_connection_age=self._address_policy.max_connection_age,
                clock=self._clock,
            )
        elif ca_bundle is not None or max_connections != _defaults.MAX_CONNECTIONS:
            field = "ca_bundle" if ca_bundle is not None else "max_connections"
            raise ConfigurationError(field, "was given with a transport", f"set {field} on the transport itself")
        self._transport = transport
        self._resolver = resolver if resolver is not None else _defaults.resolver()
        self._tokens = token_store if token_store is not None else _defaults.token_store(self._clock)
        self._rng = rng if rng is not None else random.Random()
        self._observer = observer
        self._lock = threading.Lock()
        self._books: dict[Host, AddressBook] = {}
        self._resolving = {host: threading.Lock() for host in Host}
        self._report_policy = report_policy if report_policy is not None else ReportPolicy()
        self._reports: ReportStore = report_store if report_store is not None else ReportBook()
        #: One report at a time: Flowmailer's guidelines ask for no overlapping report requests.
        self._reporting = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: object) -> Client:
        """Credentials from FLOWMAILER_ACCOUNT_ID, FLOWMAILER_CLIENT_ID and FLOWMAILER_CLIENT_SECRET; optional
        FLOWMAILER_API_URL, FLOWMAILER_LOGIN_URL and FLOWMAILER_CA_BUNDLE; ``kwargs`` as for the constructor."""
        settings = _defaults.settings_from_env(environ)
        return cls(**{**settings, **kwargs})  # type: ignore[arg-type]

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    # --- operations ------------------------------------------------------------------------------------------

    def submit(self, message: SubmitMessage) -> str:
        """Flowmailer's message id, after a 201. The message is tagged with a client reference first (unless it
        has one), so an :class:`AmbiguousError` can be reconciled with ``messages_by_tag(e.client_reference)``."""
        reference = message.client_reference(self._prefix)
        if reference is None:
            reference = secrets.token_hex(16)
            message = message.with_client_reference(reference, self._prefix)
        account = self._credentials.account_id
        origin = self._origins[Host.API]
        body = message_to_json(message)  # once: a retry sends the same bytes
        accepted: Accepted = self._call(
            "submit",
            Host.API,
            lambda token: submit_request(account, token, body),
            lambda result, now: classify_submit(result, origin=origin, account_id=account, now=now),
            reference=f"{self._prefix}{reference}",
        )
        return accepted.message_id

    def check_credentials(self) -> float:
        """When the token expires (epoch seconds): proof that the credentials work, for a health check, without
        showing the token. An :class:`AuthenticationError` means Flowmailer refused them."""
        return self._token().expires_at

    def simulate(self, message: SubmitMessage, source_id: str) -> Simulation:
        """What the flow would make of ``message``; nothing is sent."""
        account = self._credentials.account_id
        return self._call(
            "simulate",
            Host.API,
            lambda token: simulate_request(account, token, message, source_id),
            lambda result, now: interpret_one(result, Simulation, now=now),
        )

    def message(self, message_id: str, *, add_events: bool = False, add_tags: bool = False) -> Message:
        account = self._credentials.account_id
        return self._call(
            "message",
            Host.API,
            lambda token: message_request(account, token, message_id, add_events=add_events, add_tags=add_tags),
            lambda result, now: interpret_one(result, Message, now=now),
        )

    def message_events(
        self,
        *,
        start: ReferenceRange = FIRST_PAGE,
        flow_ids: Iterable[int | str] = (),
        source_ids: Iterable[int | str] = (),
        daterange: DateRange | None = None,
        receivedrange: DateRange | None = None,
        sortorder: SortOrder | None = None,
        add_message_tags: bool = False,
    ) -> Iterator[Page[MessageEvent]]:
        """Pages of events from ``start``, fetched as the caller iterates; store a page's ``next_range`` as the
        cursor to resume from later."""
        account = self._credentials.account_id
        flows, sources = tuple(flow_ids), tuple(source_ids)
        page_range: ReferenceRange | None = start
        seen = {start.reference}
        while page_range is not None:
            current = page_range
            page = self._call(
                "message_events",
                Host.API,
                functools.partial(
                    message_events_request,
                    account,
                    page=current,
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

    def messages_by_tag(
        self, tag: str, *, daterange: DateRange | None = None, max_pages: int = MAX_TAG_PAGES
    ) -> Iterator[Message]:
        """Every message carrying ``tag``, page by page as the caller iterates (how an ambiguous submit is found);
        a listing longer than ``max_pages`` pages raises ProtocolError rather than go on."""
        check_max_pages(max_pages)
        account = self._credentials.account_id
        page_range: ReferenceRange | None = FIRST_PAGE
        seen = {FIRST_PAGE.reference}
        while page_range is not None:
            current = page_range
            page = self._call(
                "messages_by_tag",
                Host.API,
                functools.partial(_tag_request, account, tag, page=current, daterange=daterange),
                lambda result, now: interpret_page(result, Message, now=now),
            )
            page_range = next_page("messages_by_tag", page, seen, max_pages=max_pages)
            yield from page.items
            if page_range is not None:
                seen.add(page_range.reference)

    def message_stats(
        self, daterange: DateRange, *, interval: int = 86400, flow_ids: Iterable[int | str] = ()
    ) -> Stats:
        """Message counts per ``interval`` seconds over ``daterange``, which starts and ends on interval boundaries.

        Stretches of time settled longer than ``ReportPolicy.settle`` ago (a week by default) are asked for once
        and kept in the report store (memory by default, ``SQLiteReportStore`` across processes); only the rest is
        asked for again. One report request runs at a time: a second caller waits and gets what the first kept.
        """
        query = StatsQuery(interval, flow_ids)
        account = self._credentials.account_id
        with self._reporting:
            store = self._reports
            stretches = store.stretches(query)
            start, end = query.span(daterange)
            held = store.held(query, start, end)  # before keeping: a store that must shrink may drop some of it
            fetched = {}
            for piece in plan_report(query, daterange, self._clock.now(), self._report_policy, stretches):
                fetched[piece] = self._call(
                    "message_stats",
                    Host.API,
                    functools.partial(message_stats_request, account, daterange=piece.daterange, query=query),
                    functools.partial(interpret_stats, query=query, daterange=piece.daterange),
                )
                store.keep(query, piece, fetched[piece])  # kept as it comes: a failure later loses nothing
            return assemble_report(query, daterange, held, fetched)

    # --- every other endpoint (flowmailer.app._api): one request, or a ranged listing -------------------------

    def _perform(self, endpoint: Endpoint[Any], args: Mapping[str, object]) -> Any:
        account = self._credentials.account_id
        return self._call(
            endpoint.name,
            Host.API,
            lambda token: build_request(endpoint, account, token, args),
            lambda result, now: interpret(endpoint, result, now),
        )

    def _pages(self, endpoint: Endpoint[Any], args: Mapping[str, object]) -> Iterator[Any]:
        account = self._credentials.account_id
        page_range, seen = first_range(endpoint), set[str]()
        while page_range is not None:
            current = page_range
            seen.add(current.header())
            page: ListingPage[Any] = self._call(
                endpoint.name,
                Host.API,
                functools.partial(build_request, endpoint, account, args=args, page=current),
                functools.partial(interpret_listing, endpoint, requested=current),
            )
            page_range = following_range(endpoint, page, seen)
            yield from page.items

    # --- the one request loop --------------------------------------------------------------------------------

    def _call(
        self,
        operation: str,
        host: Host,
        build: Callable[[AccessToken], WireRequest] | WireRequest,
        interpret: Callable[[TransportResult, float], T | Outcome],
        *,
        reference: str | None = None,
    ) -> T:
        """Attempts until the core's retry policy is done; the answer, or the error its last decision calls for."""
        started = self._clock.monotonic()
        state = RetryState()
        avoid: str | None = None
        while True:
            token = None
            if isinstance(build, WireRequest):
                request = build
            else:
                token = self._token()
                request = build(token)
            # The retry deadline bounds this attempt too, not only the wait before the next one.
            request = attrs.evolve(request, timeout=self._policy.attempt_timeout(self._clock.monotonic() - started))
            address, result, duration = self._send(host, request, avoid)
            got = interpret(result, self._clock.now())
            attempt = state.attempts + 1
            if isinstance(got, Accepted) or not isinstance(got, _OUTCOMES):
                self._succeeded(operation, address, result, got, duration, attempt)
                return got  # type: ignore[return-value]  # Accepted is the T of submit
            outcome: Outcome = got
            self._emit(AttemptFinished(operation, address, outcome, duration, attempt))
            _log.debug("%s attempt %d to %s: %s (%.3f s)", operation, attempt, address, outcome, duration)
            book = self._books.get(host)
            decision, state = self._policy.decide(
                outcome,
                state,
                elapsed=self._clock.monotonic() - started,
                u=self._rng.random(),
                addresses=len(book) if book is not None else 1,
                idempotent=request.idempotent,
            )
            with self._lock:
                decision, self._budget = self._budget.admit(decision, self._clock.monotonic())
            if isinstance(outcome, TokenInvalid) and token is not None:
                self._tokens.invalidate(self._credentials, token)  # refused: never sent again, whatever follows
            if isinstance(decision, Retry):
                _log.debug("%s: retrying in %.3f s, avoiding %s", operation, decision.delay, address)
                self._clock.sleep(decision.delay)
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
        if self._budget.tokens < self._budget.capacity:  # a full bucket stays full: skip the lock and the copy
            with self._lock:
                self._budget = self._budget.deposit(self._clock.monotonic())
        if isinstance(got, Accepted):
            self._emit(AttemptFinished(operation, address, got, duration, attempt))
        else:
            status = result.status if isinstance(result, WireResponse) else 0
            self._emit(RequestFinished(operation, address, status, duration, attempt))
        _log.debug("%s attempt %d to %s: answered (%.3f s)", operation, attempt, address, duration)

    def _token(self) -> AccessToken:
        return self._tokens.token(self._credentials, self._fetch_token)

    def _fetch_token(self) -> AccessToken:
        request = token_request(self._credentials)
        return self._call("token", Host.LOGIN, request, interpret_token)

    def _emit(self, event: Event) -> None:
        """Tell the observer; a failing observer is logged, never raised: an accepted submit must return its id."""
        if self._observer is None:
            return
        try:
            self._observer.on_event(event)
        except Exception:  # noqa: BLE001 - a metrics backend going down must not turn an accepted submit into an error
            _log.exception("the observer failed on %s; the request goes on", type(event).__name__)

    # --- addresses -------------------------------------------------------------------------------------------

    def _send(self, host: Host, request: WireRequest, avoid: str | None) -> tuple[str, TransportResult, float]:
        origin = self._origins[host]
        book = self._book(host)
        if isinstance(book, NotSent):
            return origin.host, book, 0.0
        now = self._clock.monotonic()
        with self._lock:
            address, self._books[host] = self._books[host].pick(now, avoid)
        result = self._transport.send(request, origin, address)
        done = self._clock.monotonic()
        if (book := self._books[host]).record(address, result, done) is not book:  # a healthy address needs no lock
            with self._lock:
                self._books[host] = self._books[host].record(address, result, done)
        return address, result, done - now

    def _book(self, host: Host) -> AddressBook | NotSent:
        """The host's address book, resolved again when its TTL ran out, by one thread while others use the old."""
        book = self._books.get(host)  # books are immutable values: reading the current one needs no lock
        if book is not None and not book.needs_resolve(self._clock.monotonic()):
            return book
        resolving = self._resolving[host]
        if not resolving.acquire(blocking=book is None):
            return book  # type: ignore[return-value]  # only a known book skips the wait
        try:
            with self._lock:
                book = self._books.get(host)
            if book is not None and not book.needs_resolve(self._clock.monotonic()):
                return book
            origin = self._origins[host]
            resolution = self._resolver.resolve(origin.host, origin.port)
            now = self._clock.monotonic()
            with self._lock:
                book = self._books.get(host)
                if isinstance(resolution, NotSent):
                    if book is None:
                        return resolution
                    self._books[host] = book.resolve_failed(now)
                elif book is None:
                    self._books[host] = AddressBook.from_resolution(resolution, now, self._address_policy)
                else:
                    self._books[host] = book.updated(resolution, now)
                _log.debug("%s resolved: %s", origin.host, resolution)
                return self._books[host]
        finally:
            resolving.release()


def _tag_request(
    account: str, tag: str, token: AccessToken, *, page: ReferenceRange, daterange: DateRange | None
) -> WireRequest:
    return tag_messages_request(account, token, tag, page=page, daterange=daterange)
