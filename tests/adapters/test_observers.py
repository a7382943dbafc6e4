"""PrometheusObserver and OpenTelemetryObserver: one run of events, counted the same way under each one's names."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from flowmailer.adapters.otel_observer import OpenTelemetryObserver
from flowmailer.adapters.prometheus_observer import PrometheusObserver
from flowmailer.core import (
    Accepted,
    Ambiguous,
    AttemptFinished,
    Cause,
    Dead,
    Event,
    OutboxError,
    RecordAccepted,
    Rejected,
    RelayHandled,
    RelayHandling,
    RelayNotRecorded,
    RelayRecorded,
    RequestFinished,
    RetryAt,
    SubmissionState,
    SubmitMessage,
    TraceContext,
    Transient,
)
from flowmailer.testing import FakeClock, MemoryOutbox

EVENTS: Sequence[Event] = (
    RequestFinished("token", "127.0.0.2", 200, 0.01),
    AttemptFinished("submit", "127.0.0.2", Transient(503), 0.02),
    AttemptFinished("submit", "127.0.0.3", Accepted("m-1"), 0.03, attempt=2),
    AttemptFinished("submit", "127.0.0.2", Ambiguous("reset after write"), 0.04),
    RelayRecorded("r", 2, "ref-2", 1, RetryAt(10.0, Cause.AMBIGUOUS, "reset after write")),
    RelayRecorded("r", 1, "ref-1", 2, RecordAccepted("m-1")),
    RelayRecorded("r", 2, "ref-2", 1, RecordAccepted("m-2", reconciled=True, copies=2)),
    RelayRecorded("r", 3, "ref-3", 1, Dead("rejected")),
    RelayNotRecorded("r", 4, "lease lost"),
)


def test_prometheus_counts_by_its_conventions_and_samples_the_outbox_when_scraped() -> None:
    clock = FakeClock()
    outbox = MemoryOutbox(clock)
    outbox.enqueue(SubmitMessage(sender_address="a@example.com", recipient_address="b@example.com", text="x"))
    clock.advance(42)
    observer = PrometheusObserver(outbox=outbox, clock=clock, connections=lambda: 3)
    for event in EVENTS:
        observer.on_event(event)
    r = observer.registry

    def get(name: str, **labels: str) -> float | None:
        return r.get_sample_value(name, labels)

    assert get("flowmailer_attempts_total", operation="submit", outcome="transient") == 1
    assert get("flowmailer_attempts_total", operation="submit", outcome="accepted") == 1
    assert get("flowmailer_attempts_total", operation="token", outcome="answered") == 1
    assert get("flowmailer_request_duration_seconds_count", operation="submit", outcome="ambiguous") == 1
    assert get("flowmailer_submits_accepted_total") == 2  # the 201, and the one reconciliation found
    assert get("flowmailer_reconciled_total") == 1
    assert get("flowmailer_duplicates_total") == 1
    assert get("flowmailer_ambiguous_total") == 1
    assert get("flowmailer_retries_total", cause="ambiguous") == 1
    assert get("flowmailer_tokens_fetched_total") == 1
    assert get("flowmailer_dead_total") == 1
    assert get("flowmailer_not_recorded_total") == 1
    assert get("flowmailer_connections_open") == 3
    assert get("flowmailer_outbox_rows", state="queued") == 1
    assert get("flowmailer_outbox_rows", state="dead") == 0
    assert get("flowmailer_outbox_oldest_pending_age_seconds") == 42
    body, content_type = observer.exposition()
    assert b"# TYPE flowmailer_submits_accepted_total counter" in body
    assert content_type.startswith("text/plain")


class FailingOutbox(MemoryOutbox):
    def counts(self) -> dict[SubmissionState, int]:
        raise OutboxError("count rows", "the database is restarting")


def test_an_outbox_that_fails_leaves_its_gauges_out_of_the_scrape_and_the_counters_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    observer = PrometheusObserver(outbox=FailingOutbox(FakeClock()))
    observer.on_event(EVENTS[0])
    body, _ = observer.exposition()
    assert b"flowmailer_tokens_fetched_total 1.0" in body
    assert b"flowmailer_outbox_rows" not in body
    assert "the outbox could not be read" in caplog.text


def test_opentelemetry_records_http_client_request_duration_by_the_semantic_conventions() -> None:
    reader = InMemoryMetricReader()
    clock = FakeClock()
    outbox = MemoryOutbox(clock)
    observer = OpenTelemetryObserver(MeterProvider(metric_readers=[reader]), outbox=outbox, clock=clock)
    for event in EVENTS:
        observer.on_event(event)
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}

    def points(name: str) -> list[tuple[dict[str, object], float]]:
        """Each data point's attributes, and its value (a histogram's: its count)."""
        found = metrics[name].data.data_points
        return [(dict(p.attributes or {}), float(getattr(p, "value", getattr(p, "count", 0)))) for p in found]

    assert metrics["http.client.request.duration"].unit == "s"
    requests = {(a["flowmailer.operation"], a.get("error.type")): a for a, _ in points("http.client.request.duration")}
    assert requests[("submit", "transient")]["http.response.status_code"] == 503
    assert requests[("submit", "transient")]["server.address"] == "127.0.0.2"
    assert requests[("submit", None)]["http.response.status_code"] == 201
    assert requests[("submit", None)]["http.request.resend_count"] == 1
    assert "http.response.status_code" not in requests[("submit", "ambiguous")]
    assert requests[("token", None)]["http.request.method"] == "POST"

    def total(name: str) -> float:
        return sum(v for _, v in points(name))

    assert total("flowmailer.submits.accepted") == 2
    assert total("flowmailer.reconciled") == 1
    assert total("flowmailer.retries") == 1
    assert total("flowmailer.tokens.fetched") == 1
    rows = {a["flowmailer.outbox.state"]: v for a, v in points("flowmailer.outbox.rows")}
    assert rows["queued"] == 0


def test_an_outbox_forgotten_before_it_closes_is_read_no_more(caplog: pytest.LogCaptureFixture) -> None:
    """An SDK collects once more at exit: after ``forget_outbox`` the row gauges report nothing, quietly, and the
    counters go on."""
    reader = InMemoryMetricReader()
    clock = FakeClock()
    outbox = FailingOutbox(clock)  # as a closed one: every read raises
    observer = OpenTelemetryObserver(MeterProvider(metric_readers=[reader]), outbox=outbox, clock=clock)
    observer.on_event(EVENTS[0])
    observer.forget_outbox()
    data = reader.get_metrics_data()
    assert data is not None
    found = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert "flowmailer.outbox.rows" not in found or not found["flowmailer.outbox.rows"].data.data_points
    assert "flowmailer.tokens.fetched" in found
    assert "could not be read" not in caplog.text


def test_a_dead_letters_claim_span_is_an_error_and_an_unannounced_end_is_ignored() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = OpenTelemetryObserver(tracer_provider=provider, clock=FakeClock())
    stored = TraceContext("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    observer.on_event(RelayHandled("r", 9, None))  # no span was opened for it: nothing to end
    observer.on_event(RelayHandling("r", 1, "ref-1", 1, reconcile=False, trace_context=stored))
    observer.on_event(AttemptFinished("submit", "127.0.0.2", Rejected(422, ()), 0.02))
    observer.on_event(RelayHandled("r", 1, Dead("HTTP 422: invalid address")))
    post, claim = exporter.get_finished_spans()
    assert claim.parent is not None
    assert f"{claim.parent.span_id:016x}" == "b7ad6b7169203331"
    assert (claim.status.status_code, claim.status.description) == (StatusCode.ERROR, "HTTP 422: invalid address")
    assert dict(claim.attributes or {})["flowmailer.decision"] == "dead"
    assert post.parent is not None
    assert post.parent.span_id == claim.context.span_id
    assert dict(post.attributes or {})["server.address"] == "127.0.0.2"  # no URL: the address
    assert trace.get_current_span() is trace.INVALID_SPAN  # the claim's span is no longer current
