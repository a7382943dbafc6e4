"""The Client over real TLS against FakeFlowmailer on three loopback addresses, with faults injected.

Time is a FakeClock: retry waits and cool-downs never make a test wait. Only a blackholed connect waits out its
(short) connect timeout, which is the behaviour under test.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme

from flowmailer.adapters import Urllib3Transport
from flowmailer.app import Client
from flowmailer.core import (
    AddressPolicy,
    AmbiguousError,
    AttemptFinished,
    AuthenticationError,
    CertificateError,
    Credentials,
    DateRange,
    Event,
    MessageType,
    NotSent,
    RejectedError,
    ReportBook,
    ReportPolicy,
    RetryPolicy,
    Sample,
    SubmitMessage,
)
from flowmailer.testing import FakeClock, StaticResolver
from flowmailer.testing._fake import API_HOST, LOGIN_HOST, FakeFlowmailer, Fault, Mode

TWO, THREE, FOUR = "127.0.0.2", "127.0.0.3", "127.0.0.4"


class Attempts:
    """An observer that keeps every attempt, thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[AttemptFinished] = []

    def on_event(self, event: Event) -> None:
        if isinstance(event, AttemptFinished):
            with self._lock:
                self.events.append(event)

    def not_sent_to(self, address: str, operation: str = "submit") -> int:
        with self._lock:
            return sum(
                1
                for e in self.events
                if (e.operation, e.address) == (operation, address) and isinstance(e.outcome, NotSent)
            )


@pytest.fixture
def fake() -> Iterator[FakeFlowmailer]:
    with FakeFlowmailer().running() as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_client(
    fake: FakeFlowmailer,
    clock: FakeClock,
    *,
    resolver: StaticResolver | None = None,
    observer: Attempts | None = None,
    policy: RetryPolicy | None = None,
    ca_bundle: str | None = None,
    address_policy: AddressPolicy | None = None,
    read_timeout: float = 5,
) -> Client:
    address_policy = address_policy or AddressPolicy()
    credential = fake.credential("ADMIN")
    transport = Urllib3Transport(
        ca_bundle=ca_bundle or str(fake.ca_bundle),
        connect_timeout=0.5,
        read_timeout=read_timeout,
        clock=clock,
        max_connection_age=address_policy.max_connection_age,
    )
    return Client(
        Credentials(fake.account_id, credential.client_id, credential.client_secret),
        api_url=fake.api_url,
        login_url=fake.login_url,
        policy=policy,
        address_policy=address_policy,
        transport=transport,
        resolver=resolver or StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses}),
        clock=clock,
        rng=random.Random(3),
        observer=observer,
    )


def message(n: int = 0, **kwargs: object) -> SubmitMessage:
    return SubmitMessage(
        sender_address="app@example.com",
        recipient_address=f"user{n}@example.com",
        subject=f"message {n}",
        text="x" * 2000,
        **kwargs,  # type: ignore[arg-type]
    )


def submit_from_threads(client: Client, threads: int, each: int) -> list[str]:
    ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(each):
            try:
                message_id = client.submit(message(t * each + i))
            except BaseException as e:  # noqa: BLE001 - collected and asserted below
                with lock:
                    errors.append(e)
            else:
                with lock:
                    ids.append(message_id)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert errors == []
    return ids


def test_a_thousand_submits_from_ten_threads(fake: FakeFlowmailer, clock: FakeClock) -> None:
    with make_client(fake, clock) as client:
        ids = submit_from_threads(client, threads=10, each=100)
    records = fake.records()
    assert len(set(ids)) == 1000
    assert sum(records.token_requests.values()) == 1
    assert sum(records.handshakes_by_address.values()) <= 10
    assert records.max_open_connections <= 10
    assert len(records.accepted) == 1000
    assert len(records.copies_by_reference) == 1000
    assert records.duplicates == {}


