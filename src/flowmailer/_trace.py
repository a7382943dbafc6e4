"""The trace context of the caller's current OpenTelemetry span, for the outboxes to store at enqueue.

Every outbox (the adapters', the testing fake, and Django's backend, which enqueues later, on commit) asks here,
so the capture is the same everywhere. It never imports OpenTelemetry: an application with a span to trace has
imported ``opentelemetry.trace`` already, and one that has not has no current span, whether or not the package is
installed.
"""

from __future__ import annotations

import sys

from flowmailer.core import ConfigurationError, TraceContext

__all__ = ["current_trace_context", "or_current"]


def current_trace_context() -> TraceContext | None:
    """The current span's W3C trace context; None without OpenTelemetry, or outside a valid span."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)  # W3C's format, whatever propagator the application set
    if "traceparent" not in carrier:
        return None
    return TraceContext(carrier["traceparent"], carrier.get("tracestate", ""))


def or_current(trace_context: object) -> TraceContext | None:
    """An enqueue's ``trace_context``: the one given, else the current span's; anything else is refused."""
    if trace_context is None:
        return current_trace_context()
    if not isinstance(trace_context, TraceContext):
        raise ConfigurationError(
            "trace_context",
            f"{type(trace_context).__name__} is not a TraceContext",
            "give flowmailer.core.TraceContext(traceparent, tracestate), or None for the current span's",
        )
    return trace_context
