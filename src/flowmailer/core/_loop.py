"""The one request loop: every call a client makes, as a generator of effects that a shell performs.

In the manner of h11's ``Connection``, the loop does no I/O. A shell asks it what to do next and feeds it what
happened (the value the effect produced, and the time it happened); the loop says get a token, resolve this name,
send this request to this address, sleep this long, tell the observer, and in the end returns the answer or raises
the error its last decision calls for. Every decision lives here: the retry policy and the client's retry budget,
the one token refresh after a refused token, which address to try and what an attempt says about it, when the
address book is resolved again, which error a final decision raises. A shell (``flowmailer.app.Client``,
``AsyncClient``, or one of your own) is a loop over :meth:`Engine` calls that performs the effects.

The :class:`Engine` holds what a client's calls share (the budget, the address books). A threaded shell gives it
its lock as ``guard``: the engine holds it only while that shared state changes, never across a yield, so effects
are never performed under it. An async shell needs none.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, NamedTuple, TypeAlias, TypeVar, cast

import attrs

from flowmailer.core._addresses import AddressBook, AddressPolicy
from flowmailer.core._checks import require
from flowmailer.core._dns import Resolution
from flowmailer.core._errors import ConfigurationError
from flowmailer.core._events import AttemptFinished, Event, RequestFinished
from flowmailer.core._http import Host, Origin, WireRequest, WireResponse
from flowmailer.core._models import AccessToken, Credentials, Message, MessageEvent, Simulation, SubmitMessage
from flowmailer.core._outcomes import (
    Accepted,
    Ambiguous,
    CredentialsRejected,
    NotSent,
    Outcome,
    Rejected,
    TokenInvalid,
    Transient,
    TransportResult,
)
from flowmailer.core._protocol import (
    FIRST_PAGE,
    MAX_TAG_PAGES,
    Page,
    SortOrder,
    check_max_pages,
    classify_submit,
    interpret_one,
    interpret_page,
    interpret_stats,
    interpret_token,
    message_events_request,
    message_request,
    message_stats_request,
    next_page,
    simulate_request,
    submit_request,
    tag_messages_request,
    token_request,
)
from flowmailer.core._ranges import DateRange, ReferenceRange
from flowmailer.core._reports import ReportPiece, ReportPolicy, Stats, StatsQuery, assemble_report, plan_report
from flowmailer.core._retry import (
    GiveUp,
    Reconcile,
    RefreshToken,
    Retry,
    RetryBudget,
    RetryPolicy,
    RetryState,
    error_for,
)
from flowmailer.core._wire import message_to_json

__all__ = [
    "AskReports",
    "AwaitResolution",
    "Deliver",
    "Effect",
    "Emit",
    "Engine",
    "Fed",
    "ForgetToken",
    "GetToken",
    "Listing",
    "Loop",
    "NewReference",
    "Resolve",
    "Send",
    "Sleep",
    "Tick",
]

T = TypeVar("T")
X = TypeVar("X")
_OUTCOMES = (Accepted, Rejected, NotSent, Transient, Ambiguous, TokenInvalid, CredentialsRejected)


# --- effects: what the loop asks its shell to do, and what the shell feeds back ------------------------------


@attrs.frozen
class Tick:
    """Nothing to do: feed the time (a call notes when it started). Feed None."""


#: The one :class:`Tick`.
TICK = Tick()


@attrs.frozen
class GetToken:
    """A valid token for ``credentials``: from the shell's token store, which may fetch one by running
    :meth:`Engine.fetch_token`. Feed the :class:`AccessToken`."""

    credentials: Credentials


@attrs.frozen
class ForgetToken:
    """Flowmailer refused ``token``: tell the token store never to hand it out again. Feed None."""

    credentials: Credentials
    token: AccessToken


@attrs.frozen
class Resolve:
    """Resolve ``name`` (the origin of ``host``) with the shell's resolver. Feed its ``Resolution | NotSent``."""

    host: Host
    name: str
    port: int


@attrs.frozen
class AwaitResolution:
    """Another call is resolving ``host`` and this one has no addresses yet: wait until :attr:`Engine.resolutions`
    is no longer ``seen``. Feed None."""

    host: Host
    seen: int