def test_one_address_blackholed_and_one_refusing_every_submit_succeeds(fake: FakeFlowmailer, clock: FakeClock) -> None:
    fake.set_mode(TWO, Mode.BLACKHOLE)
    fake.set_mode(THREE, Mode.REFUSE)
    attempts = Attempts()
    with make_client(fake, clock, observer=attempts) as client:
        ids = [client.submit(message(n)) for n in range(30)]
    assert len(set(ids)) == 30
    # Known bad after one failure each: the cool-down keeps them out of rotation from then on (the login host
    # has its own address book, so the token request may meet each bad address once too).
    assert attempts.not_sent_to(TWO) == 1
    assert attempts.not_sent_to(THREE) == 1
    assert attempts.not_sent_to(TWO, "token") <= 1
    assert attempts.not_sent_to(THREE, "token") <= 1
    assert fake.records().handshakes_by_address.keys() <= {FOUR}


def test_bad_addresses_are_tried_at_most_once_per_thread_under_concurrency(
    fake: FakeFlowmailer, clock: FakeClock
) -> None:
    fake.set_mode(TWO, Mode.BLACKHOLE)
    fake.set_mode(THREE, Mode.REFUSE)
    attempts = Attempts()
    with make_client(fake, clock, observer=attempts) as client:
        ids = submit_from_threads(client, threads=10, each=20)
    assert len(set(ids)) == 200
    assert attempts.not_sent_to(TWO) <= 10
    assert attempts.not_sent_to(THREE) <= 10


def test_traffic_follows_a_dns_change_made_while_submitting(fake: FakeFlowmailer, clock: FakeClock) -> None:
    resolver = StaticResolver({API_HOST: [TWO, THREE], LOGIN_HOST: [TWO, THREE]}, ttl=5)
    policy = AddressPolicy(max_connection_age=30)
    done = [0, 0, 0, 0]
    progress = threading.Condition()
    stop = threading.Event()

    def work(t: int, client: Client) -> None:
        while not stop.is_set():
            client.submit(message(t))
            with progress:
                done[t] += 1
                progress.notify_all()

    def wait_for_each(counts: list[int], more: int) -> list[int]:
        with progress:
            assert progress.wait_for(lambda: all(d >= c + more for d, c in zip(done, counts, strict=True)), 30)
            return list(done)

    # The transport's deadlines run on the fake clock too: a read timeout longer than the jump below keeps the
    # submits in flight across it from timing out.
    with make_client(fake, clock, resolver=resolver, address_policy=policy, read_timeout=60) as client:
        workers = [threading.Thread(target=work, args=(t, client)) for t in range(len(done))]
        for w in workers:
            w.start()
        try:
            counts = wait_for_each([0] * len(done), 5)
            resolver.set(API_HOST, [FOUR])
            resolver.set(LOGIN_HOST, [FOUR])
            clock.advance(5 + 30)
            # Every thread has finished a submit that started after the change: from here on, .4 only.
            counts = wait_for_each(wait_for_each(counts, 1), 1)
            before = fake.records()
            wait_for_each(counts, 10)
            after = fake.records()
        finally:
            stop.set()
            for w in workers:
                w.join(timeout=30)
    old = {TWO, THREE}
    assert sum(c.requests for c in before.connections if c.address in old) > 0
    assert sum(c.requests for c in after.connections if c.address in old) == sum(
        c.requests for c in before.connections if c.address in old
    )
    assert {m.address for m in after.accepted[len(before.accepted) :]} == {FOUR}


def test_a_wrong_certificate_is_a_ca_bundle_error_after_one_attempt_on_each_address(
    fake: FakeFlowmailer, clock: FakeClock
) -> None:
    for address in fake.addresses:
        fake.set_mode(address, Mode.WRONG_CERTIFICATE)
    attempts = Attempts()
    client = make_client(fake, clock, observer=attempts, policy=RetryPolicy(max_attempts=20, deadline=3600))
    with client, pytest.raises(CertificateError) as refused:
        client.submit(message())
    assert refused.value.field == "ca_bundle"
    assert "--ca-bundle" in str(refused.value)
    assert sorted(e.address for e in attempts.events) == sorted(fake.addresses)  # before: 20 attempts, Transient
    assert all(isinstance(e.outcome, NotSent) and e.outcome.untrusted for e in attempts.events)
    records = fake.records()
    assert records.requests == 0
    assert records.accepted == ()


