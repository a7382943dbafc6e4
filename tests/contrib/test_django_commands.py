"""The management commands in process: flowmailer_relay drains the outbox, flowmailer_events sends the signals,
and a missing setting or credential is a CommandError that says what to set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.mail import send_mail
from django.core.management import CommandError, call_command
from django.test import override_settings

import tests.contrib.django_setup  # noqa: F401 - configures Django (its modules read settings lazily)
from flowmailer.contrib.django import TrackingEvent, close_outboxes, tracking
from flowmailer.testing import FakeFlowmailer


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeFlowmailer]:
    with FakeFlowmailer(addresses=("127.0.0.1",)).running() as fake:
        credentials = fake.client_credentials()
        url = f"https://localhost:{fake.port}"
        for name, value in {
            "FLOWMAILER_ACCOUNT_ID": credentials.account_id,
            "FLOWMAILER_CLIENT_ID": credentials.client_id,
            "FLOWMAILER_CLIENT_SECRET": credentials.client_secret.reveal(),
            "FLOWMAILER_API_URL": url,
            "FLOWMAILER_LOGIN_URL": url,
            "FLOWMAILER_CA_BUNDLE": str(fake.ca_bundle),
        }.items():
            monkeypatch.setenv(name, value)
        with override_settings(FLOWMAILER_OUTBOX=f"sqlite://{tmp_path / 'outbox.db'}"):
            yield fake
        close_outboxes()


def test_relay_then_events(environment: FakeFlowmailer, capsys: pytest.CaptureFixture[str]) -> None:
    send_mail("s", "b", None, ["ann@example.com", "bob@example.com"])
    call_command("flowmailer_relay", "--once")
    assert len(environment.records().accepted) == 2
    assert "2 accepted" in capsys.readouterr().out

    seen: list[TrackingEvent] = []

    def receiver(sender: object, event: TrackingEvent, **kwargs: object) -> None:
        seen.append(event)

    tracking.connect(receiver)
    try:
        call_command("flowmailer_events", "--once")
        call_command("flowmailer_events", "--once")  # the cursor was saved: nothing twice
    finally:
        tracking.disconnect(receiver)
    assert sorted(e.event_type for e in seen) == ["delivered", "delivered", "queued", "queued"]
    assert all(e.client_reference for e in seen)


def test_relay_without_credentials_says_what_to_set(
    environment: FakeFlowmailer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOWMAILER_CLIENT_SECRET")
    with pytest.raises(CommandError, match="FLOWMAILER_CLIENT_SECRET"):
        call_command("flowmailer_relay", "--once")


def test_events_of_a_postgresql_outbox_need_a_cursor_file(environment: FakeFlowmailer) -> None:
    with (
        override_settings(FLOWMAILER_OUTBOX="postgresql://shop@db.invalid/shop"),
        pytest.raises(CommandError, match="FLOWMAILER_CURSORS"),
    ):
        call_command("flowmailer_events", "--once")


def test_events_keep_their_cursor_where_told(environment: FakeFlowmailer, tmp_path: Path) -> None:
    with override_settings(FLOWMAILER_CURSORS=str(tmp_path / "cursors.db")):
        call_command("flowmailer_events", "--once")
    assert (tmp_path / "cursors.db").exists()
