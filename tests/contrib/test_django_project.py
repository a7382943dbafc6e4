"""A Django project as the docs set one up, end to end: send_mail -> outbox -> flowmailer_relay -> FakeFlowmailer
-> flowmailer_events -> the tracking signals, with a SQLite outbox (written on commit) and with the PostgreSQL
outbox in Django's own database (written in the caller's transaction). Each run is a fresh process, as a project's
is: Django's settings are configured once per process."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowmailer.testing import FakeFlowmailer
from tests.outbox.postgres_server import PostgresServer

SETTINGS = """\
import json, os

SECRET_KEY = "not-secret"
USE_TZ = True
INSTALLED_APPS = ["flowmailer.contrib.django"]
DATABASES = {"default": json.loads(os.environ["APP_DATABASE"])}
EMAIL_BACKEND = "flowmailer.contrib.django.EmailBackend"
DEFAULT_FROM_EMAIL = "Shop <shop@example.com>"
FLOWMAILER_OUTBOX = os.environ["APP_OUTBOX"]
FLOWMAILER_OUTBOX_DATABASE = os.environ.get("APP_OUTBOX_DATABASE")
FLOWMAILER_CURSORS = "cursors.db"
"""

APP = """\
import json

import django

django.setup()

from anymail.signals import tracking as anymail_tracking
from django.core.mail import EmailMultiAlternatives, send_mail
from django.core.management import call_command
from django.db import transaction

from flowmailer.contrib.django import tracking

seen, anymail_seen = [], []
tracking.connect(lambda sender, event, **kw: seen.append([event.event_type, event.client_reference]), weak=False)
anymail_tracking.connect(lambda sender, event, **kw: anymail_seen.append(event.event_type), weak=False)

with transaction.atomic():
    order = EmailMultiAlternatives(
        "Your order", "Thanks!", to=["ann@example.com"], cc=["bob@example.com"], bcc=["cat@example.com"],
        reply_to=["help@example.com"], headers={"X-Order-Id": "42"},
    )
    order.attach_alternative("<p>Thanks!</p>", "text/html")
    order.attach("invoice.txt", "total: 42", "text/plain")
    order.send()
    send_mail("Welcome", "Hello", None, ["dan@example.com"], html_message="<p>Hello</p>")
    ids_inside = order.flowmailer_status.outbox_ids

try:
    with transaction.atomic():
        send_mail("Rolled back", "never", None, ["eve@example.com"])
        raise RuntimeError("the order failed")
except RuntimeError:
    pass

call_command("flowmailer_relay", "--once")
call_command("flowmailer_events", "--once")
print(json.dumps({
    "ids_inside": ids_inside,
    "ids": order.flowmailer_status.outbox_ids,
    "references": order.flowmailer_status.client_references,
    "seen": seen,
    "anymail_seen": anymail_seen,
}))
"""


@pytest.fixture
def fake() -> Iterator[FakeFlowmailer]:
    with FakeFlowmailer(addresses=("127.0.0.1",)).running() as running:
        yield running


def run_project(tmp_path: Path, fake: FakeFlowmailer, app_env: dict[str, str]) -> dict[str, object]:
    (tmp_path / "settings.py").write_text(SETTINGS)
    (tmp_path / "app.py").write_text(APP)
    credentials = fake.client_credentials()
    url = f"https://localhost:{fake.port}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "settings",
        "PYTHONPATH": str(tmp_path),
        "FLOWMAILER_ACCOUNT_ID": credentials.account_id,
        "FLOWMAILER_CLIENT_ID": credentials.client_id,
        "FLOWMAILER_CLIENT_SECRET": credentials.client_secret.reveal(),
        "FLOWMAILER_API_URL": url,
        "FLOWMAILER_LOGIN_URL": url,
        "FLOWMAILER_CA_BUNDLE": str(fake.ca_bundle),
        **app_env,
    }
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def check_delivered(fake: FakeFlowmailer, result: dict[str, object]) -> None:
    accepted = fake.records().accepted
    by_recipient = {m.body["recipientAddress"]: m for m in accepted}
    assert sorted(by_recipient) == ["ann@example.com", "bob@example.com", "cat@example.com", "dan@example.com"]
    assert len(accepted) == 4, "one accepted copy per envelope recipient, and nothing from the rolled-back one"
    assert not fake.records().duplicates
    for recipient in ("ann@example.com", "bob@example.com", "cat@example.com"):
        body = by_recipient[recipient].body
        mime = email.message_from_bytes(base64.b64decode(body["mimedata"]), policy=email.policy.default)
        assert (mime["Subject"], mime["To"], mime["Cc"], mime["Bcc"]) == (
            "Your order",
            "ann@example.com",
            "bob@example.com",
            None,
        )
        assert (mime["Reply-To"], mime["X-Order-Id"]) == ("help@example.com", "42")
        html = mime.get_body(("html",))
        assert html is not None
        assert html.get_content().strip() == "<p>Thanks!</p>"
        assert [a.get_filename() for a in mime.iter_attachments()] == ["invoice.txt"]
        assert body["senderAddress"] == "shop@example.com"
    references = result["references"]
    assert isinstance(references, list)
    # The fake reports SUBMITTED and DELIVERED for each message: queued, then delivered, by client reference.
    seen = result["seen"]
    assert isinstance(seen, list)
    for reference in references:
        assert [kind for kind, ref in seen if ref == reference] == ["queued", "delivered"]
    anymail_seen = result["anymail_seen"]
    assert isinstance(anymail_seen, list)
    assert sorted(anymail_seen) == sorted(kind for kind, _ in seen)
    assert len(seen) == 8


def test_sqlite_outbox_is_written_on_commit(tmp_path: Path, fake: FakeFlowmailer) -> None:
    database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "app.db")}
    result = run_project(
        tmp_path, fake, {"APP_DATABASE": json.dumps(database), "APP_OUTBOX": f"sqlite://{tmp_path / 'outbox.db'}"}
    )
    assert result["ids_inside"] is None, "inside the transaction nothing is written yet"
    check_delivered(fake, result)


@pytest.mark.postgres
def test_postgres_outbox_on_djangos_database_joins_the_transaction(
    tmp_path: Path, fake: FakeFlowmailer, postgres_server: PostgresServer
) -> None:
    import psycopg

    from flowmailer.adapters.postgres_outbox import PostgresOutbox

    name = f"django_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.conninfo, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    dsn = f"postgresql:///{name}?host={postgres_server.socket_dir}&port={postgres_server.port}&user=postgres"
    outbox = PostgresOutbox(dsn)
    outbox.create_schema()  # what `flowmailer outbox init --outbox postgresql://...` does
    outbox.close()
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": "postgres",
        "HOST": str(postgres_server.socket_dir),
        "PORT": str(postgres_server.port),
    }
    result = run_project(
        tmp_path,
        fake,
        {"APP_DATABASE": json.dumps(database), "APP_OUTBOX": dsn, "APP_OUTBOX_DATABASE": "default"},
    )
    ids_inside = result["ids_inside"]
    assert isinstance(ids_inside, list)
    assert len(ids_inside) == 3, "written in the transaction, so the rows are known before it commits"
    assert ids_inside == result["ids"]
    check_delivered(fake, result)
