"""Progress for ``relay`` and ``demo``: a tally fed by the observer, shown live on a terminal, as lines elsewhere."""

from __future__ import annotations

import collections
import functools
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TextIO, cast

import attrs

from flowmailer.core import (
    AttemptFinished,
    Dead,
    Event,
    Outcome,
    ReconcileAt,
    RecordAccepted,
    Rejected,
    RelayCannotReconcile,
    RelayNotRecorded,
    RelayOutboxFailed,
    RelayRecorded,
    RequestFinished,
    RetryAt,
    Transient,
)

if TYPE_CHECKING:
    from rich.table import Table

    from flowmailer.app import Relay, RelayStats
    from flowmailer.app._relay import RelayShell

__all__ = ["Rows", "Tally", "TallySnapshot", "plain_line", "run_relay", "show_progress", "summary", "table"]

#: What a display shows: labelled values, in order.
Rows = Sequence[tuple[str, str]]


@attrs.frozen
class TallySnapshot:
    """What the client and the relay reported so far."""

    #: Attempts per address, by outcome: "Accepted", "Answered", "HTTP 503", "NotSent", "Ambiguous", ...
    by_address: Mapping[str, Mapping[str, int]]
    #: Answered requests (2xx) per operation other than submit ("token", "messages_by_tag", ...).
    answered: Mapping[str, int]
    accepted: int
    reconciled: int
    #: Extra copies a reconciliation found at Flowmailer.
    duplicates: int
    dead: int
    #: Later sends and searches the relay scheduled, by cause.
    retries: Mapping[str, int]
    not_recorded: int
    #: Claims, counts or waits that failed in the outbox (the relay retries them), and the last reason given.
    outbox_failures: int = 0
    last_outbox_failure: str | None = None
    #: Why the relay cannot reconcile (its searches by tag were refused at start); None when it can.
    cannot_reconcile: str | None = None

    def traffic(self) -> str:
        """One short phrase per address: requests, and the failures among them."""
        parts = []
        for address in sorted(self.by_address):
            kinds = self.by_address[address]
            failed = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()) if kind not in _OK)
            parts.append(f"{address} {sum(kinds.values())}" + (f" ({failed})" if failed else ""))
        return "; ".join(parts) or "-"


_OK = ("Accepted", "Answered")


def _kind(outcome: Outcome) -> str:
    return f"HTTP {outcome.status}" if isinstance(outcome, Transient | Rejected) else type(outcome).__name__