def test_a_certificate_from_an_untrusted_ca_is_refused_and_nothing_is_sent(
    fake: FakeFlowmailer, clock: FakeClock, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    client = make_client(fake, clock, policy=RetryPolicy(max_attempts=3), ca_bundle=str(other))
    with client, pytest.raises(CertificateError, match="certificate verify failed"):
        client.submit(message())
    assert fake.records().requests == 0


@pytest.mark.parametrize("code", [503, 429])
def test_retry_after_is_waited_out_on_the_fake_clock(fake: FakeFlowmailer, clock: FakeClock, code: int) -> None:
    fake.set_faults([Fault.status(code, retry_after=2, path="submit", at=[0])])
    with make_client(fake, clock) as client:
        assert client.submit(message())
    assert clock.slept == [2.0]
    assert fake.records().statuses.get(code) == 1
    assert len(fake.records().accepted) == 1


def test_a_400_is_raised_at_once_with_the_field_name(fake: FakeFlowmailer, clock: FakeClock) -> None:
    # The client checks only the shape of a number; Flowmailer (here the fake) wants at least three digits.
    bad = SubmitMessage(message_type=MessageType.SMS, sender_address="+31600000000", recipient_address="12")
    with make_client(fake, clock) as client, pytest.raises(RejectedError) as e:
        client.submit(bad)
    assert e.value.status == 400
    assert "recipientAddress" in {d.field for d in e.value.errors}
    assert fake.records().statuses.get(400) == 1
    assert clock.slept == []


def test_accept_then_reset_is_ambiguous_and_the_fake_holds_exactly_one_copy(
    fake: FakeFlowmailer, clock: FakeClock
) -> None:
    fake.set_faults([Fault.accept_then_reset(path="submit", at=[0])])
    with make_client(fake, clock) as client:
        with pytest.raises(AmbiguousError) as e:
            client.submit(message())
        reference = e.value.client_reference
        assert reference is not None
        assert fake.records().copies_by_reference == {reference: 1}
        # Reconciliation finds the copy Flowmailer kept, so nobody needs to resend it.
        assert len(list(client.messages_by_tag(reference))) == 1


def test_an_expired_token_is_refreshed_once_and_the_submit_goes_through(fake: FakeFlowmailer, clock: FakeClock) -> None:
    fake.set_faults([Fault.expire_token(path="submit", at=[0])])
    with make_client(fake, clock) as client:
        assert client.submit(message())
    records = fake.records()
    assert sum(records.token_requests.values()) == 2
    assert records.statuses.get(401) == 1
    assert len(records.accepted) == 1


def test_bad_credentials_raise_once_and_are_never_sent_again(fake: FakeFlowmailer, clock: FakeClock) -> None:
    credential = fake.credential("ADMIN")
    client = Client(
        Credentials(fake.account_id, credential.client_id, "wrong-secret"),
        api_url=fake.api_url,
        login_url=fake.login_url,
        transport=Urllib3Transport(ca_bundle=str(fake.ca_bundle), clock=clock),
        resolver=StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses}),
        clock=clock,
    )
    with client:
        for _ in range(3):
            with pytest.raises(AuthenticationError) as e:
                client.submit(message())
            assert credential.client_id in str(e.value)
            assert "wrong-secret" not in str(e.value)
    records = fake.records()
    assert sum(records.token_requests.values()) == 1
    assert records.accepted == ()


def test_reads_find_what_was_submitted(fake: FakeFlowmailer, clock: FakeClock) -> None:
    with make_client(fake, clock) as client:
        ids = [client.submit(message(n, tags=["batch-7"])) for n in range(5)]
        assert client.message(ids[2]).id == ids[2]
        assert sorted(m.id or "" for m in client.messages_by_tag("batch-7")) == sorted(ids)
        events = [e for page in client.message_events() for e in page.items]
    assert {e.message_id for e in events} >= set(ids)


