"""A message's submit spans join the trace of the code that enqueued it: each relay (``relay_kind``: the threaded one
over the real Client, AsyncRelay over AsyncClient on asyncio and trio), over real TLS, FakeFlowmailer, and
OpenTelemetryObserver recording into the SDK's in-memory span exporter."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from flowmailer.adapters import Urllib3Transport
from flowmailer.adapters.anyio_transport import AnyioTransport
from flowmailer.adapters.otel_observer import OpenTelemetryObserver
from flowmailer.app import Client, Relay
from flowmailer.app.async_client import AsyncClient
from flowmailer.app.async_relay import AsyncRelay
from flowmailer.core import Credentials, RelayRules, RetryPolicy, SubmissionState, SubmitMessage
from flowmailer.testing import FakeClock, MemoryOutbox, StaticResolver
from flowmailer.testing._fake import API_HOST, LOGIN_HOST, FakeFlowmailer, Fault


@pytest.fixture
def fake() -> Iterator[FakeFlowmailer]:
    faults = [
        Fault.status(503, path="messages/submit", at=[0]),  # the first message's first attempt
        Fault.accept_then_reset(path="messages/submit", at=[3]),  # the third message's send: reconciled
    ]
    with FakeFlowmailer(faults=faults, seed=3).running() as running:
        yield running


def message(n: int) -> SubmitMessage:
    return SubmitMessage(sender_address="app@example.com", recipient_address=f"user{n}@example.com", text=str(n))


def attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def test_each_claims_span_is_a_child_of_the_enqueuing_span_and_holds_its_http_attempts(
    fake: FakeFlowmailer, relay_kind: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = provider.get_tracer("app")
    clock = FakeClock()
    outbox = MemoryOutbox(clock)
    with app.start_as_current_span("checkout") as checkout:
        retried = outbox.enqueue(message(1))
    checkout_id = checkout.get_span_context()
    plain = outbox.enqueue(message(2))  # outside any span
    with app.start_as_current_span("signup") as signup:
        reconciled = outbox.enqueue(message(3))
    signup_id = signup.get_span_context()
    exporter.clear()

    observer = OpenTelemetryObserver(tracer_provider=provider, clock=clock)
    credential = fake.credential("ADMIN")
    settings: dict[str, Any] = {
        "api_url": fake.api_url,
        "login_url": fake.login_url,
        "policy": RetryPolicy(max_attempts=2, deadline=10.0, base_delay=0.1, cap=1.0),
        "resolver": StaticResolver({API_HOST: fake.addresses[:1], LOGIN_HOST: fake.addresses[:1]}),
        "clock": clock,
        "rng": random.Random(1),
        "observer": observer,
    }
    credentials = Credentials(fake.account_id, credential.client_id, credential.client_secret)
    relaying: dict[str, Any] = {
        "rules": RelayRules(reconcile_delay=5.0), "concurrency": 1, "clock": clock, "observer": observer,
        "idle_wait": 0.05,
    }  # fmt: skip
    if relay_kind == "threaded":
        transport = Urllib3Transport(ca_bundle=str(fake.ca_bundle), read_timeout=5, clock=clock)
        with Client(credentials, transport=transport, **settings) as client:
            Relay(outbox, client, **relaying).drain()
    else:  # each claim's span is current in its sender task's context, as in a worker thread's

        async def drain() -> None:
            transport = AnyioTransport(ca_bundle=str(fake.ca_bundle), read_timeout=5)
            async with AsyncClient(credentials, transport=transport, **settings) as client:
                await AsyncRelay(outbox, client, **relaying).drain()

        anyio.run(drain, backend=relay_kind)
    assert outbox.counts()[SubmissionState.ACCEPTED] == 3
    spans = exporter.get_finished_spans()
    claims: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        if span.name.startswith("flowmailer "):
            claims.setdefault(int(str(attributes(span)["flowmailer.outbox.id"])), []).append(span)

    # The message enqueued in "checkout": one claim, its span the checkout span's child, two POSTs inside it.
    [claim] = claims[retried]
    assert claim.parent is not None
    assert (claim.parent.trace_id, claim.parent.span_id) == (checkout_id.trace_id, checkout_id.span_id)
    assert claim.context.trace_id == checkout_id.trace_id
    assert (claim.name, attributes(claim)["flowmailer.decision"]) == ("flowmailer submit", "accepted")
    # In attempt order (the async client waits its retries on the event loop's clock, not on the FakeClock that
    # times the spans, so start times need not tell them apart).
    posts = sorted(children(spans, claim), key=lambda s: int(str(attributes(s).get("http.request.resend_count", 0))))
    assert [(s.name, s.kind) for s in posts] == [("POST", SpanKind.CLIENT)] * 2
    first, second = map(attributes, posts)
    api = urlsplit(fake.api_url)
    assert first == {
        "http.request.method": "POST",
        "server.address": API_HOST,
        "server.port": api.port,
        "url.full": f"{fake.api_url}/{fake.account_id}/messages/submit",
        "network.peer.address": fake.addresses[0],
        "http.response.status_code": 503,
        "error.type": "transient",
        "flowmailer.operation": "submit",
    }
    assert posts[0].status.status_code is StatusCode.ERROR
    assert (second["http.response.status_code"], second["http.request.resend_count"]) == (201, 1)
    assert "error.type" not in second

    # Enqueued outside any span: the relay's work on it is a trace of its own.
    [claim] = claims[plain]
    assert claim.parent is None
    assert claim.context.trace_id not in (checkout_id.trace_id, signup_id.trace_id)
    assert [s.name for s in children(spans, claim)] == ["POST"]

    # Accepted, then the connection reset: the send, and later the search that found it, both in "signup"'s trace.
    send, search = sorted(claims[reconciled], key=lambda s: s.start_time or 0)
    for span in (send, search):
        assert span.parent is not None
        assert (span.parent.trace_id, span.parent.span_id) == (signup_id.trace_id, signup_id.span_id)
    assert (send.name, attributes(send)["flowmailer.decision"]) == ("flowmailer submit", "reconcile")
    assert [attributes(s)["error.type"] for s in children(spans, send)] == ["ambiguous"]
    assert (search.name, attributes(search)["flowmailer.decision"]) == ("flowmailer reconcile", "accepted")
    pages = children(spans, search)  # the search reads its pages by Range header: the URL is the same
    assert {(s.name, attributes(s)["flowmailer.operation"]) for s in pages} == {("GET", "messages_by_tag")}

    secrets = {credential.client_secret, *fake.issued_tokens()}
    for span in spans:
        for value in attributes(span).values():
            assert not any(secret in str(value) for secret in secrets), span.name
