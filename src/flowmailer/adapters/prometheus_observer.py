"""PrometheusObserver: the client's and the relay's events as Prometheus metrics (extra ``prometheus``).

Names follow Prometheus' conventions: a ``flowmailer_`` prefix, base units (seconds), ``_total`` counters. The
outbox's rows by state, the age of its oldest pending message and the connections open are read when Prometheus
scrapes, not counted from events, so they are right whichever relay (or process) changed them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flowmailer.adapters import _metrics
from flowmailer.adapters._clock import SystemClock
from flowmailer.core import Event, FlowmailerError
from flowmailer.ports import Clock, Outbox

__all__ = ["PrometheusObserver"]

_log = logging.getLogger(__name__)

#: Seconds: a submit usually takes tens of milliseconds; a read timeout is many seconds.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PrometheusObserver:
    """An Observer that counts into ``registry`` (a new one by default: ``registry`` is what to expose).

    Give ``outbox`` (and the ``clock`` it reads) for the row gauges, and ``connections`` (e.g.
    ``lambda: transport.stats().open``) for the connections gauge. Counters count this process's events: sum them
    over relays in PromQL. ``flowmailer_submits_accepted_total`` counts what Flowmailer accepted, known from a
    201 or found by reconciliation; ``flowmailer_reconciled_total`` the latter alone.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        outbox: Outbox | None = None,
        clock: Clock | None = None,
        connections: Callable[[], int] | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self._attempts = Counter(
            "flowmailer_attempts",
            "Requests to Flowmailer, by operation and outcome",
            ["operation", "outcome"],
            registry=r,
        )
        self._duration = Histogram(
            "flowmailer_request_duration_seconds",
            "How long each request to Flowmailer took, by operation and outcome",
            ["operation", "outcome"],
            buckets=_BUCKETS,
            registry=r,
        )
        self._counters = {
            "submits_accepted": Counter(
                "flowmailer_submits_accepted",
                "Messages Flowmailer accepted (a 201, or found by reconciliation)",
                registry=r,
            ),
            "ambiguous": Counter("flowmailer_ambiguous", "Submissions sent with no answer read", registry=r),
            "reconciled": Counter(
                "flowmailer_reconciled", "Messages found at Flowmailer by their tag after an ambiguity", registry=r
            ),
            "duplicates": Counter(
                "flowmailer_duplicates", "Extra copies reconciliation found at Flowmailer", registry=r
            ),
            "tokens_fetched": Counter("flowmailer_tokens_fetched", "Access tokens fetched", registry=r),
            "dead": Counter("flowmailer_dead", "Messages the relay declared dead letters", registry=r),
            "not_recorded": Counter(
                "flowmailer_not_recorded", "Outcomes the relay could not record (lease lost, outbox failed)", registry=r
            ),
            "outbox_errors": Counter("flowmailer_outbox_errors", "Claims, counts or waits that failed", registry=r),
        }
        self._retries = Counter(
            "flowmailer_retries", "Later sends and searches scheduled, by cause", ["cause"], registry=r
        )
        if outbox is not None or connections is not None:
            r.register(_Sampled(outbox, clock if clock is not None else SystemClock(), connections))

    def exposition(self) -> tuple[bytes, str]:
        """The registry in Prometheus' text format, and its content type: the body of a /metrics answer."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def on_event(self, event: Event) -> None:
        for fact in _metrics.facts(event):
            if isinstance(fact, _metrics.Request):
                self._attempts.labels(fact.operation, fact.outcome).inc()
                self._duration.labels(fact.operation, fact.outcome).observe(fact.duration)
            elif fact.name == "retries":
                self._retries.labels(fact.label).inc()
            else:
                self._counters[fact.name].inc()


class _Sampled(Collector):
    """The gauges read at scrape time; an outbox that fails leaves its gauges out of that scrape, logged."""

    def __init__(self, outbox: Outbox | None, clock: Clock, connections: Callable[[], int] | None) -> None:
        self._outbox, self._clock, self._connections = outbox, clock, connections

    def describe(self) -> Iterable[Metric]:
        return []  # described by collecting: the registry must not sample the outbox when this is registered

    def collect(self) -> Iterator[Metric]:
        if self._connections is not None:
            yield GaugeMetricFamily(
                "flowmailer_connections_open", "Connections to Flowmailer open now", value=self._connections()
            )
        if self._outbox is None:
            return
        try:
            counts = self._outbox.counts()
            oldest = self._outbox.oldest_pending()
        except FlowmailerError as e:
            _log.warning("metrics: the outbox could not be read: %s", e)
            return
        rows = GaugeMetricFamily("flowmailer_outbox_rows", "Outbox rows by state, all relays'", labels=["state"])
        for state, n in counts.items():
            rows.add_metric([state.value], n)
        yield rows
        age = 0.0 if oldest is None else max(0.0, self._clock.now() - oldest)
        yield GaugeMetricFamily(
            "flowmailer_outbox_oldest_pending_age_seconds",
            "How long the oldest message not yet accepted or dead has waited (0 when none)",
            value=age,
        )