@attrs.frozen
class Send:
    """Send ``request`` to ``address`` (an IP address of ``origin``). Feed the transport's ``TransportResult``."""

    request: WireRequest
    origin: Origin
    address: str


@attrs.frozen
class Sleep:
    """Wait ``seconds`` before the next attempt of ``operation`` (which will avoid ``avoid``). Feed None."""

    seconds: float
    operation: str
    avoid: str | None


@attrs.frozen
class Emit:
    """Tell the observer (a failing observer must never fail the call). Feed None."""

    event: Event


@attrs.frozen
class NewReference:
    """A fresh, unguessable client reference (the shell's ``secrets.token_hex(16)``). Feed the string."""


@attrs.frozen
class Deliver:
    """Hand ``item`` to the caller of a listing (a page, a message) and go on when asked for the next. Feed None."""

    item: object


@attrs.frozen
class AskReports:
    """Call the report store's ``method(*args)`` (``stretches``, ``held``, ``keep``): a blocking store (SQLite
    waits for locks and syncs to disk), so an async shell calls it from a worker thread. Feed what it returns."""

    method: str
    args: tuple[object, ...]


Effect: TypeAlias = (
    Tick
    | GetToken
    | ForgetToken
    | Resolve
    | AwaitResolution
    | Send
    | Sleep
    | Emit
    | NewReference
    | Deliver
    | AskReports
)


class Fed(NamedTuple):
    """What happened: the value the last effect produced, and when (the shell's monotonic and wall clocks)."""

    value: object
    monotonic: float
    wall: float


#: A call in progress: send it ``Fed`` values (``next()`` first), it yields effects and returns the answer.
Loop: TypeAlias = Generator[Effect, Fed, T]


@attrs.frozen
class Listing(Generic[X]):
    """A call that hands its caller items of type ``X`` one by one (as :class:`Deliver` effects) and returns
    nothing: the shell turns it into an iterator."""

    loop: Loop[None]


# --- the engine: what one client's calls share ------------------------------------------------------------