def test_stats_ask_once_for_settled_days_and_again_for_the_unsettled_ones(clock: FakeClock) -> None:
    day = 86400
    midnight = clock.now() - clock.now() % day
    with FakeFlowmailer(clock=clock.now, token_lifetime=10**9).running() as fake, make_client(fake, clock) as client:
        client.submit(message(1))  # on day 0
        clock.advance(10 * day)
        client.submit(message(2))  # on day 10
        ten_days = DateRange(_at(midnight), _at(midnight + 11 * day))
        first = client.message_stats(ten_days, interval=day)
        client.submit(message(3))  # on day 10 again: only the unsettled part shows it
        second = client.message_stats(ten_days, interval=day)
        reports = fake.records().reports
    assert first["processed"].samples[0] == Sample(_at(midnight), 1)
    assert first.totals()["processed"] == 2
    assert second.totals()["processed"] == 3
    assert [s.timestamp for s in second["processed"].samples] == [_at(midnight + d * day) for d in range(11)]
    settled = f"{_day(midnight)},{_day(midnight + 3 * day)}"  # ended more than a week ago: asked once
    unsettled = f"{_day(midnight + 3 * day)},{_day(midnight + 11 * day)}"  # asked each time
    assert [re.findall(r"daterange=([^;?]+)", r) for r in reports] == [[settled], [unsettled], [unsettled]]


def test_report_requests_never_overlap_however_many_threads_ask(fake: FakeFlowmailer, clock: FakeClock) -> None:
    fake.set_faults([Fault.delay(0.05, path="/messagestats;*")])
    hour = 3600
    start = clock.now() - clock.now() % hour
    errors: list[BaseException] = []

    def report(hours: int, client: Client) -> None:
        try:
            client.message_stats(DateRange(_at(start - hours * hour), _at(start)), interval=hour)
        except BaseException as e:  # noqa: BLE001 - asserted below
            errors.append(e)

    with make_client(fake, clock) as client:
        threads = [threading.Thread(target=report, args=(h, client)) for h in range(1, 7)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert errors == []
    records = fake.records()
    assert len(records.reports) == 6  # all unsettled: each thread asks once, one after the other
    assert records.max_concurrent_reports == 1


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _day(t: float) -> str:
    return _at(t).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_report_that_fails_halfway_keeps_what_it_had_fetched(clock: FakeClock) -> None:
    hour = 3600
    start = clock.now() - clock.now() % hour - 100 * hour
    span = DateRange(_at(start), _at(start + 6 * hour))
    fake = FakeFlowmailer(
        clock=clock.now, token_lifetime=10**9, faults=[Fault.status(400, path="/messagestats;*", at=[1])]
    )
    with fake.running(), reporting_client(fake, clock, ReportPolicy(settle=0.0, max_samples=2)) as client:
        with pytest.raises(RejectedError):
            client.message_stats(span, interval=hour)
        assert len(client.message_stats(span, interval=hour)["processed"].samples) == 6
        asked = [re.findall(r"daterange=([^;?]+)", r)[0] for r in fake.records().reports]
    pieces = [f"{_day(start + h * hour)},{_day(start + (h + 2) * hour)}" for h in (0, 2, 4)]
    assert asked == [pieces[0], pieces[1], pieces[1], pieces[2]]  # the first piece, kept, is not asked again


def test_a_report_is_whole_when_keeping_its_new_part_pushes_out_an_old_one(clock: FakeClock) -> None:
    hour = 3600
    start = clock.now() - clock.now() % hour - 100 * hour
    four_counters_fifteen_hours = ReportBook(max_kept_samples=4 * 15)
    with (
        FakeFlowmailer(clock=clock.now, token_lifetime=10**9).running() as fake,
        reporting_client(fake, clock, ReportPolicy(settle=0.0), four_counters_fifteen_hours) as client,
    ):
        client.message_stats(DateRange(_at(start), _at(start + 10 * hour)), interval=hour)
        report = client.message_stats(DateRange(_at(start), _at(start + 20 * hour)), interval=hour)
    assert [len(d.samples) for d in report.datasets] == [20, 20, 20, 20]


def reporting_client(
    fake: FakeFlowmailer, clock: FakeClock, policy: ReportPolicy, store: ReportBook | None = None
) -> Client:
    """A client with a credential that may read statistics, the given report policy and store."""
    return Client(
        fake.client_credentials("ADMIN"),
        api_url=fake.api_url,
        login_url=fake.login_url,
        ca_bundle=str(fake.ca_bundle),
        resolver=StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses}),
        clock=clock,
        report_policy=policy,
        report_store=store,
    )
