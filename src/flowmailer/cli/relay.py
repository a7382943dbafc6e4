"""``flowmailer relay``: submit what the outbox holds until SIGTERM or SIGINT, showing progress."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowmailer.cli._args import add_pipeline_depth, host_port, number
from flowmailer.cli._config import add_config_arguments, config_from_args
from flowmailer.cli._progress import Rows, Tally, plain_line, run_relay
from flowmailer.cli._service import Health, Observers, serving, watchdog
from flowmailer.cli._wiring import (
    build_async_clients,
    build_async_transport,
    build_clients,
    build_transport,
    needs_extra,
    open_outbox,
    open_slots,
)
from flowmailer.core import SubmissionState

if TYPE_CHECKING:
    from flowmailer.adapters import Urllib3Transport
    from flowmailer.adapters.anyio_transport import AnyioTransport
    from flowmailer.adapters.otel_observer import OpenTelemetryObserver
    from flowmailer.adapters.prometheus_observer import PrometheusObserver
    from flowmailer.app import RelayStats, SlotKeeper
    from flowmailer.app._relay import RelayShell
    from flowmailer.app._slots import SlotKeeping
    from flowmailer.app.async_relay import AsyncSlotKeeper
    from flowmailer.cli._config import Config
    from flowmailer.ports import Clock, Observer, Outbox


_log = logging.getLogger(__name__)

#: The longest one request may hold a connection: the transport's connect (5 s) and read (30 s) timeouts. A relay
#: stops using its connection slots this long before their lease could run out.
_REQUEST_TIME = 35.0


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "relay",
        help="submit the outbox's messages until SIGTERM or SIGINT",
        description="Submit what the outbox holds to Flowmailer, with at most 10 requests at once, until SIGTERM or "
        "SIGINT (which finish what is in flight). Relays on one outbox (one SQLite file, or one PostgreSQL database) "
        "that share a client id share its 10 connections, through leased slots in that database. Both credentials "
        "are checked first: a refused one stops the relay at once. Every ambiguous submission is looked up by its "
        "client-reference tag before any resend; what Flowmailer refuses becomes a dead letter (`flowmailer dead "
        "list`). With --once, it exits when nothing is left to send.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--once", action="store_true", help="exit 0 once every message is accepted or dead (a one-shot drain)"
    )
    parser.add_argument(
        "--concurrency",
        type=number(int, low=1, high=10, example=10),
        default=10,
        help="submissions at once, 1 to 10 (default 10)",
    )
    parser.add_argument(
        "--max-connections",
        type=number(int, low=1, high=10, example=4),
        default=None,
        help="connections to Flowmailer at most, 1 to 10 (default: as many as --concurrency)",
    )
    add_pipeline_depth(parser)
    parser.add_argument(
        "--interval",
        type=number(float, low=0.0, above=True, example=10.0),
        default=10.0,
        help="seconds between plain progress lines off a terminal (default 10)",
    )
    parser.add_argument(
        "--slot-lease",
        type=number(float, low=_REQUEST_TIME * 2, example=120.0),
        default=120.0,
        help="seconds the relay's share of the credential's 10 connections is leased for, in the outbox's "
        "database; a killed relay's share is free again within this (default 120)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no live display, even on a terminal")
    parser.add_argument(
        "--metrics-addr",
        type=host_port,
        metavar="HOST:PORT",
        help="serve /metrics (Prometheus), /healthz and /readyz there (needs the prometheus extra)",
    )
    parser.add_argument(
        "--otel",
        action="store_true",
        help="record each claim's span, its HTTP requests' spans and the relay's metrics on OpenTelemetry's global "
        "providers (needs the otel extra; to export, run under opentelemetry-instrument or set up an SDK first)",
    )
    add_config_arguments(parser)
    parser.set_defaults(handler=relay)


def relay(args: argparse.Namespace) -> int:
    from flowmailer.adapters import SystemClock
    from flowmailer.app import SlotKeeper

    config = config_from_args(args)
    reconcile = config.reconcile_credentials()
    tally = Tally()
    # Connections follow the concurrency: a worker holds one at a time, so more would only sit idle per address.
    connections = args.concurrency if args.max_connections is None else args.max_connections
    clock = SystemClock()
    exporter = _prometheus() if args.metrics_addr is not None else None  # a missing extra: before any work
    otel = _opentelemetry() if args.otel else None
    pipelined = args.pipeline_depth is not None
    threaded = None if pipelined else build_transport(config, connections)
    transport: Urllib3Transport | AnyioTransport = (
        build_async_transport(config, connections, args.pipeline_depth) if threaded is None else threaded
    )
    outbox = open_outbox(config)
    slots = None
    telemetry: OpenTelemetryObserver | None = None
    try:
        slots = open_slots(config)
        key = config.require_credentials().client_id
        keeper: SlotKeeper | AsyncSlotKeeper
        if threaded is None:
            from flowmailer.app.async_relay import AsyncSlotKeeper

            keeper = AsyncSlotKeeper(slots, key, transport, lease=args.slot_lease, margin=_REQUEST_TIME)  # type: ignore[arg-type]
        else:
            keeper = SlotKeeper(slots, key, threaded, lease=args.slot_lease, margin=_REQUEST_TIME)
        sharing = f"sharing the 10 connections of client id {config.client_id} with the relays on this outbox"
        prometheus = None
        observers: list[Observer] = [tally]
        if exporter is not None:
            prometheus = exporter(outbox=outbox, clock=clock, connections=lambda: transport.stats().open)
            observers.append(prometheus)
        if otel is not None:
            telemetry = otel(outbox=outbox, clock=clock, connections=lambda: transport.stats().open)
            observers.append(telemetry)
        observer: Observer = observers[0] if len(observers) == 1 else Observers(*observers)
        with contextlib.ExitStack() as stack:
            build = _pipelined if pipelined else _threaded
            runner, run, check = build(stack, args, config, observer, transport, outbox, clock, keeper)  # type: ignore[arg-type]
            searcher = f"client id {config.client_id}" if reconcile is None else f"client id {reconcile.client_id}"
            how = f", pipelining up to {args.pipeline_depth} per connection" if pipelined else ""
            print(
                f"relay {runner.owner}: submitting from {config.require_outbox().describe()}{how}, reconciling with "
                f"{searcher}; {sharing}; stop with Ctrl-C or SIGTERM",
                flush=True,
            )
            health = Health(runner, outbox, check, clock)
            if prometheus is not None:
                host, port = stack.enter_context(serving(args.metrics_addr, prometheus.exposition, health))
                where = f"[{host}]" if ":" in host else host
                print(f"metrics: http://{where}:{port}/metrics, /healthz, /readyz", flush=True)
            stack.enter_context(watchdog(health))
            run_relay(
                runner,
                lambda: relay_rows(outbox, tally, runner, keeper),
                until_empty=args.once,
                title="flowmailer relay",
                live=False if args.no_progress else None,
                interval=args.interval,
                run=run,
            )
        print(f"relay stopped | {plain_line(relay_rows(outbox, tally, runner, keeper))}")
        return 0
    finally:
        if telemetry is not None:  # the SDK collects once more at exit, after the outbox is closed
            telemetry.forget_outbox()
        if slots is not None:
            slots.close()
        outbox.close()


#: The relay, how to run it to its end (blocking), and how to check the submitting credential (blocking).
_Built = tuple["RelayShell", Callable[[bool], "RelayStats"], Callable[[], object]]


def _threaded(
    stack: contextlib.ExitStack, args: argparse.Namespace, config: Config, observer: Observer,
    transport: Urllib3Transport, outbox: Outbox, clock: Clock, keeper: SlotKeeper,
) -> _Built:  # fmt: skip
    """The threaded relay over two Clients: the default, and all a base install (no anyio) can run."""
    from flowmailer.app import Relay

    client, reconciler = build_clients(config, observer=observer, transport=transport)
    stack.callback(client.close)
    if reconciler is not None:
        stack.callback(reconciler.close)
    runner = Relay(
        outbox, client, reconciler=reconciler, concurrency=args.concurrency, clock=clock, observer=observer,
        slots=keeper,
    )  # fmt: skip
    return runner, lambda until_empty: runner.run(until_empty=until_empty), client.check_credentials


def _pipelined(
    stack: contextlib.ExitStack, args: argparse.Namespace, config: Config, observer: Observer,
    transport: AnyioTransport, outbox: Outbox, clock: Clock, keeper: AsyncSlotKeeper,
) -> _Built:  # fmt: skip
    """The async relay over two AsyncClients, on an asyncio loop in a thread of its own (a blocking portal), so
    that this thread shows progress and takes signals as for the threaded relay."""
    import anyio.from_thread

    from flowmailer.app.async_relay import AsyncRelay

    portal = stack.enter_context(anyio.from_thread.start_blocking_portal("asyncio"))
    stack.callback(portal.call, transport.aclose)  # both clients' connections
    client, reconciler = build_async_clients(config, observer=observer, transport=transport)
    runner = AsyncRelay(
        outbox, client, reconciler=reconciler, concurrency=args.concurrency, pipeline_depth=args.pipeline_depth,
        clock=clock, observer=observer, slots=keeper,
    )  # fmt: skip
    return (
        runner,
        lambda until_empty: portal.call(functools.partial(runner.run, until_empty=until_empty)),
        lambda: portal.call(client.check_credentials),
    )


def _prometheus() -> type[PrometheusObserver]:
    with needs_extra("--metrics-addr", "prometheus", "prometheus_client"):
        from flowmailer.adapters.prometheus_observer import PrometheusObserver
    return PrometheusObserver


def _opentelemetry() -> type[OpenTelemetryObserver]:
    with needs_extra("--otel", "otel", "opentelemetry"):
        from opentelemetry import metrics, trace

        from flowmailer.adapters.otel_observer import OpenTelemetryObserver
    # Until an SDK (or opentelemetry-instrument) sets them, the global providers are proxies that drop everything.
    unset = []
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        unset.append("spans")
    if type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider":
        unset.append("metrics")
    if unset:
        _log.warning(
            "--otel: no OpenTelemetry SDK is set up in this process for %s, so none is exported; run the relay "
            "under opentelemetry-instrument (pip install opentelemetry-distro opentelemetry-exporter-otlp, then set "
            "OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_SERVICE_NAME)",
            " or ".join(unset),
        )
    return OpenTelemetryObserver


def relay_rows(outbox: Outbox, tally: Tally, runner: RelayShell, keeper: SlotKeeping | None = None) -> Rows:
    """The outbox's rows by state (all relays', all time) apart from what this relay did since it started."""
    share = None if keeper is None else keeper.share
    slots: Rows = (
        [] if share is None else [("connection slots", f"{share.held} of 10, shared by {share.owners} relays")]
    )
    counts = outbox.counts()
    seen = tally.snapshot()
    mine = runner.stats()
    retries = ", ".join(f"{n} {cause}" for cause, n in sorted(seen.retries.items())) or "0"
    warning: Rows = []
    if seen.cannot_reconcile is not None:
        warning = [("reconciliation", "REFUSED: ambiguous submissions go dead; set FLOWMAILER_RECONCILE_CLIENT_ID")]
    return [
        *warning,
        ("outbox queued", str(counts[SubmissionState.QUEUED])),
        (
            "outbox claimed",
            f"{counts[SubmissionState.IN_FLIGHT]} (here: {mine.holding} held, {mine.sending} sending)",
        ),
        ("outbox retrying", str(counts[SubmissionState.RETRY_SCHEDULED])),
        ("outbox reconciling", str(counts[SubmissionState.RECONCILING])),
        ("accepted this run", f"{seen.accepted} ({seen.reconciled} reconciled)"),
        ("dead this run", str(seen.dead)),
        ("retries", retries),
        ("traffic", seen.traffic()),
        ("tokens fetched", str(seen.answered.get("token", 0))),
        *slots,
        (
            "outbox failures",
            f"{seen.outbox_failures} (last: {seen.last_outbox_failure})" if seen.outbox_failures else "0",
        ),
    ]
