"""What the sync and the async client share: their construction and the effects that need no waiting.

A shell only performs the effects of the core's request loop (:class:`~flowmailer.core.Engine`); the methods both
clients offer are declared once, in ``app/_api.py``. The retry policy and every other decision are the core's.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from flowmailer.app import _defaults, _logs
from flowmailer.core import (
    Accepted,
    AddressPolicy,
    AttemptFinished,
    ConfigurationError,
    Credentials,
    Emit,
    Engine,
    ForgetToken,
    Host,
    NewReference,
    Origin,
    ReportBook,
    ReportPolicy,
    RequestFinished,
    RetryBudget,
    RetryPolicy,
    Sleep,
    Tick,
)
from flowmailer.ports import Clock, Observer, ReportStore, Resolver

if TYPE_CHECKING:
    from flowmailer.core import Effect

__all__ = ["DEFAULT_API_URL", "DEFAULT_LOGIN_URL", "Shell"]

DEFAULT_API_URL = "https://api.flowmailer.net"
DEFAULT_LOGIN_URL = "https://login.flowmailer.net"

_log = logging.getLogger(__name__)
TransportT = TypeVar("TransportT")
TokensT = TypeVar("TokensT")
S = TypeVar("S", bound="Shell[Any, Any]")


class Shell(Generic[TransportT, TokensT]):
    """A client: an :class:`Engine` and the adapters that perform its effects. Adapters left out are built by
    default: the transport over the system trust store (or ``ca_bundle``), the system resolver, an in-memory token
    store, the real clock."""

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
        transport: TransportT | None = None,
        resolver: Resolver | None = None,
        token_store: TokensT | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        observer: Observer | None = None,
    ) -> None:
        self._start_shell()
        origins = {
            Host.API: Origin.parse(api_url, field="api_url"),
            Host.LOGIN: Origin.parse(login_url, field="login_url"),
        }
        self._engine = Engine(
            credentials,
            origins,
            policy=policy,
            budget=budget,
            address_policy=address_policy,
            report_policy=report_policy,
            reference_prefix=reference_prefix,
            draw=(rng if rng is not None else random.Random()).random,
            guard=self._guard,
            observed=self._observed,
            load=self._in_flight,
        )
        self._clock = clock if clock is not None else _defaults.clock()
        if transport is None:
            age = self._engine.address_policy.max_connection_age
            transport = self._default_transport(ca_bundle, max_connections, age)
        elif ca_bundle is not None or max_connections != _defaults.MAX_CONNECTIONS:
            field = "ca_bundle" if ca_bundle is not None else "max_connections"
            raise ConfigurationError(field, "was given with a transport", f"set {field} on the transport itself")
        self._transport: TransportT = transport
        self._count: Callable[[Origin], Mapping[str, int]] | None = getattr(transport, "in_flight", None)
        self._resolver = resolver if resolver is not None else _defaults.resolver()
        self._tokens: TokensT = token_store if token_store is not None else self._default_token_store()
        self._observer = observer
        self._reports: ReportStore = report_store if report_store is not None else ReportBook()

    @classmethod
    def from_env(cls: type[S], environ: Mapping[str, str] | None = None, **kwargs: object) -> S:
        """Credentials from FLOWMAILER_ACCOUNT_ID, FLOWMAILER_CLIENT_ID and FLOWMAILER_CLIENT_SECRET; optional
        FLOWMAILER_API_URL, FLOWMAILER_LOGIN_URL, FLOWMAILER_CA_BUNDLE and FLOWMAILER_RESOLVE; ``kwargs`` as for
        the constructor."""
        settings = _defaults.settings_from_env(environ)
        return cls(**{**settings, **kwargs})  # type: ignore[arg-type]

    #: What the engine holds while its shared state changes: a threaded shell's lock.
    _guard: AbstractContextManager[object] | None = None

    def _start_shell(self) -> None:
        """The shell's own locks and events, first in construction."""

    def _default_transport(self, ca_bundle: str | None, max_connections: int, max_connection_age: float) -> TransportT:
        raise NotImplementedError

    def _default_token_store(self) -> TokensT:
        raise NotImplementedError

    def _perform_now(self, effect: Effect) -> object:
        """Perform an effect that needs no waiting: what is left once a shell performed those it waits for."""
        if isinstance(effect, Emit):
            self._emit(effect)
        elif isinstance(effect, ForgetToken):
            self._tokens.invalidate(effect.credentials, effect.token)  # type: ignore[attr-defined]
        elif isinstance(effect, NewReference):
            return secrets.token_hex(16)
        else:
            assert isinstance(effect, Tick), f"{effect!r} is for the shell to perform"
        return None

    def _observed(self) -> bool:
        """Whether an attempt's :class:`Emit` has anywhere to go: the observer, or the debug log :meth:`_emit`
        writes. Neither (the usual case) spares every attempt a step."""
        return self._observer is not None or _log.isEnabledFor(logging.DEBUG)

    def _in_flight(self, origin: Origin) -> Mapping[str, int] | None:
        """The transport's requests in flight per address of ``origin``, when it counts them (``in_flight``, as the
        bundled transports do): the engine sends each attempt to the least loaded address. None: plain rotation."""
        return self._count(origin) if self._count is not None else None

    def _retrying(self, effect: Sleep) -> float:
        """Log a retry's wait; the seconds the shell is to sleep."""
        _log.debug(
            "%s: retrying in %.3f s, avoiding %s",
            effect.operation,
            effect.seconds,
            effect.avoid,
            extra=_logs.context(),
        )
        return effect.seconds

    def _emit(self, effect: Emit) -> None:
        """Tell the observer; a failing observer is logged, never raised: an accepted submit must return its id."""
        event = effect.event
        if isinstance(event, AttemptFinished):
            what = "answered, accepted" if isinstance(event.outcome, Accepted) else str(event.outcome)
            where = (event.operation, event.attempt, event.address)
            accepted = {"message_id": event.outcome.message_id} if isinstance(event.outcome, Accepted) else {}
            extra = _logs.context(request_attempt=event.attempt, **accepted)
            _log.debug("%s attempt %d to %s: %s (%.3f s)", *where, what, event.duration, extra=extra)
        elif isinstance(event, RequestFinished):
            where = (event.operation, event.attempt, event.address)
            extra = _logs.context(request_attempt=event.attempt)
            _log.debug("%s attempt %d to %s: answered %d (%.3f s)", *where, event.status, event.duration, extra=extra)
        if self._observer is None:
            return
        try:
            self._observer.on_event(effect.event)
        except Exception:  # noqa: BLE001 - a metrics backend going down must not turn an accepted submit into an error
            _log.exception("the observer failed on %s; the request goes on", type(effect.event).__name__)
