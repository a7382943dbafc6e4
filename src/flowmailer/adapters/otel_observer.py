"""OpenTelemetryObserver: the client's and the relay's events as OpenTelemetry metrics and spans (extra ``otel``).

The OpenTelemetry API only, never the SDK: the application installs and configures its own MeterProvider and
TracerProvider (or passes them), and without them every instrument and span is a no-op. Names follow
OpenTelemetry's semantic conventions: ``http.client.request.duration`` in seconds with ``server.address``,
``http.response.status_code``, ``error.type`` and ``http.request.resend_count``; the relay's own figures under
``flowmailer.*``.

Spans: each request attempt is an HTTP client span (``POST`` or ``GET``, kind CLIENT), a child of the current
span. A relay's work on one claim is a span of its own, current while the worker handles the claim, whose parent
is the trace context stored with the message at enqueue: the attempts of its submission (and of a search by tag)
join the trace of the code that enqueued it. A message enqueued outside any span gets a trace of its own.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from opentelemetry import context, metrics, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from flowmailer._version import __version__
from flowmailer.adapters import _metrics
from flowmailer.adapters._clock import SystemClock
from flowmailer.core import (
    Dead,
    Event,
    FlowmailerError,
    Halt,
    ReconcileAt,
    RecordAccepted,
    RelayDecision,
    RelayHandled,
    RelayHandling,
    RetryAt,
)
from flowmailer.ports import Clock, Outbox

__all__ = ["OpenTelemetryObserver"]

_log = logging.getLogger(__name__)

#: Operations whose request is a POST (a submit, a token, a simulation); every other one reads with GET.
_POSTS = frozenset({"submit", "token", "simulate"})
#: The duration histogram's buckets that the semantic conventions advise for HTTP client durations.
_BOUNDARIES = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_UNITS = {"tokens_fetched": "{token}"}
#: Stored trace contexts are W3C's, whatever propagator the application set for its own requests.
_W3C = TraceContextTextMapPropagator()
_DECISIONS: dict[type, str] = {
    RecordAccepted: "accepted", RetryAt: "retry", ReconcileAt: "reconcile", Dead: "dead", Halt: "halted",
}  # fmt: skip


class OpenTelemetryObserver:
    """An Observer that records on ``meter_provider`` and ``tracer_provider`` (the global ones by default).

    Give ``outbox`` (and its ``clock``, which also times the spans) for the row gauges and ``connections`` for
    ``http.client.open_connections``. Give the same observer to the relay and its clients: the relay's events open
    and close each claim's span, the clients' events make the request spans inside it.
    """

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        outbox: Outbox | None = None,
        clock: Clock | None = None,
        connections: Callable[[], int] | None = None,
    ) -> None:
        self._tracer = trace.get_tracer("flowmailer", __version__, tracer_provider=tracer_provider)
        #: Each claim's span while a worker handles it, and the token that makes it current in the worker's thread.
        self._claims: dict[tuple[str, int], tuple[trace.Span, contextvars.Token[context.Context]]] = {}
        self._claims_lock = threading.Lock()
        meter = metrics.get_meter("flowmailer", __version__, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests to Flowmailer",
            explicit_bucket_boundaries_advisory=list(_BOUNDARIES),
        )
        names = ("submits_accepted", "ambiguous", "reconciled", "duplicates", "tokens_fetched", "dead")
        self._counters = {
            name: meter.create_counter(f"flowmailer.{name.replace('_', '.')}", unit=_UNITS.get(name, "{message}"))
            for name in (*names, "not_recorded", "outbox_errors")
        }
        self._retries = meter.create_counter("flowmailer.retries", unit="{message}", description="By cause")
        self._outbox, self._clock = outbox, clock if clock is not None else SystemClock()
        if connections is not None:
            meter.create_observable_up_down_counter(
                "http.client.open_connections",
                [lambda _options: [metrics.Observation(connections())]],
                unit="{connection}",
            )
        if outbox is not None:
            meter.create_observable_gauge("flowmailer.outbox.rows", [self._rows], unit="{message}")
            meter.create_observable_gauge("flowmailer.outbox.oldest_pending.age", [self._age], unit="s")

    def forget_outbox(self) -> None:
        """Read the outbox no more: its owner is about to close it. The row gauges report nothing from now on (an
        SDK's last collection, at exit, would otherwise find the outbox closed and log a warning)."""
        self._outbox = None

    def on_event(self, event: Event) -> None:
        if isinstance(event, RelayHandling):
            self._handling(event)
        elif isinstance(event, RelayHandled):
            self._handled(event)
        for fact in _metrics.facts(event):
            if isinstance(fact, _metrics.Request):
                attributes: dict[str, str | int] = {
                    "http.request.method": "POST" if fact.operation in _POSTS else "GET",
                    "server.address": fact.address,
                    "flowmailer.operation": fact.operation,
                }
                if fact.status is not None:
                    attributes["http.response.status_code"] = fact.status
                if fact.outcome not in ("accepted", "answered"):
                    attributes["error.type"] = fact.outcome
                if fact.attempt > 1:
                    attributes["http.request.resend_count"] = fact.attempt - 1
                self._duration.record(fact.duration, attributes)
                self._request_span(fact, attributes)
            elif fact.name == "retries":
                self._retries.add(1, {"flowmailer.retry.cause": fact.label or ""})
            else:
                self._counters[fact.name].add(1)

    def _now(self) -> int:
        return int(self._clock.now() * 1e9)

    def _request_span(self, fact: _metrics.Request, attributes: dict[str, str | int]) -> None:
        """The attempt as an HTTP client span, ended as it is reported: it began ``fact.duration`` ago."""
        url = urlsplit(fact.url)
        attributes = {**attributes, "network.peer.address": fact.address}
        if url.hostname:
            attributes |= {"server.address": url.hostname, "server.port": url.port or 443, "url.full": fact.url}
        end = self._now()
        span = self._tracer.start_span(
            str(attributes["http.request.method"]),
            kind=trace.SpanKind.CLIENT,
            attributes=attributes,
            start_time=end - int(fact.duration * 1e9),
        )
        if "error.type" in attributes:
            span.set_status(trace.StatusCode.ERROR)
        span.end(end_time=end)

    def _handling(self, event: RelayHandling) -> None:
        """Open the claim's span, a child of the message's stored trace context, and make it current."""
        tc = event.trace_context
        parent = None if tc is None else _W3C.extract({"traceparent": tc.traceparent, "tracestate": tc.tracestate})
        span = self._tracer.start_span(
            "flowmailer reconcile" if event.reconcile else "flowmailer submit",
            context=parent,
            attributes={
                "flowmailer.outbox.id": event.outbox_id,
                "flowmailer.client_reference": event.client_reference,
                "flowmailer.attempt": event.attempts,
            },
            start_time=self._now(),
        )
        token = context.attach(trace.set_span_in_context(span))
        with self._claims_lock:
            self._claims[(event.owner, event.outbox_id)] = (span, token)

    def _handled(self, event: RelayHandled) -> None:
        with self._claims_lock:
            found = self._claims.pop((event.owner, event.outbox_id), None)
        if found is None:
            return
        span, token = found
        span.set_attribute("flowmailer.decision", _decision_name(event.decision))
        if isinstance(event.decision, RecordAccepted):
            span.set_attribute("flowmailer.message_id", event.decision.message_id)
        elif isinstance(event.decision, Dead | Halt):
            span.set_status(trace.StatusCode.ERROR, event.decision.reason)
        span.end(end_time=self._now())
        context.detach(token)

    def _rows(self, _options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        if self._outbox is None:  # forgotten
            return []
        try:
            counts = self._outbox.counts()
        except FlowmailerError as e:
            _log.warning("metrics: the outbox could not be read: %s", e)
            return []
        return [metrics.Observation(n, {"flowmailer.outbox.state": s.value}) for s, n in counts.items()]

    def _age(self, _options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        if self._outbox is None:  # forgotten
            return []
        try:
            oldest = self._outbox.oldest_pending()
        except FlowmailerError as e:
            _log.warning("metrics: the outbox could not be read: %s", e)
            return []
        return [metrics.Observation(0.0 if oldest is None else max(0.0, self._clock.now() - oldest))]


def _decision_name(decision: RelayDecision | None) -> str:
    """What the worker decided, as the claim span says it: None is a claim released or dropped unsent."""
    return "released" if decision is None else _DECISIONS.get(type(decision), type(decision).__name__.lower())
