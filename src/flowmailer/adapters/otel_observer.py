"""OpenTelemetryObserver: the client's and the relay's events as OpenTelemetry metrics (extra ``otel``).

The OpenTelemetry API only, never the SDK: the application installs and configures its own MeterProvider (or
passes one), and without one every instrument is a no-op. Names follow OpenTelemetry's semantic conventions:
``http.client.request.duration`` in seconds with ``server.address``, ``http.response.status_code``,
``error.type`` and ``http.request.resend_count``; the relay's own figures under ``flowmailer.*``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from opentelemetry import metrics

from flowmailer._version import __version__
from flowmailer.adapters import _metrics
from flowmailer.adapters._clock import SystemClock
from flowmailer.core import Event, FlowmailerError
from flowmailer.ports import Clock, Outbox

__all__ = ["OpenTelemetryObserver"]

_log = logging.getLogger(__name__)

#: Operations whose request is a POST (a submit, a token, a simulation); every other one reads with GET.
_POSTS = frozenset({"submit", "token", "simulate"})
#: The duration histogram's buckets that the semantic conventions advise for HTTP client durations.
_BOUNDARIES = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_UNITS = {"tokens_fetched": "{token}"}


class OpenTelemetryObserver:
    """An Observer that records on ``meter_provider`` (the global one by default).

    Give ``outbox`` (and its ``clock``) for the row gauges and ``connections`` for ``http.client.open_connections``.
    """

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        outbox: Outbox | None = None,
        clock: Clock | None = None,
        connections: Callable[[], int] | None = None,
    ) -> None:
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

    def on_event(self, event: Event) -> None:
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
            elif fact.name == "retries":
                self._retries.add(1, {"flowmailer.retry.cause": fact.label or ""})
            else:
                self._counters[fact.name].add(1)

    def _rows(self, _options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        assert self._outbox is not None
        try:
            counts = self._outbox.counts()
        except FlowmailerError as e:
            _log.warning("metrics: the outbox could not be read: %s", e)
            return []
        return [metrics.Observation(n, {"flowmailer.outbox.state": s.value}) for s, n in counts.items()]

    def _age(self, _options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        assert self._outbox is not None
        try:
            oldest = self._outbox.oldest_pending()
        except FlowmailerError as e:
            _log.warning("metrics: the outbox could not be read: %s", e)
            return []
        return [metrics.Observation(0.0 if oldest is None else max(0.0, self._clock.now() - oldest))]
