"""EventFollower end to end: the Client over real TLS against FakeFlowmailer, cursors in SQLite."""

from __future__ import annotations

import collections
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowmailer.adapters import SQLiteCursorStore, Urllib3Transport
from flowmailer.app import Client, EventFollower
from flowmailer.core import Credentials, EventType, MessageEvent, Origin, SubmitMessage, TransportResult, WireRequest
from flowmailer.testing import FakeClock, StaticResolver
from flowmailer.testing._fake import API_HOST, LOGIN_HOST, FakeFlowmailer, Fault

N = 8


class RecordingTransport:
    """Passes every request on, and keeps its path: what the client asked the fake for."""

    def __init__(self, inner: Urllib3Transport) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.paths: list[str] = []

    def send(self, request: WireRequest, origin: Origin, address: str) -> TransportResult:
        with self._lock:
            self.paths.append(request.path)
        return self._inner.send(request, origin, address)

    def close(self) -> None:
        self._inner.close()


@pytest.fixture
def fake() -> Iterator[FakeFlowmailer]:
    with FakeFlowmailer().running() as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def transport(fake: FakeFlowmailer, clock: FakeClock) -> Iterator[RecordingTransport]:
    recording = RecordingTransport(Urllib3Transport(ca_bundle=str(fake.ca_bundle), read_timeout=5, clock=clock))
    yield recording
    recording.close()


@pytest.fixture
def client(fake: FakeFlowmailer, clock: FakeClock, transport: RecordingTransport) -> Client:
    credential = fake.credential("ADMIN")
    return Client(
        Credentials(fake.account_id, credential.client_id, credential.client_secret),
        api_url=fake.api_url,
        login_url=fake.login_url,
        transport=transport,
        resolver=StaticResolver({API_HOST: fake.addresses, LOGIN_HOST: fake.addresses}),
        clock=clock,
        rng=random.Random(5),
    )


def submit(client: Client, first: int, count: int) -> list[str]:
    return [
        client.submit(SubmitMessage(sender_address="app@example.com", recipient_address=f"u{n}@example.com", text="hi"))
        for n in range(first, first + count)
    ]


def follow_until(client: Client, path: Path, clock: FakeClock, got: list[MessageEvent], total: int) -> None:
    """A new follower on the store at ``path``, following until ``got`` holds ``total`` events."""
    with SQLiteCursorStore(path) as store:
        EventFollower(client, store, page_size=5, clock=clock).follow(
            got.append, idle_wait=1.0, stop=lambda: len(got) >= total
        )


def once_each(message_ids: list[str]) -> dict[tuple[str | None, EventType | str | None], int]:
    return {(m, t): 1 for m in message_ids for t in (EventType.SUBMITTED, EventType.DELIVERED)}


def test_two_followers_one_after_the_other_hand_over_every_event_once(
    client: Client, clock: FakeClock, tmp_path: Path
) -> None:
    got: list[MessageEvent] = []
    first = submit(client, 0, N)
    follow_until(client, tmp_path / "cursors.db", clock, got, 2 * N)
    second = submit(client, N, N)
    follow_until(client, tmp_path / "cursors.db", clock, got, 4 * N)
    assert collections.Counter((e.message_id, e.type) for e in got) == once_each(first + second)


def test_following_never_asks_for_one_message(
    client: Client, clock: FakeClock, transport: RecordingTransport, fake: FakeFlowmailer, tmp_path: Path
) -> None:
    got: list[MessageEvent] = []
    submit(client, 0, N)
    follow_until(client, tmp_path / "cursors.db", clock, got, 2 * N)
    account = fake.account_id
    assert set(transport.paths) == {"/oauth/token", f"/{account}/messages/submit", f"/{account}/message_events"}


def test_pages_that_failed_once_are_read_again_and_nothing_is_skipped(
    fake: FakeFlowmailer, client: Client, clock: FakeClock, tmp_path: Path
) -> None:
    fake.set_faults(
        [Fault.status(503, path="*message_events", at=[1]), Fault.accept_then_reset(path="*message_events", at=[3])]
    )
    got: list[MessageEvent] = []
    ids = submit(client, 0, N)
    follow_until(client, tmp_path / "cursors.db", clock, got, 2 * N)
    assert collections.Counter((e.message_id, e.type) for e in got) == once_each(ids)
    assert fake.records().faults == {"status": 1, "accept-then-reset": 1}