class Engine:
    """The decisions of one client: its credentials and origins, the retry policy and the budget its calls share,
    an address book per host. Each public method starts one call, a :data:`Loop`."""

    def __init__(
        self,
        credentials: Credentials,
        origins: Mapping[Host, Origin],
        *,
        policy: RetryPolicy | None = None,
        budget: RetryBudget | None = None,
        address_policy: AddressPolicy | None = None,
        report_policy: ReportPolicy | None = None,
        reference_prefix: str = "ref:",
        draw: Callable[[], float],
        guard: AbstractContextManager[object] | None = None,
        observed: Callable[[], bool] | None = None,
        load: Callable[[Origin], Mapping[str, int] | None] | None = None,
    ) -> None:
        if not reference_prefix:
            raise ConfigurationError("reference_prefix", "is empty", 'use a tag prefix such as "ref:"')
        require(set(origins) == set(Host), "origins", "has an origin for each host", "give the API and login origins")
        self.credentials = credentials
        self.origins = dict(origins)
        self.policy = policy if policy is not None else RetryPolicy()
        self.budget = budget if budget is not None else RetryBudget()
        self.address_policy = address_policy if address_policy is not None else AddressPolicy()
        self.report_policy = report_policy if report_policy is not None else ReportPolicy()
        self.prefix = reference_prefix
        self._draw = draw
        #: Held while the shared state changes (never across a yield): a threaded shell's lock; none by default.
        self._guard = guard if guard is not None else contextlib.nullcontext()
        #: Whether anyone takes :class:`Emit` effects now (an observer, a debug log), asked once per attempt; a shell
        #: that says no is spared a step per attempt that would only be thrown away. None: always emit.
        self._observed = observed if observed is not None else _always
        #: The transport's requests in flight per address of an origin, read as each attempt picks its address, so
        #: the least loaded one is taken; a shell whose transport does not count them gives None: plain rotation.
        self._load = load if load is not None else _no_load
        self.books: dict[Host, AddressBook] = {}
        self._resolving: set[Host] = set()
        #: Counts resolutions finished (or abandoned): a call waiting in :class:`AwaitResolution` waits for a change.
        self.resolutions = 0

    # --- operations ------------------------------------------------------------------------------------------

    def submit(self, message: SubmitMessage) -> Loop[str]:
        """Flowmailer's message id, after a 201. The message is tagged with a client reference first (unless it
        has one), so an :class:`AmbiguousError` can be reconciled with ``messages_by_tag(e.client_reference)``."""
        reference = message.client_reference(self.prefix)
        if reference is None:
            reference = cast("str", (yield NewReference()).value)
            message = message.with_client_reference(reference, self.prefix)
        account = self.credentials.account_id
        origin = self.origins[Host.API]
        body = message_to_json(message)  # once: a retry sends the same bytes
        accepted: Accepted = yield from self.call(
            "submit",
            Host.API,
            lambda token: submit_request(account, token, body),
            lambda result, now: classify_submit(result, origin=origin, account_id=account, now=now),
            reference=f"{self.prefix}{reference}",
        )
        return accepted.message_id

    def check_credentials(self) -> Loop[float]:
        """When the token expires (epoch seconds): proof that the credentials work, for a health check, without
        showing the token. An :class:`AuthenticationError` means Flowmailer refused them."""
        token = cast("AccessToken", (yield GetToken(self.credentials)).value)
        return token.expires_at

    def simulate(self, message: SubmitMessage, source_id: str) -> Loop[Simulation]:
        """What the flow would make of ``message``; nothing is sent."""
        account = self.credentials.account_id
        return (
            yield from self.call(
                "simulate",
                Host.API,
                lambda token: simulate_request(account, token, message, source_id),
                lambda result, now: interpret_one(result, Simulation, now=now),
            )
        )

    def message(self, message_id: str, *, add_events: bool = False, add_tags: bool = False) -> Loop[Message]:
        """One message by its id, with its events and tags if asked for."""
        account = self.credentials.account_id
        return (
            yield from self.call(
                "message",
                Host.API,
                lambda token: message_request(account, token, message_id, add_events=add_events, add_tags=add_tags),
                lambda result, now: interpret_one(result, Message, now=now),
            )
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
    ) -> Listing[Page[MessageEvent]]:
        """Pages of events from ``start`` (each a :class:`Deliver`), fetched as the caller iterates; store a page's
        ``next_range`` as the cursor to resume from later."""
        account = self.credentials.account_id
        flows, sources = tuple(flow_ids), tuple(source_ids)

        def build(page: ReferenceRange, token: AccessToken) -> WireRequest:
            return message_events_request(
                account,
                token,
                page=page,
                flow_ids=flows,
                source_ids=sources,
                daterange=daterange,
                receivedrange=receivedrange,
                sortorder=sortorder,
                add_message_tags=add_message_tags,
            )

        return Listing(self._pages("message_events", start, build, MessageEvent, whole_pages=True))

    def messages_by_tag(
        self, tag: str, *, daterange: DateRange | None = None, max_pages: int = MAX_TAG_PAGES
    ) -> Listing[Message]:
        """Every message carrying ``tag`` (each a :class:`Deliver`), page by page as the caller iterates (how an
        ambiguous submit is found); a listing longer than ``max_pages`` pages raises ProtocolError rather than go
        on."""
        check_max_pages(max_pages)
        account = self.credentials.account_id

        def build(page: ReferenceRange, token: AccessToken) -> WireRequest:
            return tag_messages_request(account, token, tag, page=page, daterange=daterange)

        return Listing(
            self._pages("messages_by_tag", FIRST_PAGE, build, Message, whole_pages=False, max_pages=max_pages)
        )

    def message_stats(
        self,
        daterange: DateRange,
        *,
        interval: int = 86400,
        flow_ids: Iterable[int | str] = (),
    ) -> Loop[Stats]:
        """Message counts per ``interval`` seconds over ``daterange``, which starts and ends on interval boundaries.

        Stretches of time settled longer than ``ReportPolicy.settle`` ago (a week by default) are asked for once
        and kept in the shell's report store; only the rest is asked for again. The shell runs one report at a
        time: Flowmailer's guidelines ask for no overlapping report requests.
        """
        query = StatsQuery(interval, flow_ids)
        account = self.credentials.account_id
        start, end = query.span(daterange)
        fed = yield AskReports("stretches", (query,))
        stretches, now = cast("Sequence[tuple[int, int]]", fed.value), fed.wall
        # Before keeping: a store that must shrink may drop some of it.
        held = cast("Mapping[str, Mapping[int, int]]", (yield AskReports("held", (query, start, end))).value)
        fetched: dict[ReportPiece, Stats] = {}
        for piece in plan_report(query, daterange, now, self.report_policy, stretches):
            fetched[piece] = yield from self.call(
                "message_stats",
                Host.API,
                functools.partial(message_stats_request, account, daterange=piece.daterange, query=query),
                functools.partial(interpret_stats, query=query, daterange=piece.daterange),
            )
            yield AskReports("keep", (query, piece, fetched[piece]))  # kept as it comes: a failure later loses nothing
        return assemble_report(query, daterange, held, fetched)

    def fetch_token(self) -> Loop[AccessToken]:
        """A new token from the login host: what the shell's token store calls when it has none that is valid."""
        return (yield from self.call("token", Host.LOGIN, token_request(self.credentials), interpret_token))

    # --- the loop --------------------------------------------------------------------------------------------

    def _pages(
        self,
        endpoint: str,
        start: ReferenceRange,
        build: Callable[[ReferenceRange, AccessToken], WireRequest],
        item_type: type[Message] | type[MessageEvent],
        *,
        whole_pages: bool,
        max_pages: int | None = None,
    ) -> Loop[None]:
        """A reference-range listing, a page at a time; a cursor that does not advance is an error naming the
        endpoint, checked before the page is handed over (its cursor must be sound)."""
        page_range: ReferenceRange | None = start
        seen = {start.reference}
        while page_range is not None:
            page: Page[Any] = yield from self.call(
                endpoint,
                Host.API,
                functools.partial(build, page_range),
                lambda result, now: interpret_page(result, item_type, now=now),
            )
            page_range = next_page(endpoint, page, seen, max_pages=max_pages)
            if whole_pages:
                yield Deliver(page)
            else:
                for item in page.items:
                    yield Deliver(item)
            if page_range is not None:
                seen.add(page_range.reference)

    def call(
        self,
        operation: str,
        host: Host,
        build: Callable[[AccessToken], WireRequest] | WireRequest,
        interpret: Callable[[TransportResult, float], T | Outcome],
        *,
        reference: str | None = None,
    ) -> Loop[T]:
        """Attempts until the retry policy is done; the answer, or the error its last decision calls for.

        ``build`` makes the request from a token (or is the request, for the token request itself); ``interpret``
        reads a result at a wall time into the answer or the :class:`Outcome` that stopped it.
        """
        fed = yield TICK
        started = fed.monotonic
        state = RetryState()
        avoid: str | None = None
        while True:
            token: AccessToken | None = None
            if isinstance(build, WireRequest):
                request = build
            else:
                fed = yield GetToken(self.credentials)
                token = cast("AccessToken", fed.value)
                request = build(token)
            # The retry deadline bounds this attempt too, not only the wait before the next one.
            request = attrs.evolve(request, timeout=self.policy.attempt_timeout(fed.monotonic - started))
            address, result, sent_at, fed = yield from self._send(host, request, avoid, fed)
            got = interpret(result, fed.wall)
            duration = fed.monotonic - sent_at
            attempt = state.attempts + 1
            observed = self._observed()
            url = self.origins[host].url() + request.target if observed else ""  # no secret is ever in one
            if isinstance(got, Accepted) or not isinstance(got, _OUTCOMES):
                if self.budget.tokens < self.budget.capacity:  # a full bucket stays full: no guard, no copy
                    with self._guard:
                        self.budget = self.budget.deposit(fed.monotonic)
                if observed:
                    status = result.status if isinstance(result, WireResponse) else 0
                    done = (
                        AttemptFinished(operation, address, got, duration, attempt, url)
                        if isinstance(got, Accepted)
                        else RequestFinished(operation, address, status, duration, attempt, url)
                    )
                    yield Emit(done)
                return cast("T", got)  # Accepted is the T of submit
            outcome: Outcome = got
            if observed:
                yield Emit(AttemptFinished(operation, address, outcome, duration, attempt, url))
            book = self.books.get(host)
            decision, state = self.policy.decide(
                outcome,
                state,
                elapsed=fed.monotonic - started,
                u=self._draw(),
                addresses=len(book) if book is not None else 1,
                idempotent=request.idempotent,
            )
            with self._guard:
                decision, self.budget = self.budget.admit(decision, fed.monotonic)
            if isinstance(outcome, TokenInvalid) and token is not None:
                yield ForgetToken(self.credentials, token)  # refused: never sent again, whatever follows
            if isinstance(decision, Retry):
                yield Sleep(decision.delay, operation, address)
                avoid = address
            elif not isinstance(decision, RefreshToken):
                assert isinstance(decision, Reconcile | GiveUp)
                raise error_for(
                    decision,
                    operation=operation,
                    host=host,
                    hostname=self.origins[host].host,
                    attempts=state.attempts,
                    client_id=self.credentials.client_id,
                    reference=reference,
                )

    def _send(
        self, host: Host, request: WireRequest, avoid: str | None, fed: Fed
    ) -> Generator[Effect, Fed, tuple[str, TransportResult, float, Fed]]:
        """One attempt: the address it went to, its result, when it was sent, and what was fed after it."""
        origin = self.origins[host]
        known = self.books.get(host)
        book: AddressBook | NotSent | None = known
        if known is None or known.needs_resolve(fed.monotonic):
            book, fed = yield from self._book(host, fed)
        if isinstance(book, NotSent):
            return origin.host, book, fed.monotonic, fed
        sent_at = fed.monotonic
        with self._guard:
            address, self.books[host] = self.books[host].pick(sent_at, avoid, self._load(origin))
        fed = yield Send(request, origin, address)
        result = cast("TransportResult", fed.value)
        book = self.books[host]
        if book.record(address, result, fed.monotonic) is not book:  # a healthy address changes nothing: no guard
            with self._guard:
                self.books[host] = self.books[host].record(address, result, fed.monotonic)
        return address, result, sent_at, fed

    def _book(self, host: Host, fed: Fed) -> Generator[Effect, Fed, tuple[AddressBook | NotSent, Fed]]:
        """The host's address book, resolved again when its TTL ran out: by one call while the others go on with
        the old book; a call with no book waits for the one resolving, then resolves itself if that failed."""
        while True:
            with self._guard:
                book = self.books.get(host)
                if book is not None and not book.needs_resolve(fed.monotonic):
                    return book, fed
                if host not in self._resolving:
                    self._resolving.add(host)
                    break
                seen = self.resolutions
            if book is not None:
                return book, fed  # another call is resolving: the known addresses serve meanwhile
            fed = yield AwaitResolution(host, seen)
        origin = self.origins[host]
        try:
            fed = yield Resolve(host, origin.host, origin.port)
        except BaseException:  # the shell abandoned the call (an error, a cancellation): others must not wait forever
            with self._guard:
                self._resolved(host)
            raise
        resolution = cast("Resolution | NotSent", fed.value)
        with self._guard:  # the new book and the end of the resolution at once: a waiter wakes to the new book
            book = self.books.get(host)
            if isinstance(resolution, NotSent):
                if book is not None:
                    self.books[host] = book.resolve_failed(fed.monotonic)
            elif book is None:
                self.books[host] = AddressBook.from_resolution(resolution, fed.monotonic, self.address_policy)
            else:
                self.books[host] = book.updated(resolution, fed.monotonic)
            self._resolved(host)
            book = self.books.get(host)
        if book is None:  # only a failed first resolution leaves no book
            assert isinstance(resolution, NotSent)
            return resolution, fed
        return book, fed

    def _resolved(self, host: Host) -> None:
        self._resolving.discard(host)
        self.resolutions += 1


def _always() -> bool:
    return True


def _no_load(origin: Origin) -> None:
    return None
