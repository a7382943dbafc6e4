"""``flowmailer demo``: thousands of messages through a faulty fake Flowmailer, and proof that none was lost or doubled.

The fake listens on three loopback addresses with one blackholed, answers some submits 503 or 429, accepts some
and then resets the connection (the ambiguous case), and issues short-lived tokens. The client reaches it by its
DNS name through a static resolver, verifying the fake's certificate. Waits are real: the fault timings are short.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from flowmailer.cli._args import add_pipeline_depth, number
from flowmailer.cli._progress import Rows, Tally, TallySnapshot, run_relay, summary
from flowmailer.core import TERMINAL_STATES, SubmissionState

if TYPE_CHECKING:
    from flowmailer.app import RelayStats
    from flowmailer.app._relay import RelayShell
    from flowmailer.core import Credentials, TokenPolicy
    from flowmailer.ports import Outbox
    from flowmailer.testing import Credential, FakeFlowmailer, Records

ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
BLACKHOLED = "127.0.0.4"
_SUBMIT = "messages/submit"
_BATCH = 500


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="relay thousands of messages through a faulty fake Flowmailer; exit 0 only if none was lost or doubled",
        description="Enqueues thousands of messages in a fresh SQLite outbox and relays them through a FakeFlowmailer "
        "that fails on purpose (one address blackholed, 503s, 429s, accepted-then-reset connections), then checks "
        "that every message was accepted exactly once. Exit 0 only if none was lost or doubled.",
        allow_abbrev=False,
    )
    share = number(float, low=0.0, high=1.0, example=0.05)
    parser.add_argument(
        "--messages", type=number(int, low=1, example=3000), default=3000, help="how many to enqueue (default 3000)"
    )
    parser.add_argument("--error-rate", type=share, default=0.05, help="share of submits answered 503 (0.05)")
    parser.add_argument("--throttle-rate", type=share, default=0.02, help="share answered 429 + Retry-After (0.02)")
    parser.add_argument("--reset-rate", type=share, default=0.01, help="share accepted, then reset unanswered (0.01)")
    parser.add_argument(
        "--retry-after", type=number(int, low=0, example=1), default=1, help="the 429's Retry-After, in seconds (1)"
    )
    parser.add_argument(
        "--token-lifetime", type=number(int, low=3, example=10), default=10, help="seconds a fake token lives (10)"
    )
    parser.add_argument(
        "--concurrency",
        type=number(int, low=1, high=10, example=10),
        default=10,
        help="the relay's concurrent submissions, 1-10 (10)",
    )
    add_pipeline_depth(parser)
    parser.add_argument("--seed", type=int, default=1, help="seed of the fake's fault draws (1)")
    parser.add_argument("--no-progress", action="store_true", help="no live display, even on a terminal")
    parser.set_defaults(handler=demo)


def demo(args: argparse.Namespace) -> int:
    from flowmailer.adapters import MemoryTokenStore, SystemClock, Urllib3Transport
    from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
    from flowmailer.app import Client, Relay
    from flowmailer.core import RelayRules, RetryPolicy, TokenPolicy
    from flowmailer.testing import (
        API_HOST,
        LOGIN_HOST,
        SUBMIT_ROLE,
        FakeFlowmailer,
        Fault,
        FaultPlan,
        Mode,
        StaticResolver,
    )

    faults = FaultPlan(
        (
            Fault.status(503, path=_SUBMIT, probability=args.error_rate),
            Fault.status(429, retry_after=args.retry_after, path=_SUBMIT, probability=args.throttle_rate),
            Fault.accept_then_reset(path=_SUBMIT, probability=args.reset_rate),
        ),
        seed=args.seed,
    )
    fake = FakeFlowmailer(ADDRESSES, token_lifetime=args.token_lifetime, faults=faults, seed=args.seed)
    clock = SystemClock()
    tally = Tally()
    live = False if args.no_progress else None
    with tempfile.TemporaryDirectory(prefix="flowmailer-demo-") as folder, fake.running():
        fake.set_mode(BLACKHOLED, Mode.BLACKHOLE)
        # Least privilege, as Flowmailer's guidelines ask: a submit-only credential sends, and a second one whose
        # role may read messages searches by tag after an ambiguous submission.
        submitter, reader = fake.credential(SUBMIT_ROLE), fake.credential()
        # One transport for both clients, so that the process holds at most 10 connections, as the guidelines ask.
        # Short timeouts, so the blackholed address costs half a second before it cools down.
        settings: dict[str, Any] = {
            "api_url": fake.api_url,
            "login_url": fake.login_url,
            "resolver": StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses}),
            "policy": RetryPolicy(max_attempts=4, deadline=10.0, base_delay=0.05, cap=0.5, max_retry_after=5.0),
            "clock": clock,
            "observer": tally,
        }
        # Refresh 2 s ahead rather than 10: the demo's tokens live only ~10 s.
        tokens = TokenPolicy(refresh_ahead=2.0)
        relaying: dict[str, Any] = {
            "rules": RelayRules(backoff=RetryPolicy(base_delay=0.1, cap=1.0), reconcile_delay=0.2),
            "concurrency": args.concurrency,
            "clock": clock,
            "observer": tally,
        }
        with contextlib.ExitStack() as stack:
            outbox = SQLiteOutbox(Path(folder) / "outbox.db", clock=clock)
            stack.callback(outbox.close)
            if args.pipeline_depth is None:
                transport = Urllib3Transport(
                    ssl_context=fake.client_ssl_context(), connect_timeout=0.5, read_timeout=5.0, clock=clock
                )
                client, reconciler = (
                    Client(
                        _credentials(fake, c),
                        transport=transport,
                        token_store=MemoryTokenStore(clock, tokens),
                        **settings,
                    )
                    for c in (submitter, reader)
                )
                stack.callback(client.close)
                stack.callback(reconciler.close)
                relay: RelayShell = Relay(outbox, client, reconciler=reconciler, **relaying)
                run = None
            else:
                relay, run = _pipelined(
                    stack, fake, args.pipeline_depth, submitter, reader, tokens, settings, relaying, outbox
                )
            how = f"; pipelining up to {args.pipeline_depth} per connection" if args.pipeline_depth else ""
            print(
                f"flowmailer demo: {args.messages} messages; fake Flowmailer on {', '.join(ADDRESSES)} "
                f"({BLACKHOLED} blackholed); faults per submit: {args.error_rate:.0%} 503, "
                f"{args.throttle_rate:.0%} 429, {args.reset_rate:.0%} accept-then-reset; "
                f"tokens live {args.token_lifetime} s{how}",
                flush=True,
            )
            _enqueue(outbox, args.messages)
            started = time.monotonic()
            stats = run_relay(
                relay,
                lambda: _progress_rows(outbox, tally.snapshot(), fake.records, args.messages),
                until_empty=True,
                title="flowmailer demo",
                live=live,
                interval=1.0,
                run=run,
            )
            elapsed = time.monotonic() - started
            counts = outbox.counts()
        records = fake.records()
    credentials = f"{submitter.client_id} ({submitter.role}) submits, {reader.client_id} ({reader.role}) reconciles"
    figures = Figures(args.messages, counts, records, stats, tally.snapshot(), elapsed, credentials)
    summary(figures.rows(), title="flowmailer demo: summary", live=live)
    problems = figures.problems()
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _credentials(fake: FakeFlowmailer, credential: Credential) -> Credentials:
    from flowmailer.core import Credentials

    return Credentials(fake.account_id, credential.client_id, credential.client_secret)


def _pipelined(
    stack: contextlib.ExitStack, fake: FakeFlowmailer, depth: int, submitter: Credential, reader: Credential,
    tokens: TokenPolicy, settings: dict[str, Any], relaying: dict[str, Any], outbox: Outbox,
) -> tuple[RelayShell, Callable[[bool], RelayStats]]:  # fmt: skip
    """The async relay over two AsyncClients on one pipelining transport, on an asyncio loop in its own thread."""
    import anyio.from_thread

    from flowmailer.adapters.anyio_token_store import AnyioTokenStore
    from flowmailer.adapters.anyio_transport import AnyioTransport
    from flowmailer.app.async_client import AsyncClient
    from flowmailer.app.async_relay import AsyncRelay

    portal = stack.enter_context(anyio.from_thread.start_blocking_portal("asyncio"))
    transport = AnyioTransport(
        ssl_context=fake.client_ssl_context(), connect_timeout=0.5, read_timeout=5.0, pipeline_depth=depth
    )
    stack.callback(portal.call, transport.aclose)
    store = AnyioTokenStore(settings["clock"].now, tokens)
    client, reconciler = (
        AsyncClient(_credentials(fake, c), transport=transport, token_store=store, **settings)
        for c in (submitter, reader)
    )
    relay = AsyncRelay(outbox, client, reconciler=reconciler, pipeline_depth=depth, **relaying)
    return relay, lambda until_empty: portal.call(functools.partial(relay.run, until_empty=until_empty))


def _enqueue(outbox: Outbox, count: int) -> None:
    from flowmailer.core import SubmitMessage

    for start in range(0, count, _BATCH):
        outbox.enqueue_many(
            SubmitMessage(
                sender_address="demo@shop.example",
                recipient_address=f"customer{i}@example.com",
                subject=f"Your order {i}",
                text=f"Hello customer {i}, your order has shipped.",
                flow_selector="demo",
                tags=("demo",),
            )
            for i in range(start, min(start + _BATCH, count))
        )


def _progress_rows(outbox: Outbox, seen: TallySnapshot, records: Callable[[], Records], total: int) -> Rows:
    counts = outbox.counts()
    accepted = counts[SubmissionState.ACCEPTED]
    fake = records()
    return [
        ("accepted", f"{accepted}/{total} ({math.floor(100 * accepted / total)}%)"),  # 100% only when all are in
        ("queued", str(counts[SubmissionState.QUEUED])),
        ("in flight", str(counts[SubmissionState.IN_FLIGHT])),
        ("retrying", str(counts[SubmissionState.RETRY_SCHEDULED])),
        ("reconciling", str(counts[SubmissionState.RECONCILING])),
        ("dead", str(counts[SubmissionState.DEAD])),
        ("traffic", seen.traffic()),
        ("token fetches", str(sum(fake.token_requests.values()))),
        ("connections", f"{len(fake.connections)} ({sum(fake.handshakes_by_address.values())} TLS handshakes)"),
    ]


@attrs.frozen
class Figures:
    """The demo's outcome: what the outbox, the fake and the relay each say happened."""

    enqueued: int
    counts: Mapping[SubmissionState, int]
    records: Records
    stats: RelayStats
    seen: TallySnapshot
    elapsed: float
    #: Which credential did what: least privilege, one role each.
    credentials: str = "-"

    @property
    def accepted(self) -> int:
        return self.counts[SubmissionState.ACCEPTED]

    @property
    def dead(self) -> int:
        return self.counts[SubmissionState.DEAD]

    @property
    def pending(self) -> int:
        return sum(n for state, n in self.counts.items() if state not in TERMINAL_STATES)

    @property
    def at_fake(self) -> int:
        """Distinct messages the fake accepted, by client reference."""
        return len(self.records.copies_by_reference)

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.records.duplicates.values())

    def problems(self) -> list[str]:
        """Why the run is not a success; empty when nothing was lost or duplicated."""
        found = []
        if self.accepted != self.enqueued:
            found.append(f"{self.enqueued - self.accepted} of {self.enqueued} messages were not accepted")
        if self.at_fake != self.enqueued:
            found.append(f"the fake holds {self.at_fake} distinct messages, not {self.enqueued}")
        if self.duplicates:
            found.append(f"the fake accepted {self.duplicates} duplicate(s)")
        if self.dead:
            found.append(f"{self.dead} message(s) are dead letters")
        if self.pending:
            found.append(f"{self.pending} message(s) are still pending (the relay was stopped)")
        return found

    def rows(self) -> Rows:
        records = self.records
        failed: dict[str, int] = {}
        for kinds in self.seen.by_address.values():
            for kind, n in kinds.items():
                if kind not in ("Accepted", "Answered"):
                    failed[kind] = failed.get(kind, 0) + n
        requests: dict[str, int] = dict.fromkeys(ADDRESSES, 0)
        for c in records.connections:
            requests[c.address] += c.requests
        connections = records.connections_by_address
        handshakes = records.handshakes_by_address
        # The fake's view: a connection to the blackholed address is accepted by the kernel and never answered.
        traffic = "; ".join(
            f"{a} {requests[a]} requests on {handshakes.get(a, 0)} TLS connections"
            + (
                f" ({unanswered} connection(s) never answered)"
                if (unanswered := connections.get(a, 0) - handshakes.get(a, 0))
                else ""
            )
            for a in ADDRESSES
        )
        return [
            ("credentials", self.credentials),
            ("enqueued", str(self.enqueued)),
            ("accepted", str(self.accepted)),
            ("distinct messages at the fake", str(self.at_fake)),
            ("duplicates at the fake", str(self.duplicates)),
            ("dead", str(self.dead)),
            ("faults injected", _listed(records.faults)),
            ("failed attempts by outcome", _listed(failed)),
            ("rescheduled by the relay, by cause", _listed({c.value: n for c, n in self.stats.retries.items()})),
            ("ambiguous outcomes reconciled", str(self.stats.reconciled)),
            ("tokens fetched", str(sum(records.token_requests.values()))),
            ("TLS handshakes", str(sum(handshakes.values()))),
            ("connections", str(len(records.connections))),
            ("traffic per address, as the fake saw it", traffic),
            ("elapsed", f"{self.elapsed:.1f} s"),
            ("messages/s", f"{self.accepted / self.elapsed:.0f}" if self.elapsed > 0 else "-"),
        ]


def _listed(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "0"