class Tally:
    """An :class:`flowmailer.ports.Observer` that counts; fast, thread-safe, never raises."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_address: collections.defaultdict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self._answered: collections.Counter[str] = collections.Counter()
        self._retries: collections.Counter[str] = collections.Counter()
        self._counts: collections.Counter[str] = collections.Counter()
        self._last_outbox_failure: str | None = None
        self._cannot_reconcile: str | None = None

    def on_event(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, AttemptFinished):
                self._by_address[event.address][_kind(event.outcome)] += 1
            elif isinstance(event, RequestFinished):
                self._by_address[event.address]["Answered"] += 1
                if 200 <= event.status < 300:
                    self._answered[event.operation] += 1
            elif isinstance(event, RelayRecorded):
                decision = event.decision
                if isinstance(decision, RecordAccepted):
                    self._counts["accepted"] += 1
                    self._counts["reconciled"] += decision.reconciled
                    self._counts["duplicates"] += decision.copies - 1
                elif isinstance(decision, RetryAt | ReconcileAt):
                    self._retries[decision.cause.value] += 1
                elif isinstance(decision, Dead):
                    self._counts["dead"] += 1
            elif isinstance(event, RelayNotRecorded):
                self._counts["not_recorded"] += 1
            elif isinstance(event, RelayOutboxFailed):
                self._counts["outbox_failures"] += 1
                self._last_outbox_failure = event.reason
            elif isinstance(event, RelayCannotReconcile):
                self._cannot_reconcile = event.reason

    def snapshot(self) -> TallySnapshot:
        with self._lock:
            return TallySnapshot(
                by_address={a: dict(c) for a, c in self._by_address.items()},
                answered=dict(self._answered),
                accepted=self._counts["accepted"],
                reconciled=self._counts["reconciled"],
                duplicates=self._counts["duplicates"],
                dead=self._counts["dead"],
                retries=dict(self._retries),
                not_recorded=self._counts["not_recorded"],
                outbox_failures=self._counts["outbox_failures"],
                last_outbox_failure=self._last_outbox_failure,
                cannot_reconcile=self._cannot_reconcile,
            )


def show_progress(
    rows: Callable[[], Rows],
    done: threading.Event,
    *,
    title: str,
    live: bool | None = None,
    interval: float = 1.0,
    out: TextIO | None = None,
) -> None:
    """Show ``rows()`` until ``done`` is set: a rich live table on a terminal, else a plain line per ``interval``.

    Runs in the calling thread (the main thread, so that signals reach their handlers while it waits).
    """
    out = sys.stdout if out is None else out
    if live is None:
        live = out.isatty()
    if not live:
        while not done.wait(interval):
            print(plain_line(rows()), file=out, flush=True)
        return
    from rich.console import Console
    from rich.live import Live

    with Live(get_renderable=lambda: table(title, rows()), console=Console(file=out), refresh_per_second=4):
        while not done.wait(0.25):
            pass


def plain_line(rows: Rows) -> str:
    return " | ".join(f"{label} {value}" for label, value in rows)


def table(title: str, rows: Rows) -> Table:
    """A two-column rich table of ``rows``."""
    from rich.table import Table

    grid = Table(title=title, show_header=False, title_justify="left")
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in rows:
        grid.add_row(label, value)
    return grid


def run_relay(
    relay: RelayShell,
    rows: Callable[[], Rows],
    *,
    until_empty: bool,
    title: str,
    live: bool | None,
    interval: float,
    run: Callable[[bool], RelayStats] | None = None,
) -> RelayStats:
    """Run ``relay`` in a thread while this thread shows progress; in the main thread, SIGTERM and SIGINT stop it.

    ``run(until_empty)`` runs it to its end, blocking (default: ``relay.run``; the async relay's goes through a
    portal to its event loop). The previous signal handlers come back afterwards; an error the relay raised is
    raised here.
    """
    if run is None:
        run = functools.partial(_run_threaded, cast("Relay", relay))
    done = threading.Event()
    outcome: list[RelayStats | BaseException] = []

    def main() -> None:
        try:
            outcome.append(run(until_empty))
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which raises it
            outcome.append(e)
        finally:
            done.set()

    in_main = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)} if in_main else {}
    for signum in previous:
        signal.signal(signum, lambda _signum, _frame: relay.stop())
    try:
        worker = threading.Thread(target=main, name="flowmailer-relay-loop")
        worker.start()
        try:
            show_progress(rows, done, title=title, live=live, interval=interval)
        except BaseException:  # e.g. stdout's reader went away: the relay still stops gracefully before it is raised
            relay.stop()
            worker.join()
            raise
        worker.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    [result] = outcome
    if isinstance(result, BaseException):
        raise result
    return result


def _run_threaded(relay: Relay, until_empty: bool) -> RelayStats:
    return relay.run(until_empty=until_empty)


def summary(rows: Rows, *, title: str, live: bool | None = None, out: TextIO | None = None) -> None:
    """A final table: drawn by rich on a terminal, aligned plain text elsewhere (for logs and tests)."""
    out = sys.stdout if out is None else out
    if live is None:
        live = out.isatty()
    if live:
        from rich.console import Console

        Console(file=out).print(table(title, rows))
        return
    width = max(len(label) for label, _ in rows)
    print(title, file=out)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}", file=out)
